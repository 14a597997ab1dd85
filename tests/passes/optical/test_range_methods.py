"""Range estimation options: the MSE clip search and per-channel fc output ranges."""

import pytest
import torch

import optopass
from optopass.passes.optical import quant
from optopass.passes.optical.optical_transformer import OpticalTransformerParams, OTLinear
from optopass.tools.errors import ConfigError


def ref_quantize(x: torch.Tensor, lo: float, hi: float, levels: int, lut_min=None) -> torch.Tensor:
    """Float64 reference of steps 1-2 (clamp, scale, round half-even, rescale, LUT floor)."""
    x = x.double().clamp(lo, hi)
    k = torch.round((x - lo) / (hi - lo + 1e-8) * (levels - 1))
    q = k / (levels - 1) * (hi - lo) + lo
    if lut_min is not None:
        pos, neg = lut_min * hi, -lut_min * abs(lo)
        q = torch.where((q > 0) & (q < pos), torch.full_like(q, pos), q)
        q = torch.where((q < 0) & (q > neg), torch.full_like(q, neg), q)
    return q


@pytest.mark.parametrize("lut_min", [None, 0.02004])
def test_mse_range_is_the_best_of_its_grid(lut_min):
    torch.manual_seed(0)
    x = torch.randn(4000)
    x[:5] = torch.tensor([40.0, -35.0, 30.0, 25.0, -28.0])  # outliers stretch min/max
    got = quant.mse_range(x, 256, lut_min).double()
    lo, hi = x.min().item(), x.max().item()
    errors = {}
    for alpha in torch.linspace(1.0, 0.2, quant.MSE_GRID).tolist():
        a_lo, a_hi = lo * alpha, hi * alpha
        errors[(a_lo, a_hi)] = (ref_quantize(x, a_lo, a_hi, 256, lut_min) - x.double()).pow(2).mean().item()
    best = min(errors, key=errors.get)
    torch.testing.assert_close(got, torch.tensor(best, dtype=torch.float64), rtol=1e-5, atol=1e-6)
    if lut_min is not None:  # the floor is 2% of the outlier-stretched max: clipping wins
        assert errors[best] < errors[(lo, hi)]
        assert lo < got[0] < 0 < got[1] < hi


def _params(**kw):
    return OpticalTransformerParams(q_dither=False, q_lut_min=None, **kw)


def test_per_channel_output_ranges_match_a_reference():
    torch.manual_seed(1)
    x, w, b = torch.randn(6, 5, 8), torch.randn(4, 8) * 0.3, torch.randn(4)
    w[2] *= 20  # one output channel with a much wider range
    site = OTLinear(_params(q_out_granularity="channel", q_levels=16), "lin", 0, out_features=4)
    site.set_stats_mode("observe")
    site(x, w, b)
    xr, wr = site.range("x").tolist(), site.range("w").tolist()
    y_ref = ref_quantize(x, *xr, 16) @ ref_quantize(w, *wr, 16).T
    out_range = site.range("out").double()
    assert out_range.shape == (2, 4)
    torch.testing.assert_close(out_range, torch.stack([y_ref.amin(dim=(0, 1)), y_ref.amax(dim=(0, 1))]), rtol=1e-5, atol=1e-5)
    site.set_stats_mode("frozen")
    got = site(x, w, b).double() - b.double()
    for c in range(4):
        expect = ref_quantize(y_ref[..., c], out_range[0, c].item(), out_range[1, c].item(), 16)
        step = (out_range[1, c] - out_range[0, c]).item() / 15
        diff = (got[..., c] - expect).abs()
        # float32 vs float64 may round a value sitting on a half step differently: one step at most
        assert (diff <= step * (1 + 1e-4)).all()
        assert (diff > step * 1e-3 + 1e-5).float().mean() <= 0.1


def test_per_channel_beats_per_tensor_when_one_channel_is_wide():
    torch.manual_seed(2)
    x, w = torch.randn(64, 16), torch.randn(8, 16) * 0.1
    w[0] *= 50
    errors = {}
    for granularity in ("tensor", "channel"):
        site = OTLinear(_params(q_out_granularity=granularity, q_levels=32), "lin", 0, out_features=8)
        site.set_stats_mode("observe")
        out = site(x, w)
        # the matmul of the quantized operands, in float64: what the output quantizer sees
        y = ref_quantize(x, *site.range("x").tolist(), 32) @ ref_quantize(w, *site.range("w").tolist(), 32).T
        errors[granularity] = (out.double() - y)[:, 1:].pow(2).mean().item()
    assert errors["channel"] < errors["tensor"] / 4


def test_calibrate_method_sets_and_keeps_the_site_method():
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    x = torch.randn(4, 8)
    gm = optopass.apply_optical_pass(model, {"fc": {}, "skip": []}, example_inputs=(x,))
    optopass.calibrate(gm, [{"input": x}], method="mse")
    sites = [s for _, s in __import__("optopass.passes.optical.sites", fromlist=["x"]).optical_sites(gm)]
    assert sites and {s.range_method for s in sites} == {"mse"}
    assert {s.stats_mode for s in sites} == {"frozen"}


@pytest.mark.parametrize("values,key", [({"q_range_method": "best"}, "q_range_method"),
                                        ({"q_out_granularity": "row"}, "q_out_granularity")])
def test_bad_range_options(values, key):
    with pytest.raises(ConfigError, match=rf"fc\.{key}: must be one of"):
        optopass.load_config({"fc": values})
