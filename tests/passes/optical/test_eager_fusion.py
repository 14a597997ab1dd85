"""quant.EagerFused: a site's elementwise chain as one compiled kernel in eager code, with the
numbers of the float64 reference, the sites' hash dither, and the plain ops as the fallback."""

import warnings

import pytest
import torch

import optopass
from optopass.passes.optical import quant
from optopass.passes.optical.sites import optical_sites
from tests.conftest import hf_inputs, tiny_hf_model
from tests.passes.optical.test_attention_kernel import ref_dither_quantize, ref_quantize


@pytest.fixture(autouse=True)
def _fusion_on(monkeypatch):
    monkeypatch.setenv("OPTOPASS_EAGER_FUSION", "1")  # the default; conftest turns it off elsewhere


def assert_levels_match(got, want, lo, hi, levels):
    """>= 99% equal, all within one level (float32 vs float64 near a rounding tie)."""
    step = (hi - lo) / (levels - 1)
    err = (got.double() - want).abs()
    assert (err <= 1e-5 * max(abs(lo), abs(hi)) + 1e-7).double().mean() >= 0.99
    assert (err <= 1.01 * step).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("lut_min", [None, 0.05])
def test_fused_quantize_matches_the_float64_reference(dtype, lut_min):
    x = (torch.randn(3, 5, 40, generator=torch.Generator().manual_seed(0)) * 2).to(dtype)
    rng = torch.tensor([-2.5, 3.0])
    got = quant.quantize_fused(x, rng, 16, lut_min)
    assert quant.quantize_fused.compiled is not None and not quant.quantize_fused.failed
    assert got.shape == x.shape and got.dtype == torch.float32
    assert_levels_match(got, ref_quantize(x, rng, 16, lut_min), -2.5, 3.0, 16)


@pytest.mark.parametrize("per_channel", [False, True])
def test_fused_dither_is_the_sites_hash_per_element(per_channel):
    y = torch.randn(4, 6, 24, generator=torch.Generator().manual_seed(1)) * 3
    rng = torch.tensor([-4.0, 4.0]) if not per_channel else torch.tensor([[-4.0] * 24, [4.0] * 24])
    if per_channel:
        rng[0, :12], rng[1, :12] = -2.0, 2.0  # half the channels on a narrower range
    seed, site, counter = torch.tensor(3), torch.tensor(7), torch.tensor(11)
    base = quant.stream_base(seed, site)
    got = quant.site_dither_quantize(y, rng, 32, base, counter)
    noise = quant.hash_uniform(y.shape, quant.stream_key(seed, site, counter), y.device)
    lo, hi = rng[0], rng[1]
    want = torch.stack([ref_dither_quantize(y[..., c], (lo.reshape(-1)[c % lo.numel()], hi.reshape(-1)[c % hi.numel()]), 32,
                                            noise[..., c]) for c in range(24)], dim=-1)
    assert_levels_match(got, want, -4.0, 4.0, 32)
    rounded = quant.site_dither_quantize(y, rng, 32, base, None)
    assert not torch.equal(rounded, got)  # the dither moved some values
    again = quant.site_dither_quantize(y, rng, 32, base, counter + 1)
    assert not torch.equal(again, got)  # the next call draws a fresh dither


def test_plain_ops_when_switched_off(monkeypatch):
    fused = quant.EagerFused(quant.quantize, flat=True)
    monkeypatch.setenv("OPTOPASS_EAGER_FUSION", "0")
    x, rng = torch.randn(8, 8), torch.tensor([-1.0, 1.0])
    assert torch.equal(fused(x, rng, 8), quant.quantize(x, rng, 8))
    assert fused.compiled is None


def test_falls_back_to_the_plain_ops_with_one_warning(monkeypatch):
    def broken_compile(fn, **kwargs):
        def run(*args):
            raise RuntimeError("no C++ compiler found\nmore detail")
        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    fused = quant.EagerFused(quant.quantize, flat=True)
    x, rng = torch.randn(8, 8), torch.tensor([-1.0, 1.0])
    with pytest.warns(UserWarning, match="eager elementwise fusion disabled .RuntimeError: no C.. compiler found."):
        got = fused(x, rng, 8)
    assert torch.equal(got, quant.quantize(x, rng, 8)) and fused.failed
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning
        fused(x, rng, 8)


def test_an_error_of_the_inputs_is_raised_and_keeps_the_fusion_on():
    fused = quant.EagerFused(quant.quantize, flat=True)
    with pytest.raises(RuntimeError):
        fused(torch.randn(4, 4), torch.tensor([[-1.0] * 3, [1.0] * 3]), 8)  # 3 channels for 4 columns
    assert not fused.failed
    x, rng = torch.randn(4, 4), torch.tensor([-1.0, 1.0])
    assert fused(x, rng, 8).shape == (4, 4) and not fused.failed
    assert fused(torch.empty(0, 4), rng, 8).shape == (0, 4)  # nothing to compile for


def test_fake_tensors_take_the_plain_ops():
    from torch._subclasses.fake_tensor import FakeTensorMode

    fused = quant.EagerFused(quant.quantize, flat=True)
    with FakeTensorMode():
        out = fused(torch.empty(2, 3), torch.empty(2), 8)
    assert out.shape == (2, 3) and fused.compiled is None


def test_a_model_runs_the_same_fused_and_plain(monkeypatch):
    """A tiny transformed RoBERTa, dither on, eager: fused and plain ops from the same counters
    give the same logits; another draw gives others (so the comparison can fail)."""
    gm = optopass.apply_optical_pass(tiny_hf_model("roberta", "eager"), None)
    inputs = hf_inputs(3, 12)
    optopass.calibrate(gm, [inputs])
    gm.eval()
    sites = dict(optical_sites(gm))
    start = {name: site.counter.clone() for name, site in sites.items()}

    def run(fusion, shift=0):
        monkeypatch.setenv("OPTOPASS_EAGER_FUSION", fusion)
        for name, site in sites.items():
            site.counter.copy_(start[name] + shift)
        with torch.no_grad():
            return gm(**inputs).logits

    fused, plain, other = run("1"), run("0"), run("0", shift=3)
    assert quant.site_dither_quantize.compiled is not None and not quant.site_dither_quantize.failed
    same, moved = (fused - plain).abs().max(), (other - plain).abs().max()
    assert moved > 0 and same < 0.1 * moved


def test_one_compile_serves_every_shape_rank_and_grad_state():
    """No recompiles across sites: other ranks, batch shapes, views and requires_grad."""
    import torch._dynamo

    torch._dynamo.reset()
    quantizer = quant.EagerFused(quant.quantize, flat=True)
    dither = quant.EagerFused(quant._site_dither_quantize, flat=False)
    rng, base = torch.tensor([-1.0, 1.0]), quant.stream_base(torch.tensor(1), 2)
    quantizer(torch.randn(3, 5, 8), rng, 16)
    dither(torch.randn(3, 5, 8), rng, 16, base, torch.tensor(0))
    with torch._dynamo.config.patch(error_on_recompile=True):
        for x in (torch.randn(7, 8, requires_grad=True), torch.randn(2, 4, 6, 8).transpose(1, 2), torch.randn(4, 9, 8)[:, 1:]):
            quantizer(x, rng, 16)
            dither(x, rng, 16, base, torch.tensor(1))
    assert not quantizer.failed and not dither.failed
