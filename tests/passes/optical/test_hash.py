"""The dither hash in 32-bit tensor arithmetic against a pure-Python uint32 reference."""

import random

import pytest
import torch

from optopass.passes.optical import quant

M = 0xFFFFFFFF


def lowbias32(x: int) -> int:
    """C. Wellons' lowbias32 over Python ints (the reference)."""
    x ^= x >> 16
    x = (x * 0x7FEB352D) & M
    x ^= x >> 15
    x = (x * 0x846CA68B) & M
    return x ^ (x >> 16)


def test_mix32_matches_the_uint32_reference_on_every_bit_pattern_class():
    rng = random.Random(0)
    values = [0, 1, 0x7FFFFFFF, 0x80000000, M] + [rng.getrandbits(32) for _ in range(2000)]
    signed = [v - (1 << 32) if v >= 1 << 31 else v for v in values]
    got = quant.mix32(torch.tensor(signed, dtype=torch.int32)).tolist()
    assert [g & M for g in got] == [lowbias32(v) for v in values]


def test_stream_key_matches_the_reference():
    for seed, site, counter in [(0, 0, 0), (7, 3, 11), (2**31 + 5, 40, 2**33 + 1)]:
        ref = lowbias32((seed & M) ^ ((site * 0x9E3779B9) & M)) ^ ((counter * 0x9E3779B9) & M)
        got = quant.stream_key(torch.tensor(seed), site, torch.tensor(counter))
        assert int(got) == ref


def test_hash_uniform_matches_the_reference_per_element():
    key = quant.stream_key(torch.tensor(3), 5, torch.tensor(9))
    k = int(key)
    u = quant.hash_uniform((3, 7, 5), key, torch.device("cpu"))
    flat = u.reshape(-1).tolist()
    for i in range(len(flat)):
        h = lowbias32(lowbias32((i + k * 0x9E3779B9) & M) ^ k)
        assert flat[i] == (h >> 8) / 2**24


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def test_compiled_hash_is_one_function_fused_into_its_consumer(device):
    """Inductor lowers the hash as one elementwise function (quant.register_inductor_lowering):
    it fuses with the dither-quantization around it, instead of running as a call of the eager
    operator, and draws the reference's numbers."""
    import torch._inductor.config as inductor_config
    from torch._inductor.utils import run_and_get_code

    assert quant.register_inductor_lowering()
    key = quant.stream_key(torch.tensor(3), 5, torch.tensor(9))
    y = torch.randn(6, 33, generator=torch.Generator().manual_seed(0))
    rng = torch.tensor([-2.0, 2.0])

    def fn(y, rng, key):
        return quant.dither_quantize(y, rng, 256, quant.hash_uniform(y.shape, key, y.device))

    torch._dynamo.reset()
    with inductor_config.patch(fx_graph_cache=False):  # a cached graph would not show the lowering
        out, code = run_and_get_code(torch.compile(fn), y.to(device), rng.to(device), key.to(device))
    source = "\n".join(code)
    assert "ops.optopass.dither_hash" not in source  # no call of the eager operator ...
    assert "_dither_hash_" in source  # ... but its lowering, inside a fused kernel (in its name)
    k = int(key)
    want = []
    for i, v in enumerate(y.reshape(-1).tolist()):
        u = (lowbias32(lowbias32((i + k * 0x9E3779B9) & M) ^ k) >> 8) / 2**24
        want.append(u)
    # within float32 rounding (a GPU may contract the rescaling into one multiply-add); a wrong
    # draw would move about half the elements by a step (4/255)
    want = quant.dither_quantize(y, rng, 256, torch.tensor(want).view(6, 33))
    torch.testing.assert_close(out.cpu(), want, rtol=0, atol=1e-5)
    torch._dynamo.reset()
