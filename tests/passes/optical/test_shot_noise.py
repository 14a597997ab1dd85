"""Shot noise in the Optical Transformer op (``q_photons_per_mac``, ``q_detector_noise``).

References written here from the physics, not from optopass: a detector's photon count of mean
lambda is Poisson(lambda) (mean and variance lambda; scipy's pmf); a balanced pair reading
y = sum x w with sum |x| |w| = m at s photons per unit sees Poisson(s (m + y) / 2) minus
Poisson(s (m - y) / 2), so the read value (count+ - count-) / s has mean y and variance m / s.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch

import optopass
from optopass.passes.optical import quant
from optopass.passes.optical.optical_transformer import OpticalTransformerParams, OTAttention, OTLinear, OTMatmul
from optopass.passes.optical.sites import optical_sites
from optopass.tools.errors import ConfigError
from tests.conftest import hf_inputs, tiny_hf_model, traced_graph_code

N = 1 << 18
Z = 5.0  # bounds below are 5 standard errors: a correct sampler fails one in about 1.7 million


def _uniforms(n: int, key: int, streams=(3, 1)) -> list[torch.Tensor]:
    return [quant.stream_uniform((n,), torch.tensor(key), s, torch.device("cpu")) for s in streams]


@pytest.mark.parametrize("lam", [0.05, 0.7, 3.0, 9.5, 10.0, 40.0, 2000.0])
def test_photon_counts_have_poisson_mean_and_variance(lam):
    u, u_z = _uniforms(N, key=int(lam * 1000) + 7, streams=(3, 1))
    z, _ = quant.normal_pair(u_z, _uniforms(N, key=int(lam * 1000) + 7, streams=(2,))[0])
    counts = quant.photon_count(torch.full((N,), lam), u, z).double()
    mean, var = counts.mean().item(), counts.var().item()
    # standard errors of the sample mean and variance of Poisson(lam): central moments
    # mu2 = lam, mu4 = lam + 3 lam^2, so var(s^2) ~ (mu4 - mu2^2) / n
    se_mean = math.sqrt(lam / N)
    se_var = math.sqrt((lam + 2 * lam * lam) / N)
    assert abs(mean - lam) < Z * se_mean, (mean, lam)
    assert abs(var - lam) < Z * se_var, (var, lam)


@pytest.mark.parametrize("lam", [0.3, 2.5, 8.0])
def test_small_counts_follow_the_poisson_pmf(lam):
    """Below the Gaussian switch the counts are Poisson itself (chi-square over the pmf)."""
    u, u_z = _uniforms(N, key=99 + int(lam * 10))
    counts = quant.photon_count(torch.full((N,), lam), u, torch.zeros(N)).numpy()
    assert np.all(counts == np.round(counts)) and counts.min() >= 0
    top = int(scipy.stats.poisson.ppf(1 - 1e-4, lam))
    observed = np.bincount(np.minimum(counts.astype(int), top + 1), minlength=top + 2)
    pmf = scipy.stats.poisson.pmf(np.arange(top + 1), lam)
    expected = np.append(pmf, 1 - pmf.sum()) * N
    keep = expected > 5  # the chi-square approximation needs expected counts over 5 per bin
    chi2 = ((observed[keep] - expected[keep]) ** 2 / expected[keep]).sum()
    assert scipy.stats.chi2.sf(chi2, keep.sum() - 1) > 1e-4, (chi2, observed, expected)


KERNEL_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _kernel_readout(*args, **options):
    """The read-out kernel on the GPU when there is one (else in Triton's interpreter); on the CPU back."""
    from optopass.passes.optical.kernels.readout import shot_noise_readout

    moved = [a.to(KERNEL_DEVICE) if isinstance(a, torch.Tensor) else a for a in args]
    return shot_noise_readout(*moved, **options).cpu()


READOUTS = {"torch": quant.shot_noise, "kernel": _kernel_readout}  # the kernel: Triton's interpreter on a CPU


@pytest.mark.parametrize("readout", list(READOUTS))
@pytest.mark.parametrize("photons_per_unit,detector", [(0.5, None), (20.0, None), (3.0, 1.5)])
def test_balanced_detection_has_mean_y_and_variance_magnitude_over_s(photons_per_unit, detector, readout):
    gen = torch.Generator().manual_seed(0)
    y = torch.randn(N, generator=gen)
    magnitude = y.abs() + torch.rand(N, generator=gen) * 3  # m >= |y|, as sum |x||w| >= |sum x w|
    s = torch.tensor(photons_per_unit)
    out = READOUTS[readout](y, magnitude, s, detector, torch.tensor(5), torch.tensor(0)).double()
    noise = out - y.double()
    expected_var = magnitude.double() / photons_per_unit
    if detector is not None:
        expected_var = expected_var + 2 * detector**2 / photons_per_unit**2
    # normalised noise: mean 0, variance 1 per element
    norm = noise / expected_var.sqrt()
    assert abs(norm.mean().item()) < Z / math.sqrt(N)
    assert abs(norm.var().item() - 1) < Z * math.sqrt(3 / N)  # kurtosis of these counts stays under 3 + 1


def test_photons_per_unit_sets_the_mean_photons_per_mac():
    """s * mean(|x_i| |w_ji|) over every product of the call equals the configured photons."""
    gen = torch.Generator().manual_seed(1)
    x, w = torch.randn(4, 7, 16, generator=gen), torch.randn(5, 16, generator=gen)
    magnitude = x.abs() @ w.abs().T
    s = quant.photons_per_unit(magnitude, 2.5, depth=16)
    products = (x.double().abs()[..., None, :] * w.double().abs()).mean()  # every |x| |w| product
    assert s.item() * products.item() == pytest.approx(2.5, rel=1e-5)


def _linear_site(**params) -> OTLinear:
    site = OTLinear(OpticalTransformerParams(**params), "fc", site_id=3)
    site.set_stats_mode("observe")
    gen = torch.Generator().manual_seed(2)
    site(torch.randn(64, 32, generator=gen), torch.randn(24, 32, generator=gen))
    site.set_stats_mode("frozen")
    site.eval()
    return site


def _xw(seed: int = 3):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(16, 32, generator=gen), torch.randn(24, 32, generator=gen)


def test_infinite_photons_give_the_noiseless_op():
    x, w = _xw()
    plain, bright = _linear_site(), _linear_site(q_photons_per_mac=1e12)
    bright.load_state_dict(plain.state_dict())
    a, b = plain(x, w), bright(x, w)
    step = (plain.out_range[1] - plain.out_range[0]).item() / 255
    assert (a - b).abs().max().item() <= step * 1.001
    assert (a != b).float().mean().item() < 0.01  # only outputs a rounding boundary away move


def test_few_photons_add_the_expected_noise_before_the_adc():
    x, w = _xw()
    site = _linear_site(q_photons_per_mac=0.5, q_dither=False, q_levels=2**16)
    site.out_range.copy_(torch.tensor([-1e3, 1e3]))  # a fine ADC over a wide range: noise shows
    xq = quant.quantize(x, site.x_range, site.levels)
    wq = quant.quantize(w, site.w_range, site.levels, site.lut_min)
    y, magnitude = xq @ wq.T, xq.abs() @ wq.abs().T
    s = quant.photons_per_unit(magnitude, 0.5, depth=32)
    start = site.counter.item()
    draws = torch.stack([site(x, w) for _ in range(400)]).double()
    assert site.counter.item() == start + 400  # one new key per call
    mean_err = (draws.mean(0) - y) / (magnitude / s / 400).sqrt()
    assert mean_err.abs().mean().item() < 1.0  # |N(0,1)| averages 0.8
    ratio = draws.var(0) / (magnitude / s)
    assert ratio.mean().item() == pytest.approx(1.0, abs=0.06)


def test_noise_is_reproducible_by_seed_and_leaves_the_global_rng_alone():
    x, w = _xw()
    first, same, other = (_linear_site(q_photons_per_mac=1.0, q_init_seed=s) for s in (7, 7, 8))
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = first(x, w)
    assert torch.equal(torch.get_rng_state(), state)  # the global generator was not drawn from
    torch.manual_seed(456)
    b = same(x, w)
    assert torch.equal(a, b) and not torch.equal(a, other(x, w))
    assert not torch.equal(first(x, w), a)  # the next call draws anew


def test_noise_counts_calls_without_dither_and_matmul_sites_draw_it():
    x, w = _xw()
    site = _linear_site(q_photons_per_mac=1.0, q_dither=False)
    start = site.counter.item()
    site(x, w)
    assert site.counter.item() == start + 1 and site.draws_dither()
    mm = OTMatmul(OpticalTransformerParams(q_photons_per_mac=0.2), "attn.qk", site_id=1)
    a, b = torch.randn(2, 3, 8, 16), torch.randn(2, 3, 16, 8)
    mm.set_stats_mode("observe")
    mm(a, b)
    mm.set_stats_mode("frozen")
    quiet = OTMatmul(OpticalTransformerParams(), "attn.qk", site_id=1)
    quiet.load_state_dict(mm.state_dict())
    assert (mm(a, b) - quiet(a, b)).abs().max() > 0


def test_gradients_pass_straight_through_the_detectors():
    x, w = _xw()
    grads = []
    for photons in (None, 0.3):
        site = _linear_site(q_photons_per_mac=photons).train()
        site.set_stats_mode("frozen")
        xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
        site(xr, wr).sum().backward()
        grads.append((xr.grad, wr.grad))
    assert torch.equal(grads[0][0], grads[1][0]) and torch.equal(grads[0][1], grads[1][1])


def test_attention_with_shot_noise_is_not_fused():
    att = OTAttention(OpticalTransformerParams(q_photons_per_mac=1.0), "layer.attn", site_id=0)
    q = torch.randn(1, 2, 8, 16)
    assert not att._fusable(q, q, q, None, 0.0, False)


@pytest.mark.parametrize("key,value,message", [
    ("q_photons_per_mac", 0, "must be a number > 0"),
    ("q_photons_per_mac", -1.0, "must be a number > 0"),
    ("q_photons_per_mac", float("inf"), "must be a number > 0"),
    ("q_photons_per_mac", "many", "must be a number > 0"),
    ("q_detector_noise", -0.5, "must be a number >= 0"),
])
def test_bad_photon_values_name_the_key(key, value, message):
    extra = {"q_photons_per_mac": 1.0} if key == "q_detector_noise" else {}
    with pytest.raises(ConfigError, match=rf"fc\.{key}.*{message}"):
        optopass.load_config({"fc": {key: value, **extra}})


def test_detector_noise_needs_photons():
    with pytest.raises(ConfigError, match=r"fc\.q_detector_noise.*needs q_photons_per_mac"):
        optopass.load_config({"fc": {"q_detector_noise": 1.0}})


def test_photons_per_site_overrides_and_default_op_unchanged():
    cfg = optopass.load_config({"fc": {}, "attn": {}, "overrides": {"re:.*layer\\.0\\..*": {"q_photons_per_mac": 2.0}}})
    assert "q_photons_per_mac" not in optopass.load_config(None).to_dict()["fc"] or \
        optopass.load_config(None).kinds["fc"].params.q_photons_per_mac is None
    gm = optopass.apply_optical_pass(tiny_hf_model("bert", "sdpa"), cfg)
    photons = {site.site_name: site.photons_per_mac for _, site in optical_sites(gm)}
    assert {n for n, p in photons.items() if p == 2.0} == {n for n in photons if ".layer.0." in n}
    assert all(p is None for n, p in photons.items() if ".layer.0." not in n)
    optopass.calibrate(gm, [hf_inputs(2, 10)])
    gm.eval()
    out = gm(**hf_inputs(2, 10)).logits
    assert torch.isfinite(out).all()


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_compiled_shot_noise_equals_eager(device):
    torch._dynamo.reset()
    site = _linear_site(q_photons_per_mac=0.8, q_detector_noise=0.5).to(device)
    x, w = (t.to(device) for t in _xw())
    start = site.counter.clone()
    eager = site(x, w)
    site.counter.copy_(start)
    compiled = torch.compile(site, dynamic=False)
    try:
        with torch.no_grad():
            got = compiled(x, w)
    finally:
        torch._dynamo.reset()
    lo, step = site.out_range[0].item(), (site.out_range[1] - site.out_range[0]).item() / 255
    # compare ADC codes: the dequantized value of one code may differ in its last bits (a GPU
    # kernel contracts the dequantization into a multiply-add); float32 reassociation may move
    # an output across a rounding boundary: one code at most, and almost never
    codes = [torch.round((t - lo) / step) for t in (got, eager)]
    assert (codes[0] - codes[1]).abs().max().item() <= 1
    assert (codes[0] != codes[1]).float().mean().item() < 0.01


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_same_draws_on_cuda_as_on_the_cpu():
    gen = torch.Generator().manual_seed(4)
    y = torch.randn(4096, generator=gen)
    magnitude = y.abs() + torch.rand(4096, generator=gen)
    args = (torch.tensor(2.0), 0.5, torch.tensor(9), torch.tensor(3))
    cpu = quant.shot_noise(y, magnitude, *args)
    cuda = quant.shot_noise(y.cuda(), magnitude.cuda(), *(a.cuda() if isinstance(a, torch.Tensor) else a for a in args))
    # the integer hash is exact on both; log/sqrt/cos may differ in the last bits
    assert torch.allclose(cuda.cpu(), cpu, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
def test_compiled_inversion_is_one_function_fused_into_its_consumer(device):
    """Inductor lowers the Poisson inversion as one elementwise function
    (quant.register_inductor_lowering): it fuses with the rest of the read-out instead of running
    as a call of the eager operator, and counts as the eager operator does."""
    import torch._inductor.config as inductor_config
    from torch._inductor.utils import run_and_get_code

    assert quant.register_inductor_lowering()
    gen = torch.Generator().manual_seed(5)
    lam = torch.rand(4096, generator=gen) * 12
    u, z = torch.rand(4096, generator=gen), torch.randn(4096, generator=gen)

    def fn(lam, u, z):
        return quant.photon_count(lam, u, z) * 2.0

    torch._dynamo.reset()
    with inductor_config.patch(fx_graph_cache=False):  # a cached graph would not show the lowering
        out, code = run_and_get_code(torch.compile(fn), lam.to(device), u.to(device), z.to(device))
    torch._dynamo.reset()
    # without comments: a Triton kernel's header quotes the graph fragment it computes
    source = "\n".join(line for text in code for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert "optopass.poisson_inversion" not in source  # no call of the eager operator ...
    assert "_poisson_inversion_" in source  # ... but its lowering, inside a fused kernel
    want = fn(lam, u, z)
    small = lam < quant.POISSON_EXACT_BELOW
    # the Gaussian branch within float32 rounding (a compiler may contract it into a multiply-add);
    # an inverted count moves only where u sits within exp's last bit of a CDF step: almost never
    torch.testing.assert_close(out.cpu()[~small], want[~small], rtol=1e-6, atol=1e-5)
    assert (out.cpu()[small] != want[small]).float().mean().item() < 1e-3


# ------------------------------------------------------------------------------------------------
# The read-out as one Triton kernel (kernels/readout.py; on a CPU in Triton's interpreter)


@pytest.mark.parametrize("photons_per_unit,detector,offset", [
    (0.05, None, 0.0),   # every mean under 10 photons: every block inverts
    (4.0, 0.5, 0.0),     # blocks of both kinds
    (1.0, None, 100.0),  # every mean far above 10: no block inverts
])
def test_readout_kernel_draws_what_the_torch_ops_draw(photons_per_unit, detector, offset):
    gen = torch.Generator().manual_seed(1)
    n = 5000  # not a multiple of the kernel's block
    y = torch.randn(n, generator=gen) * 3
    magnitude = y.abs() + torch.rand(n, generator=gen) * 2 + offset
    args = (torch.tensor(photons_per_unit), detector, torch.tensor(99), torch.tensor(4))
    want = quant.shot_noise(y, magnitude, *args)
    got = _kernel_readout(y.view(50, 100), magnitude.view(50, 100), *args)
    assert got.shape == (50, 100) and got.dtype == torch.float32
    # the same counts (float32 rounding of log/cos/exp may move one across a step: almost never)
    torch.testing.assert_close(got.reshape(-1), want, rtol=1e-5, atol=1e-5 / photons_per_unit)


@pytest.mark.parametrize("block,num_warps", [(256, 4), (128, 2), (512, 8)])
def test_readout_kernel_outputs_do_not_depend_on_its_tiling(block, num_warps):
    """The tilings the GPU's autotuner chooses among give the same outputs: each output's draws
    are keyed by its flat index, and a block's inversion branch only skips unneeded work."""
    from optopass.passes.optical.kernels.readout import BLOCK

    gen = torch.Generator().manual_seed(3)
    n = 3000  # three blocks of 1024 (the last one partial); means on both sides of the threshold
    y = torch.randn(n, generator=gen) * 3
    magnitude = y.abs() + torch.rand(n, generator=gen) * torch.linspace(0.1, 50.0, n)
    args = (y, magnitude, torch.tensor(2.0), 0.5, torch.tensor(7), torch.tensor(1))
    fixed = _kernel_readout(*args, block=BLOCK)
    tiled = _kernel_readout(*args, block=block, num_warps=num_warps)
    assert torch.equal(fixed, tiled)
    assert torch.equal(fixed, _kernel_readout(*args))  # the default launch: tuned on a GPU, fixed on a CPU


@pytest.mark.parametrize("offset", [False, True])
def test_readout_kernel_redraws_exactly_the_outputs_with_a_dim_detector(offset):
    """The first kernel lists the outputs with a detector mean under the inversion's threshold
    (however they are spread), the second draws those: the count listed is theirs."""
    gen = torch.Generator().manual_seed(5)
    n = 3000
    y = torch.randn(n, generator=gen) * 3
    magnitude = y.abs() + torch.rand(n, generator=gen) * torch.linspace(0.1, 50.0, n)
    s = torch.tensor(2.0)
    if offset:
        dim = s * magnitude < quant.POISSON_EXACT_BELOW
    else:
        means = torch.stack([0.5 * s * (magnitude + y), 0.5 * s * (magnitude - y)])
        dim = (means < quant.POISSON_EXACT_BELOW).any(dim=0)
    listed = []
    args = (s, None, torch.tensor(7), torch.tensor(1), offset)
    got = _kernel_readout(y, magnitude, *args, deferred_count=listed)
    assert listed == [int(dim.sum())] and 0 < listed[0] < n
    torch.testing.assert_close(got, quant.shot_noise(y, magnitude, *args), rtol=1e-5, atol=1e-5 / 2.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the tuned launch runs on CUDA only")
def test_tuned_readout_launch_matches_a_fixed_tiling():
    from optopass.passes.optical.kernels.readout import shot_noise_readout

    gen = torch.Generator().manual_seed(4)
    y = (torch.randn(64, 1000, generator=gen) * 3).cuda()
    magnitude = y.abs() + torch.rand(64, 1000, generator=gen).cuda() * 20
    args = (y, magnitude, torch.tensor(3.0, device="cuda"), None, torch.tensor(7, device="cuda"),
            torch.tensor(1, device="cuda"))
    torch.testing.assert_close(shot_noise_readout(*args), shot_noise_readout(*args, block=1024, num_warps=4),
                               rtol=0, atol=0)


def test_sites_take_the_readout_kernel_on_request_and_give_the_same_output():
    x, w = _xw()
    fused, plain = _linear_site(q_photons_per_mac=0.8), _linear_site(q_photons_per_mac=0.8)
    fused.readout_kernel, plain.readout_kernel = "fused", "unfused"
    assert fused.uses_readout_kernel(x) and not plain.uses_readout_kernel(x)
    assert not _linear_site().uses_readout_kernel(x)  # auto: a GPU only
    fused.to(KERNEL_DEVICE)
    xd, wd = x.to(KERNEL_DEVICE), w.to(KERNEL_DEVICE)
    step = (plain.out_range[1] - plain.out_range[0]).item() / 255
    assert (fused(xd, wd).cpu() - plain(x, w)).abs().max().item() < step / 2  # the same ADC codes
    torch._dynamo.reset()
    try:
        compiled = torch.compile(fused, fullgraph=True)  # the kernel stays one operator in the graph
        fused.counter.zero_()
        plain.counter.zero_()
        assert (compiled(xd, wd).cpu() - plain(x, w)).abs().max().item() < step / 2
    finally:
        torch._dynamo.reset()
    fused.readout_kernel = "triton"
    with pytest.raises(ValueError, match="readout_kernel: must be 'auto', 'fused' or 'unfused'"):
        fused(xd, wd)



@pytest.mark.skipif(not torch.cuda.is_available(), reason="a triton_op's kernels compile into the graph on CUDA")
def test_a_compiled_cuda_site_launches_the_readout_kernels_from_the_compiled_code():
    """On CUDA the read-out is a ``triton_op``: Inductor's code launches its two kernels itself,
    with no call back into the operator's Python, and gives the eager site's ADC codes."""
    from torch._inductor.utils import run_and_get_code

    x, w = _xw()
    site = _linear_site(q_photons_per_mac=0.8).cuda()
    xd, wd = x.cuda(), w.cuda()
    start = site.counter.clone()
    eager = site(xd, wd)
    site.counter.copy_(start)  # the compiled call draws as the eager one did
    torch._dynamo.reset()
    try:
        compiled, codes = run_and_get_code(torch.compile(site, fullgraph=True), xd, wd)
    finally:
        torch._dynamo.reset()
    code = "\n".join(codes)
    assert "_readout_kernel" in code and "_exact_kernel" in code and "optopass.shot_noise_readout" not in code
    step = (site.out_range[1] - site.out_range[0]).item() / 255
    assert (compiled - eager).abs().max().item() < step / 2


def test_a_compiled_site_keeps_the_readout_operator_and_an_exported_one_the_torch_ops(monkeypatch):
    """torch.compile before torch 2.14 traces ``torch.compiler.is_exporting()`` as True (emulated
    here): a site that asked it whether to take its kernel compiled the Poisson inversion into
    the graph instead of the read-out operator. Only torch.export gets the torch ops."""
    x, w = _xw()
    site = _linear_site(q_photons_per_mac=0.8)
    site.readout_kernel = "fused"
    site.to(KERNEL_DEVICE)
    # True while dynamo traces, as before torch 2.14 (eager code, torch.compile's own check, False)
    monkeypatch.setattr(torch.compiler, "is_exporting", lambda: torch.compiler.is_compiling())
    code = traced_graph_code(site, x.to(KERNEL_DEVICE), w.to(KERNEL_DEVICE))
    assert "shot_noise_readout" in code and "poisson_inversion" not in code
    monkeypatch.undo()
    exported = str(torch.export.export(site.cpu(), (x, w)).graph)
    assert "shot_noise_readout" not in exported and "poisson_inversion" in exported


# ------------------------------------------------------------------------------------------------
# Offset encoding (q_signed_encoding: offset): one detector, operands shifted to be non-negative


def test_offset_light_is_the_matmul_of_the_shifted_operands():
    gen = torch.Generator().manual_seed(21)
    a = torch.rand(3, 5, 7, generator=gen) * 3 - 1  # in [-1, 2]
    b = torch.rand(3, 7, 4, generator=gen) * 2 - 0.5  # in [-0.5, 1.5]
    a_range, b_range = torch.tensor([-1.0, 2.0]), torch.tensor([-0.5, 1.5])
    light = quant.offset_light(a @ b, a, b, a_range, b_range)
    want = (a.double() + 1.0) @ (b.double() + 0.5)  # every shifted operand >= 0
    torch.testing.assert_close(light.double(), want, rtol=1e-5, atol=1e-5)
    # a range that does not reach below zero needs no shift
    plain = quant.offset_light(a.abs() @ b.abs(), a.abs(), b.abs(), torch.tensor([0.0, 2.0]), torch.tensor([0.2, 1.5]))
    torch.testing.assert_close(plain, a.abs() @ b.abs())


@pytest.mark.parametrize("readout", list(READOUTS))
@pytest.mark.parametrize("photons_per_unit,detector", [(0.5, None), (20.0, None), (3.0, 1.5)])
def test_offset_detection_has_mean_y_and_variance_light_over_s(photons_per_unit, detector, readout):
    """One detector counts Poisson(s * light); the read value (count / s minus the offset
    products) has mean y and variance light / s (+ floor^2 / s^2)."""
    gen = torch.Generator().manual_seed(1)
    y = torch.randn(N, generator=gen)
    light = y.abs() + 0.5 + torch.rand(N, generator=gen) * 3  # light >= 0 (it is a sum of non-negative products)
    s = torch.tensor(photons_per_unit)
    out = READOUTS[readout](y, light, s, detector, torch.tensor(8), torch.tensor(2), True).double()
    expected_var = light.double() / photons_per_unit
    if detector is not None:
        expected_var = expected_var + detector**2 / photons_per_unit**2
    norm = (out - y.double()) / expected_var.sqrt()
    assert abs(norm.mean().item()) < Z / math.sqrt(N)
    assert abs(norm.var().item() - 1) < Z * math.sqrt(3 / N)


def test_offset_readout_kernel_draws_what_the_torch_ops_draw():
    gen = torch.Generator().manual_seed(3)
    y = torch.randn(3000, generator=gen)
    light = y.abs() * 0.1 + torch.rand(3000, generator=gen) * 4
    for s, floor in ((0.5, None), (30.0, 0.7)):
        args = (torch.tensor(s), floor, torch.tensor(5), torch.tensor(1), True)
        torch.testing.assert_close(_kernel_readout(y, light, *args), quant.shot_noise(y, light, *args),
                                   rtol=1e-5, atol=1e-5 / s)


def test_offset_encoded_sites_read_the_noiseless_op_at_infinite_photons():
    x, w = _xw()
    plain = _linear_site()
    bright = _linear_site(q_photons_per_mac=1e12, q_signed_encoding="offset")
    bright.load_state_dict(plain.state_dict())
    step = (plain.out_range[1] - plain.out_range[0]).item() / 255
    assert (plain(x, w) - bright(x, w)).abs().max().item() <= step * 1.001
    dim = _linear_site(q_photons_per_mac=0.5, q_signed_encoding="offset")
    dim.load_state_dict(plain.state_dict())
    assert (plain(x, w) - dim(x, w)).abs().max().item() > 3 * step  # few photons: visible noise
    att = OTMatmul(OpticalTransformerParams(q_photons_per_mac=1e12, q_signed_encoding="offset"), "attn.qk", 0)
    ref = OTMatmul(OpticalTransformerParams(), "attn.qk", 0)
    a, b = torch.randn(2, 6, 8), torch.randn(2, 8, 6)
    for m in (att, ref):
        m.set_stats_mode("observe")
        m(a, b)
        m.set_stats_mode("frozen")
    ref.load_state_dict(att.state_dict())
    step = (ref.out_range[1] - ref.out_range[0]).item() / 255
    assert (att(a, b) - ref(a, b)).abs().max().item() <= step * 1.001


def test_bad_signed_encoding_names_the_key():
    with pytest.raises(ConfigError, match="q_signed_encoding: must be one of differential, offset, got 'rails'"):
        OpticalTransformerParams(q_photons_per_mac=1.0, q_signed_encoding="rails")


@pytest.mark.parametrize("name,encoding", [("shot_noise_cfg.yaml", "differential"),
                                           ("shot_noise_offset_cfg.yaml", "offset")])
def test_example_shot_noise_configs_load_and_run(name, encoding):
    from pathlib import Path

    cfg = optopass.load_config(Path(__file__).resolve().parents[3] / "examples" / name)
    gm = optopass.apply_optical_pass(tiny_hf_model("bert", "sdpa"), cfg)
    sites = [site for _, site in optical_sites(gm) if hasattr(site, "photons_per_mac")]
    assert sites and all(site.photons_per_mac == 10.0 and site.offset_encoding == (encoding == "offset")
                         for site in sites)
    optopass.calibrate(gm, [hf_inputs(2, 10)])
    with torch.no_grad():
        assert torch.isfinite(gm(**hf_inputs(2, 10)).logits).all()
