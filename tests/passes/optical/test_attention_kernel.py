"""The fused optical attention kernel against a float64 reference.

Without CUDA the kernel runs in the Triton interpreter: tests/conftest.py sets TRITON_INTERPRET
before triton is imported.
"""

import pytest
import torch
import triton

from optopass.passes.optical import quant
from optopass.passes.optical.kernels.attention import ot_attention_fwd
from optopass.passes.optical.optical_transformer import OpticalTransformerParams, OTAttention

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
LUT = 0.02


def ref_quantize(x, r, levels, lut_min=None):
    """quant.quantize in float64."""
    lo, hi = float(r[0]), float(r[1])
    k = torch.round((x.double().clamp(lo, hi) - lo) / (hi - lo + quant.EPS) * (levels - 1))
    q = k / (levels - 1) * (hi - lo) + lo
    if lut_min is not None:
        pos, neg = lut_min * hi, -lut_min * abs(lo)
        q = torch.where((q > 0) & (q < pos), pos, q)
        q = torch.where((q < 0) & (q > neg), neg, q)
    return q


def ref_dither_quantize(x, r, levels, noise):
    """quant.dither_quantize in float64."""
    lo, hi = float(r[0]), float(r[1])
    k = (x.clamp(lo, hi) - lo) / (hi - lo + quant.EPS) * (levels - 1)
    if noise is not None:
        k = k + (noise.double() - 0.5)
    return torch.round(k) / (levels - 1) * (hi - lo) + lo


def reference(q, k, v, mask, scale, ranges, keys, levels, lut_min, dither):
    """(output, raw scores, raw output) of the optical attention, in float64."""
    B, H, Lq, _ = q.shape
    Lk, Dv = k.shape[2], v.shape[3]
    s_raw = ref_quantize(q, ranges[0], levels) @ ref_quantize(k, ranges[1], levels, lut_min).transpose(-1, -2)
    noise = quant.hash_uniform((B, H, Lq, Lk), keys[0], q.device) if dither else None
    s = ref_dither_quantize(s_raw, ranges[2], levels, noise) * scale
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else s + mask.double()
    p = torch.softmax(s, dim=-1)
    o_raw = ref_quantize(p, ranges[3], levels) @ ref_quantize(v, ranges[4], levels, lut_min)
    noise = quant.hash_uniform((B, H, Lq, Dv), keys[1], q.device) if dither else None
    return ref_dither_quantize(o_raw, ranges[5], levels, noise), s_raw, o_raw


def data_ranges(q, k, v, mask, scale, keys, levels, lut_min, dither):
    """Ranges from the data, a little inside min/max so that the clamps act."""
    def rng(x, shrink=0.9):
        return [shrink * float(x.min()), shrink * float(x.max())]

    ranges = torch.tensor([rng(q), rng(k), [-1.0, 1.0], [0.0, 1.0], rng(v), [-1.0, 1.0]], device=q.device)
    _, s_raw, _ = reference(q, k, v, mask, scale, ranges, keys, levels, lut_min, dither)
    ranges[2] = torch.tensor(rng(s_raw, 0.95))
    _, _, o_raw = reference(q, k, v, mask, scale, ranges, keys, levels, lut_min, dither)
    ranges[5] = torch.tensor(rng(o_raw, 0.95))
    return ranges


def fused(q, k, v, mask, scale, ranges, keys, levels, lut_min, dither, **launch):
    """The kernel on operands quantized as OTAttention quantizes them (quant.quantize, in the
    input dtype); `ranges` (6, 2) as in reference()."""
    qq = quant.quantize(q, ranges[0], levels).to(q.dtype)
    kq = quant.quantize(k, ranges[1], levels, lut_min).to(k.dtype)
    vq = quant.quantize(v, ranges[4], levels, lut_min).to(v.dtype)
    return ot_attention_fwd(qq, kq, vq, mask, scale, ranges[[2, 3, 5]], keys, levels, dither, **launch)


def set_ranges(attn, ranges):
    """Give an OTAttention's two sites the rows of `ranges` (6, 2) as in reference()."""
    for site, rows in ((attn.qk, ranges[:3]), (attn.pv, ranges[3:])):
        for name, r in zip(("a", "b", "out"), rows):
            site.range(name).copy_(r)


def make_inputs(B, H, Lq, Lk, D, layout, seed=0):
    """q, k, v in (B, H, L, D); layout 'blhd' makes them non-contiguous views, as HF does."""
    g = torch.Generator().manual_seed(seed)

    def rand(L):
        if layout == "blhd":
            return torch.randn(B, L, H, D, generator=g).to(DEVICE).transpose(1, 2)
        return torch.randn(B, H, L, D, generator=g).to(DEVICE)

    return rand(Lq), rand(Lk), rand(Lk)


def make_mask(kind, B, Lq, Lk):
    g = torch.Generator().manual_seed(1)
    if kind == "float":  # padding mask (B, 1, 1, Lk): the last keys of batch 1 masked out
        mask = torch.zeros(B, 1, 1, Lk)
        mask[1, ..., Lk - 7:] = -1e9
        return mask.to(DEVICE)
    if kind == "bool":  # (B, 1, Lq, Lk), key 0 always kept
        mask = torch.rand(B, 1, Lq, Lk, generator=g) > 0.3
        mask[..., 0] = True
        return mask.to(DEVICE)
    return None


def assert_matches(out, ref, ranges, levels, max_steps=1.01):
    """>= 99% equal (fp32 summation order may move a few by one step), all within one step
    (or `max_steps`)."""
    lo, hi = float(ranges[5, 0]), float(ranges[5, 1])
    step = (hi - lo) / (levels - 1)
    assert not torch.isnan(out).any()
    out = out.double().cpu()
    ref = ref.cpu()
    close = torch.isclose(out, ref, rtol=1e-5, atol=1e-3 * step)
    assert close.double().mean() >= 0.99, f"{(~close).sum()} of {close.numel()} differ"
    assert ((out - ref).abs() <= max_steps * step).all(), f"max error {(out - ref).abs().max() / step:.3f} steps"
    assert ref.unique().numel() > min(levels, ref.numel()) // 4  # the output range is really used


CASES = {  # name: (B, H, Lq, Lk, D, layout, mask, levels, lut_min, dither, blocks)
    "plain": (2, 2, 40, 40, 16, "bhld", None, 256, LUT, True, {}),
    "float-mask-no-dither": (2, 2, 40, 40, 24, "blhd", "float", 256, LUT, False, {}),
    "bool-mask-16-levels": (2, 2, 40, 40, 16, "blhd", "bool", 16, None, True, {"block_m": 16, "block_n": 16}),
    "two-pass": (2, 2, 40, 150, 24, "blhd", "float", 256, LUT, True, {"block_m": 32, "block_n": 64}),
    "one-pass-256-keys": (2, 2, 24, 150, 16, "blhd", "float", 256, LUT, True, {"block_m": 16, "block_n": 256}),
    # key blocks that tile the keys exactly (the kernel then drops its bounds selects). With
    # D = 16 the one-pass draw has one output two steps from float64, with and without that
    # change: a score on a level boundary in float32 moves its row's softmax
    "even-one-pass": (2, 2, 40, 64, 24, "bhld", "float", 256, LUT, True, {"block_m": 16, "block_n": 64}),
    "even-two-pass": (2, 2, 24, 128, 16, "blhd", "bool", 256, LUT, True, {"block_m": 16, "block_n": 32}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_kernel_matches_the_float64_reference(case):
    B, H, Lq, Lk, D, layout, mask_kind, levels, lut_min, dither, blocks = CASES[case]
    q, k, v = make_inputs(B, H, Lq, Lk, D, layout)
    mask = make_mask(mask_kind, B, Lq, Lk)
    scale = D ** -0.5
    keys = torch.tensor([0x9E3779B9 ^ 12345, 77], device=DEVICE)
    ranges = data_ranges(q, k, v, mask, scale, keys, levels, lut_min, dither)
    out = fused(q, k, v, mask, scale, ranges, keys, levels, lut_min, dither, **blocks)
    ref, _, _ = reference(q, k, v, mask, scale, ranges, keys, levels, lut_min, dither)
    assert out.shape == (B, H, Lq, D) and out.dtype == q.dtype and out.is_contiguous()
    assert_matches(out, ref, ranges, levels)



@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_kernel_matches_ot_attention_eval(dtype):
    """The unfused module in eval, its intermediate roundings to the input dtype and its dither
    (the same hash stream) included."""
    B, H, Lq, Lk, D = 2, 2, 40, 150, 24
    dither = True
    q, k, v = (x.to(dtype) for x in make_inputs(B, H, Lq, Lk, D, "blhd"))
    mask = make_mask("float", B, Lq, Lk).to(dtype)
    attn = OTAttention(OpticalTransformerParams(q_dither=dither, q_init_seed=3), "attn", 4).to(DEVICE).eval()
    attn.kernel = "unfused"  # the composed ops, even on CUDA
    ranges = data_ranges(q, k, v, mask, D ** -0.5, torch.tensor([0, 0]), 256, LUT, False)
    set_ranges(attn, ranges)
    keys = torch.stack([quant.stream_key(s.seed, s.site_id, s.counter) for s in (attn.qk, attn.pv)])
    # the composed ops on the CPU, which sums fp16 products in fp32 as the kernel does (cuBLAS
    # may sum them in fp16, or split the sum: a score then rounds one level away). The dither
    # stream is the same on every device.
    with torch.no_grad():
        want = attn.cpu()(q.cpu(), k.cpu(), v.cpu(), attn_mask=mask.cpu())
    out = fused(q, k, v, mask, D ** -0.5, ranges, keys, 256, attn.qk.lut_min, dither, block_m=32, block_n=64)
    assert out.dtype == dtype
    # fp16 on CUDA: tensor cores sum in another order than the CPU, so a score rounded to fp16
    # can land one level away; through that row's softmax an output element can then move by two
    # steps, not one
    fp16_cuda = dtype == torch.float16 and DEVICE == "cuda"
    assert_matches(out, want.double(), ranges, 256, max_steps=3.0 if fp16_cuda else 1.01)


def test_keys_from_bases_and_counters_are_quant_key_at():
    """Given the sites' key bases and call counters, the kernel draws with quant.key_at's keys."""
    B, H, Lq, Lk, D = 1, 2, 24, 40, 16
    q, k, v = make_inputs(B, H, Lq, Lk, D, "bhld")
    bases = [torch.tensor(b, device=DEVICE) for b in (0x9E3779B9 ^ 12345, 4000000000)]
    counters = [torch.tensor(c, device=DEVICE) for c in (3, 2**33 + 7)]  # keys use the low 32 bits
    keys = torch.stack([quant.key_at(b, c) for b, c in zip(bases, counters)])
    ranges = data_ranges(q, k, v, None, D ** -0.5, keys, 256, LUT, True)
    want, _, _ = reference(q, k, v, None, D ** -0.5, ranges, keys, 256, LUT, True)
    qq = quant.quantize(q, ranges[0], 256)
    kq = quant.quantize(k, ranges[1], 256, LUT)
    vq = quant.quantize(v, ranges[4], 256, LUT)
    out = ot_attention_fwd(qq, kq, vq, None, D ** -0.5, ranges[[2, 3, 5]], bases, 256, True, counters=counters)
    assert_matches(out, want, ranges, 256)
    stale = ot_attention_fwd(qq, kq, vq, None, D ** -0.5, ranges[[2, 3, 5]], bases, 256, True)
    assert not torch.equal(out, stale)  # the counters did change the draw


def test_two_pass_probabilities_sum_to_one():
    """v = 1 and fine levels: each output row is the sum of its quantized probabilities."""
    B, H, Lq, Lk, D = 1, 2, 24, 300, 16
    q, k, _ = make_inputs(B, H, Lq, Lk, D, "bhld")
    v = torch.ones(B, H, Lk, D, device=DEVICE)
    mask = make_mask("float", 2, Lq, Lk)[:1]
    ranges = torch.tensor([[-3.0, 3.0], [-3.0, 3.0], [-20.0, 20.0], [0.0, 1.0], [0.0, 1.0], [0.0, 2.0]], device=DEVICE)
    keys = torch.tensor([5, 6], device=DEVICE)
    out = fused(q, k, v, mask, 0.25, ranges, keys, 2**16, None, True, block_m=16, block_n=64)
    assert (out - 1).abs().max() < 3e-3


@pytest.mark.parametrize("Lk, one_pass, two_pass", [(40, {64, 128}, set()), (128, {128}, set()),
                                                    (300, {512}, {32, 64}), (512, {512}, {32, 64}), (600, set(), {32, 64})])
def test_autotuner_tries_one_pass_up_to_512_keys(Lk, one_pass, two_pass):
    """The tilings the autotuner times: one pass up to 128 keys; up to 512 one pass (a block of
    Lk rounded up to a power of two) or two passes; beyond, two passes."""
    from optopass.passes.optical.kernels import attention

    kept = attention._prune(attention._TUNING, {"Lk": Lk})
    widths = {c.kwargs["BLOCK_N"] for c in kept}
    assert {n for n in widths if n >= Lk} == one_pass
    assert {n for n in widths if n < Lk} == two_pass


@pytest.mark.skipif(torch.cuda.is_available(), reason="compiled on CUDA")
def test_cpu_runs_use_the_interpreter():
    assert triton.knobs.runtime.interpret, "TRITON_INTERPRET must be set before triton is imported (conftest)"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the autotuned launch runs on CUDA only")
@pytest.mark.parametrize("Lk", [128, 300, 512])
def test_autotuned_launch_matches_a_fixed_tiling(Lk):
    """fp16, head dim 64, no block override: whatever tile shape Triton's autotuner picked (one
    pass at 128 keys, one or two at 300 and 512) gives the numbers of a fixed tiling (tested above against
    float64), up to the float32 summation order."""
    B, H, Lq, D = 2, 3, Lk, 64
    q, k, v = (x.half() for x in make_inputs(B, H, Lq, Lk, D, "blhd"))
    mask = make_mask("float", B, Lq, Lk).half()
    keys = torch.tensor([99, 1234], device=DEVICE)
    ranges = data_ranges(q.float(), k.float(), v.float(), mask.float(), D ** -0.5, keys, 256, LUT, True)
    tuned = fused(q, k, v, mask, D ** -0.5, ranges, keys, 256, LUT, True)
    fixed = fused(q, k, v, mask, D ** -0.5, ranges, keys, 256, LUT, True, block_m=32, block_n=64, num_warps=4)
    assert_matches(tuned, fixed.double(), ranges, 256)
