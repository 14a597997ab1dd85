"""Numerics of the Optical Transformer sites against references written in the test.

The float64 reference below restates the op (Anderson et al., arXiv 2302.10360, as mase-triton
defines it) from its description, not from optopass:

  1. each input: clamp to [lo, hi], scale to ``levels-1`` steps (mase-triton divides by
     ``hi - lo + 1e-8``), round half to even, scale back;
  2. weight side (W for fc, the right operand for matmul): a non-zero value under
     ``lut_min*hi`` (positive) or ``lut_min*|lo|`` (negative) in magnitude becomes that floor;
  3. matmul, then quantize the output over its range (rounded here; dithered in the real op);
  4. add the bias.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import torch
from torch import nn

import optopass
from optopass.passes.optical import quant
from optopass.passes.optical.optical_transformer import OpticalTransformerParams, OTAttention, OTLinear, OTMatmul
from optopass.passes.optical.sites import optical_sites
from tests.conftest import hf_inputs, tiny_hf_model

mase = pytest.importorskip("mase_triton.optical_compute.functional")

EPS = 1e-8  # mase-triton's zero-width guard
TIE = 1e-3  # grid positions closer than this to a half step may round either way in float32


# ------------------------------------------------------------------------------------------------
# The independent reference


def ref_grid(x: torch.Tensor, lo: float, hi: float, levels: int) -> torch.Tensor:
    return (x.double().clamp(lo, hi) - lo) / (hi - lo + EPS) * (levels - 1)


def ref_quantize(x: torch.Tensor, lo: float, hi: float, levels: int, lut_min: float | None = None) -> torch.Tensor:
    q = torch.round(ref_grid(x, lo, hi, levels)) / (levels - 1) * (hi - lo) + lo
    if lut_min is not None:
        pos, neg = lut_min * hi, -lut_min * abs(lo)
        q = torch.where((q > 0) & (q < pos), torch.full_like(q, pos), q)
        q = torch.where((q < 0) & (q > neg), torch.full_like(q, neg), q)
    return q


def near_tie(x: torch.Tensor, lo: float, hi: float, levels: int) -> torch.Tensor:
    frac = ref_grid(x, lo, hi, levels).frac()
    return (frac - 0.5).abs() < TIE


def away_from_ties(x: torch.Tensor, lo: float, hi: float, levels: int) -> torch.Tensor:
    """`x` with values whose grid position is (almost) a half step moved by a tenth of a step, so
    that float32 and float64 round them the same way."""
    step = (hi - lo) / (levels - 1)
    return torch.where(near_tie(x, lo, hi, levels), x + 0.1 * step, x)


def ref_linear(x, w, b, r: dict, levels: int, lut_min):
    xq = ref_quantize(x, *r["x"], levels)
    wq = ref_quantize(w, *r["w"], levels, lut_min)
    y = xq @ wq.T
    out = ref_quantize(y, *r["out"], levels)
    return (out if b is None else out + b.double()), y


def ref_matmul(a, b, r: dict, levels: int, lut_min):
    y = ref_quantize(a, *r["a"], levels) @ ref_quantize(b, *r["b"], levels, lut_min)
    return ref_quantize(y, *r["out"], levels), y


def assert_matches_reference(got, want, y_ref, out_range, levels):
    """`got` equals `want` within float32 rounding, except where the reference output sits on a
    half step (float32 may round it either way): there within one output step."""
    lo, hi = out_range
    step = (hi - lo) / (levels - 1)
    scale = max(abs(lo), abs(hi), 1.0)
    diff = (got.double() - want).abs()
    ties = near_tie(y_ref, lo, hi, levels)
    assert ties.float().mean() < 0.02
    assert (diff[~ties] <= 1e-5 * scale).all(), f"max diff {diff[~ties].max().item()}"
    assert (diff[ties] <= step * (1 + 1e-4) + 1e-5 * scale).all()


def ranges_of(site) -> dict[str, tuple[float, float]]:
    return {name: tuple(site.range(name).double().tolist()) for name in site.range_names}


def set_ranges(site, **ranges) -> None:
    """Give a site fixed statistics and freeze them."""
    with torch.no_grad():
        for name, (lo, hi) in ranges.items():
            site.range(name).copy_(torch.tensor([lo, hi]))
    site.set_stats_mode("frozen")
    site.eval()


def quantile_range(t: torch.Tensor, lo_q=0.03, hi_q=0.97) -> tuple[float, float]:
    """A range a little inside the data, so clamping is exercised; float32-representable."""
    flat = t.double().flatten()
    qs = torch.quantile(flat, torch.tensor([lo_q, hi_q], dtype=torch.float64))
    return tuple(float(v) for v in qs.float())


def params(**kw) -> OpticalTransformerParams:
    return OpticalTransformerParams(**kw)


LEVELS_LUT = [(256, 0.020040), (256, None), (16, 0.2), (7, 0.05)]


# ------------------------------------------------------------------------------------------------
# Deterministic numerics (q_dither: false)


@pytest.mark.parametrize("levels, lut_min", LEVELS_LUT)
def test_linear_without_dither_equals_float64_reference(levels, lut_min):
    gen = torch.Generator().manual_seed(levels)
    x = torch.randn(5, 7, 24, generator=gen) * 1.5
    w = torch.randn(12, 24, generator=gen) * 0.3
    b = torch.randn(12, generator=gen)
    r = {"x": quantile_range(x), "w": quantile_range(w)}
    x, w = away_from_ties(x, *r["x"], levels), away_from_ties(w, *r["w"], levels)
    _, y = ref_linear(x, w, None, {**r, "out": (-1.0, 1.0)}, levels, lut_min)
    r["out"] = quantile_range(y)
    site = OTLinear(params(q_levels=levels, q_lut_min=lut_min, q_dither=False), "fc", 0)
    set_ranges(site, **r)
    r = ranges_of(site)
    want, y = ref_linear(x, w, b, r, levels, lut_min)
    with torch.no_grad():
        got = site(x, w, b)
        assert_matches_reference(got, want, y, r["out"], levels)
        assert_matches_reference(site(x, w), want - b.double(), y, r["out"], levels)


@pytest.mark.parametrize("levels, lut_min", LEVELS_LUT)
def test_matmul_without_dither_equals_float64_reference(levels, lut_min):
    gen = torch.Generator().manual_seed(100 + levels)
    a = torch.randn(2, 4, 9, 16, generator=gen)
    b = torch.randn(2, 4, 16, 9, generator=gen) * 0.5
    r = {"a": quantile_range(a), "b": quantile_range(b)}
    a, b = away_from_ties(a, *r["a"], levels), away_from_ties(b, *r["b"], levels)
    _, y = ref_matmul(a, b, {**r, "out": (-1.0, 1.0)}, levels, lut_min)
    r["out"] = quantile_range(y)
    site = OTMatmul(params(q_levels=levels, q_lut_min=lut_min, q_dither=False), "attn", 0)
    set_ranges(site, **r)
    r = ranges_of(site)
    want, y = ref_matmul(a, b, r, levels, lut_min)
    with torch.no_grad():
        assert_matches_reference(site(a, b), want, y, r["out"], levels)


def test_first_training_call_takes_the_batch_ranges_and_quantizes_with_them():
    gen = torch.Generator().manual_seed(3)
    x, w, b = torch.randn(6, 20, generator=gen), torch.randn(10, 20, generator=gen), torch.randn(10, generator=gen)
    levels, lut_min = 64, 0.02004
    site = OTLinear(params(q_levels=levels, q_lut_min=lut_min, q_dither=False), "fc", 0).train()
    with torch.no_grad():
        got = site(x, w, b)
    r = ranges_of(site)
    assert r["x"] == (float(x.min()), float(x.max()))
    assert r["w"] == (float(w.min()), float(w.max()))
    want, y = ref_linear(x, w, b, r, levels, lut_min)
    torch.testing.assert_close(torch.tensor(r["out"], dtype=torch.float64), torch.stack([y.min(), y.max()]), rtol=1e-5, atol=1e-5)
    assert_matches_reference(got, want, y, r["out"], levels)


def test_lut_floor_on_known_values():
    # grid of step 0.01 over [-1, 2]; floors: +0.05*2 = 0.1 and -0.05*|-1| = -0.05
    x = torch.tensor([0.013, -0.021, 0.5, -0.5, 0.2, -0.07, 1.7, -0.99, 5.0, -5.0])
    want = torch.tensor([0.1, -0.05, 0.5, -0.5, 0.2, -0.07, 1.7, -0.99, 2.0, -1.0], dtype=torch.float64)
    got = quant.quantize(x, torch.tensor([-1.0, 2.0]), 301, lut_min=0.05)
    torch.testing.assert_close(got.double(), want, rtol=0, atol=1e-6)
    torch.testing.assert_close(ref_quantize(x, -1.0, 2.0, 301, 0.05), want, rtol=0, atol=1e-6)
    no_lut = quant.quantize(x, torch.tensor([-1.0, 2.0]), 301)
    torch.testing.assert_close(no_lut[:2].double(), torch.tensor([0.01, -0.02], dtype=torch.float64), rtol=0, atol=1e-6)


def test_rounding_is_half_to_even():
    # levels-1 = 4 steps over [0, 4]: grid positions 0.5, 1.5, 2.5, 3.5 are exact ties
    x = torch.tensor([0.5, 1.5, 2.5, 3.5, 0.49, 0.51])
    got = quant.quantize(x, torch.tensor([0.0, 4.0]), 5)
    assert got.tolist() == [0.0, 2.0, 2.0, 4.0, 0.0, 1.0]


@pytest.mark.parametrize("mask_kind", ["none", "additive", "bool"])
def test_sdpa_site_without_dither_equals_float64_reference(mask_kind):
    levels, lut_min = 128, 0.020040
    gen = torch.Generator().manual_seed(17)
    q, k, v = (torch.randn(2, 4, 6, 8, generator=gen) for _ in range(3))
    keep = torch.ones(2, 1, 1, 6, dtype=torch.bool)
    keep[1, ..., 4:] = False  # the second row pads its last two keys
    mask = {"none": None, "additive": torch.where(keep, 0.0, torch.finfo(torch.float32).min), "bool": keep}[mask_kind]
    scale = 8 ** -0.5
    site = OTAttention(params(q_levels=levels, q_lut_min=lut_min, q_dither=False), "attn", 0)
    r_qk = {"a": quantile_range(q), "b": quantile_range(k)}
    q = away_from_ties(q, *r_qk["a"], levels)
    k = away_from_ties(k, *r_qk["b"], levels)
    _, s_ref = ref_matmul(q, k.transpose(-2, -1), {**r_qk, "out": (-1.0, 1.0)}, levels, lut_min)
    r_qk["out"] = quantile_range(s_ref, 0.01, 0.99)
    r_pv = {"a": (0.0, 1.0), "b": quantile_range(v)}
    v = away_from_ties(v, *r_pv["b"], levels)
    r_pv["out"] = (-2.0, 2.0)
    set_ranges(site.qk, **r_qk)
    set_ranges(site.pv, **r_pv)
    site.eval()
    r_qk, r_pv = ranges_of(site.qk), ranges_of(site.pv)
    # reference: optical Q·Kᵀ -> scale -> mask -> softmax -> optical P·V
    scores, s_ref = ref_matmul(q, k.transpose(-2, -1), r_qk, levels, lut_min)
    scores = scores * scale
    if mask is not None:
        scores = scores.masked_fill(~keep, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    want, y_ref = ref_matmul(probs, v, r_pv, levels, lut_min)
    with torch.no_grad():
        got = site(q, k, v, attn_mask=mask)
    # a query row whose scores hold a half-step tie may round differently in float32
    clean_rows = ~near_tie(s_ref, *r_qk["out"], levels).any(dim=-1) & ~near_tie(probs, *r_pv["a"], levels).any(dim=-1)
    assert clean_rows.float().mean() > 0.8
    assert_matches_reference(got[clean_rows], want[clean_rows], y_ref[clean_rows], r_pv["out"], levels)


# ------------------------------------------------------------------------------------------------
# Agreement with mase-triton's CPU functions


@pytest.mark.parametrize("levels", [256, 16, 3])
@pytest.mark.parametrize("lut_min", [None, 0.02004, 0.2])
@pytest.mark.parametrize("lo, hi", [(-1.75, 2.25), (-2.5, 3.0), (0.0, 1.0)])
def test_quantize_equals_mase_triton(levels, lut_min, lo, hi):
    x = torch.randn(4096, generator=torch.Generator().manual_seed(levels)) * 2
    want, seed = mase.ot_quantize_fn(x, 0, levels, lo, hi, lut_min, "det")
    got = quant.quantize(x, torch.tensor([lo, hi]), levels, lut_min)
    assert seed == 0 and got.dtype == want.dtype == torch.float32
    # the same level everywhere; the value within two ulps of the range's width (from_grid
    # multiplies by the step where mase-triton divides by levels - 1)
    width_ulp = torch.finfo(torch.float32).eps * max(hi - lo, abs(lo), abs(hi))
    assert (got - want).abs().max() <= 2 * width_ulp


def _mase_call(fn, *args):
    """Call a mase-triton CPU function, which reseeds the global RNG, without disturbing it."""
    state = torch.get_rng_state()
    try:
        return fn(*args)
    finally:
        torch.set_rng_state(state)


def test_linear_within_one_output_step_of_mase_triton():
    gen = torch.Generator().manual_seed(11)
    x, w, b = torch.randn(3, 8, 32, generator=gen), torch.randn(16, 32, generator=gen) * 0.2, torch.randn(16, generator=gen)
    levels = 256
    r = {"x": (-2.0, 2.0), "w": (-0.5, 0.5), "out": (-3.0, 3.0)}
    site = OTLinear(params(q_levels=levels, q_lut_min=None, q_dither=False), "fc", 0)
    set_ranges(site, **r)
    with torch.no_grad():
        got = site(x, w, b)
    want, _ = _mase_call(mase.ot_qlinear_fn, x, w, b, *r["x"], *r["w"], None, *r["out"], levels, 1234)
    step = (r["out"][1] - r["out"][0]) / (levels - 1)
    assert want.shape == got.shape
    assert ((got - want).abs() <= step * (1 + 1e-4)).all()
    assert not torch.equal(got, want)  # mase-triton always dithers its output


@pytest.mark.parametrize("lut_min", [0.0, 0.02004])  # mase-triton's matmul op refuses None here
def test_matmul_within_one_output_step_of_mase_triton(lut_min):
    gen = torch.Generator().manual_seed(12)
    a, b = torch.randn(2, 4, 8, 16, generator=gen), torch.randn(2, 4, 16, 8, generator=gen)
    levels = 256
    r = {"a": (-2.0, 2.0), "b": (-2.5, 2.5), "out": (-8.0, 8.0)}
    site = OTMatmul(params(q_levels=levels, q_lut_min=lut_min, q_dither=False), "attn", 0)
    set_ranges(site, **r)
    with torch.no_grad():
        got = site(a, b)
    want, _ = _mase_call(mase.ot_qmatmul_fn, a, b, *r["a"], *r["b"], lut_min, *r["out"], levels, 99)
    step = (r["out"][1] - r["out"][0]) / (levels - 1)
    assert ((got - want).abs() <= step * (1 + 1e-4)).all()


# ------------------------------------------------------------------------------------------------
# The output dither


def _dithered_matmul(levels=16, seed=0, site_id=0, dither=True):
    site = OTMatmul(params(q_levels=levels, q_lut_min=None, q_init_seed=seed, q_dither=dither), "attn", site_id)
    set_ranges(site, a=(-2.0, 2.0), b=(-2.0, 2.0), out=(-6.0, 6.0))
    return site


def _operands(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(4, 8, 16, generator=gen), torch.randn(4, 16, 8, generator=gen) * 0.5


def test_dithered_output_lies_on_the_grid_within_one_step_of_the_rounded_one():
    levels, (lo, hi) = 16, (-6.0, 6.0)
    step = (hi - lo) / (levels - 1)
    a, b = _operands()
    dithered, rounded = _dithered_matmul(levels), _dithered_matmul(levels, dither=False)
    with torch.no_grad():
        first, second, plain = dithered(a, b), dithered(a, b), rounded(a, b)
    assert not torch.equal(first, second)
    for out in (first, second):
        k = (out.double() - lo) / step
        assert ((k - k.round()).abs() < 1e-4).all()
        assert ((k.round() >= 0) & (k.round() <= levels - 1)).all()
        assert ((out - plain).abs() <= step * (1 + 1e-4)).all()


def test_linear_dither_before_bias_lies_on_the_grid():
    levels, out = 32, (-4.0, 4.0)
    gen = torch.Generator().manual_seed(5)
    x, w = torch.randn(6, 16, generator=gen), torch.randn(8, 16, generator=gen) * 0.4
    site = OTLinear(params(q_levels=levels, q_lut_min=0.02004), "fc", 3)
    set_ranges(site, x=(-2.0, 2.0), w=(-1.0, 1.0), out=out)
    with torch.no_grad():
        y1, y2 = site(x, w), site(x, w)
    assert not torch.equal(y1, y2)
    k = (y1.double() - out[0]) / ((out[1] - out[0]) / (levels - 1))
    assert ((k - k.round()).abs() < 1e-4).all()


def test_linear_under_autocast_returns_the_dtype_of_autocasts_linear():
    """float32 weights and bias under bfloat16 autocast: the site's output has torch's linear's
    dtype there (bfloat16), so the activations after it are not promoted to float32 by the bias
    (which sent the attention's operands through its float32 path)."""
    gen = torch.Generator().manual_seed(6)
    x, w, b = torch.randn(4, 16, generator=gen), torch.randn(8, 16, generator=gen) * 0.4, torch.randn(8, generator=gen)
    site = OTLinear(params(q_levels=256), "fc", 0)
    set_ranges(site, x=(-2.0, 2.0), w=(-1.0, 1.0), out=(-4.0, 4.0))
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        want = torch.nn.functional.linear(x, w, b).dtype
        got = site(x, w, b)
    assert want == torch.bfloat16 and got.dtype == want


def test_rounding_up_frequency_equals_the_fractional_grid_position():
    levels, calls = 16, 400
    lo, hi = -6.0, 6.0
    step = (hi - lo) / (levels - 1)
    a, b = _operands(1)
    site = _dithered_matmul(levels)
    _, y = ref_matmul(a, b, ranges_of(site), levels, None)
    g = ref_grid(y, lo, hi, levels)
    floor, frac = g.floor(), g - g.floor()
    ups = torch.zeros_like(g)
    with torch.no_grad():
        for _ in range(calls):
            k = ((site(a, b).double() - lo) / step).round()
            assert ((k == floor) | (k == floor + 1)).all()
            ups += (k == floor + 1).double()
    freq = ups / calls
    assert (freq - frac).abs().max() < 0.15  # > 6 sigma for 400 Bernoulli draws
    assert abs(float((freq - frac).mean())) < 0.01
    for lo_bin in np.arange(0.0, 1.0, 0.1):
        in_bin = (frac >= lo_bin) & (frac < lo_bin + 0.1)
        if in_bin.sum() >= 10:
            assert abs(float(freq[in_bin].mean() - frac[in_bin].mean())) < 0.03


def test_noise_is_uniform_and_uncorrelated():
    noise = quant.hash_uniform
    key = quant.stream_key(torch.tensor(0), 4, torch.tensor(7))
    u = noise(torch.Size([200_000]), key, torch.device("cpu"))
    assert u.dtype == torch.float32 and (u >= 0).all() and (u < 1).all()
    assert scipy.stats.kstest(u.double().numpy(), "uniform").pvalue > 1e-3
    assert abs(float(u.double().mean()) - 0.5) < 0.003
    assert abs(float(u.double().var()) - 1 / 12) < 0.002
    c = u.double() - 0.5
    for lag in (1, 2, 64):
        r = float((c[:-lag] * c[lag:]).mean() / c.var())
        assert abs(r) < 0.01, lag
    grid = noise(torch.Size([400, 500]), key, torch.device("cpu")).double() - 0.5
    assert abs(float((grid[:-1] * grid[1:]).mean() / grid.var())) < 0.01  # vertical neighbours
    assert u.unique().numel() > 190_000  # fine resolution, not a short period


def test_different_keys_and_counters_give_independent_streams():
    noise = quant.hash_uniform
    cpu, shape = torch.device("cpu"), torch.Size([50_000])
    streams = {
        (seed, site, counter): noise(shape, quant.stream_key(torch.tensor(seed), site, torch.tensor(counter)), cpu)
        for seed in (0, 1) for site in (0, 2) for counter in (0, 1)
    }
    keys = list(streams)
    for i, ki in enumerate(keys):
        for kj in keys[i + 1:]:
            a, b = streams[ki].double() - 0.5, streams[kj].double() - 0.5
            assert not torch.equal(streams[ki], streams[kj]), (ki, kj)
            assert abs(float((a * b).mean() / (a.std() * b.std()))) < 0.02, (ki, kj)
    again = noise(shape, quant.stream_key(torch.tensor(1), 2, torch.tensor(1)), cpu)
    assert torch.equal(again, streams[(1, 2, 1)])


def test_same_seed_gives_the_same_outputs_and_another_seed_others():
    a, b = _operands(2)
    first, twin, other = _dithered_matmul(seed=5), _dithered_matmul(seed=5), _dithered_matmul(seed=6)
    with torch.no_grad():
        for _ in range(3):
            out = first(a, b)
            assert torch.equal(out, twin(a, b))
            assert not torch.equal(out, other(a, b))


def test_counter_advances_once_per_call_and_the_global_rng_is_untouched():
    a, b = _operands(3)
    site = _dithered_matmul()
    state = torch.get_rng_state()
    with torch.no_grad():
        for n in range(1, 4):
            site(a, b)
            assert int(site.counter) == n
    assert torch.equal(torch.get_rng_state(), state)
    rounded = _dithered_matmul(dither=False)
    with torch.no_grad():
        rounded(a, b)
    assert int(rounded.counter) == 0


class TwoLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(12, 24)
        self.fc2 = nn.Linear(24, 6)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def _two_linear(config, seed=0):
    torch.manual_seed(seed)
    return optopass.apply_optical_pass(TwoLinear(), config, example_inputs=(torch.randn(4, 12),))


def _batches(n=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [{"x": torch.randn(8, 12, generator=gen)} for _ in range(n)]


@pytest.fixture(scope="module")
def two_linear_models():
    """Two transforms with the same seed and one with another, same weights, calibrated alike."""
    models = [_two_linear({"fc": {"q_init_seed": s}}) for s in (3, 3, 4)]
    for gm in models:
        optopass.calibrate(gm, _batches())
    return models


def test_models_built_alike_agree_call_for_call(two_linear_models):
    first, twin, other = two_linear_models
    x = torch.randn(5, 12)
    state = torch.get_rng_state()
    with torch.no_grad():
        outs = [(first(x), twin(x), other(x)) for _ in range(3)]
    assert torch.equal(torch.get_rng_state(), state)
    for a, b, c in outs:
        assert torch.equal(a, b)
        assert not torch.equal(a, c)
    assert not torch.equal(outs[0][0], outs[1][0])  # the stream moves on each call


def test_two_linear_module_without_dither_matches_float64_reference():
    gm = _two_linear({"fc": {"q_dither": False, "q_levels": 64}})
    optopass.calibrate(gm, _batches())
    sites = dict(optical_sites(gm))
    r1, r2 = ranges_of(sites["optical_sites.fc1"]), ranges_of(sites["optical_sites.fc2"])
    x = torch.randn(16, 12, generator=torch.Generator().manual_seed(9))
    params_ = gm.state_dict()
    h, _ = ref_linear(x, params_["fc1.weight"], params_["fc1.bias"], r1, 64, 0.02004)
    want, y2 = ref_linear(torch.relu(h), params_["fc2.weight"], params_["fc2.bias"], r2, 64, 0.02004)
    with torch.no_grad():
        got = gm(x).double()
    step = (r2["out"][1] - r2["out"][0]) / 63
    diff = (got - want).abs()
    assert (diff <= 1e-5 * 10).float().mean() > 0.97  # rare ties in fc1's output may move fc2's by a step
    assert (diff <= 2 * step).all()


# ------------------------------------------------------------------------------------------------
# Range statistics


def test_quantiles_work_beyond_16m_elements():
    x = torch.randn(17_000_000, generator=torch.Generator().manual_seed(0))
    got = quant.batch_range(x, (0.001, 0.999))
    want = np.quantile(x.double().numpy(), [0.001, 0.999])
    np.testing.assert_allclose(got.double().numpy(), want, rtol=1e-6, atol=1e-6)
    assert got.dtype == torch.float32 and got.shape == (2,)


@pytest.mark.parametrize("n", [1, 2, 10, 11, 1000])
@pytest.mark.parametrize("qs", [(0.25, 0.75), (0.01, 0.99), (0.1, 0.5), (0.3333, 0.6667)])
def test_quantiles_equal_numpy_linear_on_small_tensors(n, qs):
    x = torch.randn(n, generator=torch.Generator().manual_seed(n)) * 3
    got = quant.batch_range(x.view(1, -1), qs)
    want = np.quantile(x.double().numpy(), qs, method="linear")
    np.testing.assert_allclose(got.double().numpy(), want, rtol=1e-6, atol=1e-6)


def test_min_max_range_without_quantiles():
    x = torch.randn(3, 50)
    assert quant.batch_range(x, None).tolist() == [float(x.min()), float(x.max())]


@pytest.mark.parametrize("quantiles", [None, (0.05, 0.95)])
def test_training_updates_ranges_by_ema(quantiles):
    smooth = 0.9
    gen = torch.Generator().manual_seed(21)
    x1, x2 = torch.randn(4, 16, generator=gen), torch.randn(4, 16, generator=gen) * 3
    w = torch.randn(8, 16, generator=gen)
    levels = 256
    site = OTLinear(params(q_levels=levels, q_smooth_factor=smooth, q_quantiles=quantiles, q_dither=False), "fc", 0).train()

    def batch_range(t):
        t = t.double().flatten().numpy()
        return np.array([t.min(), t.max()]) if quantiles is None else np.quantile(t, quantiles)

    with torch.no_grad():
        site(x1, w)
        r1 = {k: np.array(v) for k, v in ranges_of(site).items()}
        site(x2, w)
    got = {k: np.array(v) for k, v in ranges_of(site).items()}
    np.testing.assert_allclose(r1["x"], batch_range(x1), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got["x"], smooth * batch_range(x1) + (1 - smooth) * batch_range(x2), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got["w"], batch_range(w), rtol=1e-6, atol=1e-6)
    # the output range blends the range of the second call's matmul, quantized with the
    # ranges as updated by that call
    r2 = {k: tuple(v) for k, v in got.items()}
    _, y2 = ref_linear(x2, w, None, {**r2, "out": (0.0, 1.0)}, levels, 0.020040)
    np.testing.assert_allclose(got["out"], smooth * r1["out"] + (1 - smooth) * batch_range(y2), rtol=1e-4, atol=1e-4)


def test_eval_never_updates_statistics_and_observe_always_does():
    x, w = torch.randn(4, 16), torch.randn(8, 16)
    site = OTLinear(params(), "fc", 0).train()
    with torch.no_grad():
        site(x, w)
        before = {k: v.clone() for k, v in site.state_dict().items() if k != "counter"}
        site.eval()
        site(x * 5, w * 5)
    after = {k: v for k, v in site.state_dict().items() if k != "counter"}
    assert all(torch.equal(before[k], after[k]) for k in before)
    site.set_stats_mode("observe")
    with torch.no_grad():
        site(x * 5, w * 5)
    assert not torch.equal(site.x_range, before["x_range"])


def test_uncalibrated_site_in_eval_raises_instead_of_returning_nan():
    site = OTLinear(params(), "fc", 0).eval()
    with pytest.raises(RuntimeError, match="calibrate"):
        site(torch.randn(2, 4), torch.randn(3, 4))
    gm = _two_linear({"fc": {}})
    gm.eval()
    with pytest.raises(RuntimeError, match="calibrate"):
        gm(torch.randn(2, 12))


def test_calibrate_collects_then_freezes():
    gm = _two_linear({"fc": {}})
    batches = _batches(3, seed=4)
    optopass.calibrate(gm, batches)
    assert not gm.training
    sites = dict(optical_sites(gm))
    assert {s.stats_mode for s in sites.values()} == {"frozen"}
    # fc1 saw the raw batches: EMA (0.9) of their min/max
    ranges = [np.array([b["x"].double().min(), b["x"].double().max()]) for b in batches]
    want = ranges[0]
    for r in ranges[1:]:
        want = 0.9 * want + 0.1 * r
    np.testing.assert_allclose(sites["optical_sites.fc1"].x_range.double().numpy(), want, rtol=1e-6, atol=1e-6)
    frozen = {k: v.clone() for k, v in gm.state_dict().items() if k.endswith("_range")}
    gm.train()
    gm(torch.randn(8, 12) * 10).sum().backward()
    assert all(torch.equal(v, gm.state_dict()[k]) for k, v in frozen.items())


def test_calibrate_without_freeze_leaves_auto():
    gm = _two_linear({"fc": {}})
    optopass.calibrate(gm, _batches(), freeze=False)
    sites = dict(optical_sites(gm))
    assert {s.stats_mode for s in sites.values()} == {"auto"}
    before = sites["optical_sites.fc1"].x_range.clone()
    with torch.no_grad():
        gm(torch.randn(8, 12) * 10)  # eval: unchanged
    assert torch.equal(before, sites["optical_sites.fc1"].x_range)
    gm.train()
    with torch.no_grad():
        gm(torch.randn(8, 12) * 10)
    assert not torch.equal(before, sites["optical_sites.fc1"].x_range)


def test_calibrate_refuses_a_model_without_sites_and_no_batches():
    with pytest.raises(ValueError, match="no optical site"):
        optopass.calibrate(TwoLinear(), _batches())
    gm = _two_linear({"fc": {}})
    with pytest.raises(ValueError, match="no batch"):
        optopass.calibrate(gm, [])


# ------------------------------------------------------------------------------------------------
# Straight-through gradients


def test_gradients_reach_x_weight_and_bias_straight_through():
    levels, lut_min = 64, 0.02004
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(5, 16, generator=gen).requires_grad_()
    w = nn.Parameter(torch.randn(8, 16, generator=gen) * 0.3)
    b = nn.Parameter(torch.randn(8, generator=gen))
    g = torch.randn(5, 8, generator=gen)
    site = OTLinear(params(q_levels=levels, q_lut_min=lut_min), "fc", 0).train()
    (site(x, w, b) * g).sum().backward()
    r = ranges_of(site)
    # STE: each quantizer is the identity backwards, so the matmul sees quantized operands
    xq = ref_quantize(x.detach(), *r["x"], levels)
    wq = ref_quantize(w.detach(), *r["w"], levels, lut_min)
    torch.testing.assert_close(x.grad.double(), g.double() @ wq, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(w.grad.double(), g.double().T @ xq, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(b.grad, g.sum(0))


def test_gradients_reach_both_matmul_operands():
    a = torch.randn(2, 6, 8).requires_grad_()
    b = torch.randn(2, 8, 6).requires_grad_()
    site = OTMatmul(params(), "attn", 0).train()
    site(a, b).sum().backward()
    for t in (a, b):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


def test_a_training_step_on_a_transformed_encoder_reaches_every_weight(tiny, make_inputs):
    model, gm = tiny.capture("roberta", "sdpa", "default")
    gm.train()
    out = gm(**make_inputs(2, 8), labels=torch.tensor([0, 2]))
    out.loss.backward()
    try:
        missing = [n for n, p in gm.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
        assert not missing, missing
    finally:
        gm.zero_grad(set_to_none=True)
        gm.eval()


def test_entering_training_empties_the_eager_weight_cache():
    """An eager no-grad call caches the quantized weight; a training step may change the weight
    without changing the cache's key (a compiled step bypasses the cache), so ``train()`` empties
    it and the next eval call quantizes the current weight."""
    site = OTLinear(OpticalTransformerParams(q_dither=False), "fc", site_id=0)
    w = torch.randn(6, 8)
    site.set_stats_mode("observe")
    site(torch.randn(4, 8), w)
    site.set_stats_mode("frozen")
    site.eval()
    x = torch.randn(4, 8)
    with torch.no_grad():
        before = site(x, w)
        assert site._w_cache is not None
        w.data.mul_(0.5)  # an update the key cannot see: .data writes leave the version alone
        assert torch.equal(site(x, w), before)  # served from the cache
        site.train()
        site.eval()
        after = site(x, w)
    assert not torch.equal(after, before)


# ------------------------------------------------------------------------------------------------
# The attention core recomputed in the backward (OTAttention.recompute)


def _calibrated_attention(recompute: bool, **kw) -> OTAttention:
    gen = torch.Generator().manual_seed(11)
    att = OTAttention(params(**kw), "layer.attn", 0)
    att.qk.set_stats_mode("observe")
    att.pv.set_stats_mode("observe")
    att(*(torch.randn(2, 3, 16, 8, generator=gen) for _ in range(3)))
    for site in (att.qk, att.pv):
        site.set_stats_mode("frozen")
    att.recompute = recompute
    return att.train()


@pytest.mark.parametrize("shot_noise", [False, True])
def test_recomputed_attention_gives_the_same_outputs_gradients_and_keys(shot_noise):
    """Training calls with recompute (the default) against the composed ops keeping every
    intermediate: equal outputs, equal gradients (the backward recomputes the same dithers,
    photon counts and dropout mask), counters advanced alike; and nothing of size L x L is kept."""
    extra = {"q_photons_per_mac": 2.0} if shot_noise else {}
    atts = {r: _calibrated_attention(r, **extra) for r in (True, False)}
    gen = torch.Generator().manual_seed(12)
    qkv = [torch.randn(2, 3, 16, 8, generator=gen) for _ in range(3)]
    mask = torch.zeros(2, 1, 16, 16)
    mask[1, ..., 12:] = float("-inf")
    grad = torch.randn(2, 3, 16, 8, generator=gen)
    results = {}
    for recompute, att in atts.items():
        inputs = [t.clone().requires_grad_() for t in qkv]
        big = []

        def pack(t):
            if t.numel() >= 2 * 3 * 16 * 16:
                big.append(tuple(t.shape))
            return t

        torch.manual_seed(5)  # the dropout mask
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = att(*inputs, attn_mask=mask, dropout_p=0.25)
        out.backward(grad)
        results[recompute] = (out.detach(), [t.grad for t in inputs], att.qk.counter.item(), att.pv.counter.item(), big)
    (out_r, grads_r, cqk_r, cpv_r, big_r), (out_c, grads_c, cqk_c, cpv_c, big_c) = results[True], results[False]
    torch.testing.assert_close(out_r, out_c, rtol=0, atol=0)
    for g_r, g_c in zip(grads_r, grads_c):
        torch.testing.assert_close(g_r, g_c, rtol=1e-6, atol=1e-6)
    assert (cqk_r, cpv_r) == (cqk_c, cpv_c) == (2, 2)  # the calibrating call and this one
    assert not big_r and big_c  # the composed ops keep scores / probabilities; the recomputed core does not


def test_recompute_is_off_where_ranges_are_observed_or_no_gradient_is_taken():
    att = _calibrated_attention(True)
    x = torch.randn(1, 2, 4, 8)
    assert not att._recomputes(x, x, x)  # no gradient wanted
    assert att._recomputes(x.requires_grad_(), x, x)
    att.qk.set_stats_mode("auto")  # training mode: observes
    assert not att._recomputes(x, x, x)


def test_example_no_dither_config_rounds_every_site_and_repeats_its_outputs():
    """examples/no_dither_cfg.yaml (the price of the dither in docs/speed.md): the shipped config
    with every site rounding; a model under it gives the same logits call after call, where the
    shipped config's dither changes them."""
    root = Path(__file__).resolve().parents[3]
    inputs = hf_inputs(2, 10)
    logits = {}
    configs = {"rounding": root / "examples" / "no_dither_cfg.yaml", "shipped": root / "transform_cfg.yaml"}
    for name, path in configs.items():
        cfg = optopass.load_config(path)
        gm = optopass.apply_optical_pass(tiny_hf_model("bert", "sdpa"), cfg)
        sites = [site for _, site in optical_sites(gm) if hasattr(site, "dither")]
        assert sites and all(site.dither == (name == "shipped") for site in sites)
        optopass.calibrate(gm, [inputs])
        with torch.no_grad():
            logits[name] = [gm(**inputs).logits for _ in range(2)]
    assert torch.equal(*logits["rounding"])
    assert not torch.equal(*logits["shipped"])
