"""The dither hash in 32-bit tensor arithmetic against a pure-Python uint32 reference."""

import random

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
