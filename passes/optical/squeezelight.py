"""Numerics of SqueezeLight linear layers: block-circulant weights on multi-operand ring resonators.

J. Gu et al., "SqueezeLight: Towards Scalable Optical Neural Networks with Multi-Operand Ring
Resonators", DATE 2021 (doi:10.23919/DATE51398.2021.9474147); reference layer:
``torchonn.layers.AllPassMORRCirculantLinear`` (pytorch-onn). Written from the paper and this
docstring; no torchonn code is used or needed.

Notation. ``k = miniblock``, ``P = ceil(out/k)``, ``Q = ceil(in/k)``. A dense weight ``W`` (out, in)
is zero-padded to (P k, Q k) and split into k x k blocks ``W[p, q]``. ``T`` is the all-pass MORR
power transmission (:func:`morr_transmission`), ``phi0 = phase_bias``, ``Phi = phase_span``.

What ``SqueezeLightLinearSite.forward(x, W, b)`` computes:

1. Weights (block-circulant, differential rails, quantized)::

       c[p, q, :]  = project_block_circulant(W, k)      # least squares, block[i, j] = c[(i - j) mod k]
       s_w         = max |c|                            # one scale per layer (no gradient)
       c_pos       = Q_w(relu(+c) / s_w)                # each rail in [0, 1], w_bits levels
       c_neg       = Q_w(relu(-c) / s_w)
       W_hat       = s_w * expand_block_circulant(c_pos - c_neg)   # (out, in), what the chip holds

   ``Q_b(v) = round(v (2^b - 1)) / (2^b - 1)``: each rail is an unsigned ``w_bits`` number, so the
   signed weight has ``2 (2^b - 1) + 1`` levels.

2. Inputs (phase encoding needs non-negative operands)::

       lo, hi = x_range                                 # EMA of the batch min/max (buffer)
       dx     = max(hi - lo, EPS)
       u      = Q_in(clamp((x - lo) / dx, 0, 1))        # in_bits levels in [0, 1]; padded inputs are 0

   so ``x ~= lo + dx * u``.

3. Each MORR of block (p, q), row i, sums its k operands as phase shifts (one ring per rail)::

       phi_pos[p, q, i] = phi0 + gamma * sum_j c_pos[p, q, (i - j) mod k] * u[q k + j]
       phi_neg[p, q, i] = phi0 + gamma * sum_j c_neg[p, q, (i - j) mod k] * u[q k + j]
       gamma            = Phi / k                       # full-scale sum (k * 1 * 1) -> phi0 + Phi

   and the balanced photodetector of the pair gives ``D[p, q, i] = T(phi_pos) - T(phi_neg)``.

4. Electrical read-out, summing the Q column blocks of each output::

       y[p k + i] = s_w * dx / (gamma * g) * sum_q D[p, q, i]  +  lo * sum_j W_hat[p k + i, j]  +  b
       g          = T'(phi0)                           # slope of T at the bias point

   cropped to ``out`` outputs. If T were linear with slope g this is exactly
   ``W_hat @ (lo + dx * u) + b``, i.e. ``W_hat @ x + b`` up to input quantization: the decode
   constant only undoes the linear part of the ring's response, and every deviation of T from
   its tangent (the curvature that makes SqueezeLight nonlinear) stays in the output. The
   zero-point term ``lo * rowsum(W_hat)`` is a per-output constant computed in electronics from
   the programmed weights, as in integer quantization with an asymmetric input range; it does
   not depend on x.

Defaults: ``phi0 = phi_star``, the detuning of maximum slope (the inflection of the Lorentzian
dip, :func:`morr_max_slope_phase`, 0.150 rad for the default ring), where the linearisation is
best (zero curvature); and ``Phi = FWHM`` of the dip (:func:`morr_fwhm`, 0.523 rad), i.e. a
full-scale operand sum sweeps a ring by one linewidth, close to the 0..2.4 half-widths window over
which torchonn linearises its MORRs. [phi0, phi0 + Phi] must lie in (0, pi], where T rises
monotonically. Sums beyond the linear part of the window are compressed by the ring: that is
SqueezeLight's nonlinearity and it is kept. (Biasing on resonance, phi0 = 0, is not allowed: the
slope there is 0, so the ring has no linear response to decode.)

Gradients: the circulant projection, the rail split, the input normalisation and the MORR
transmission are differentiated exactly (autograd, and for the ring array the analytic
``T'(phi)``: the true MORR gradient, not an STE); only
the two roundings (``Q_w``, ``Q_in``) use a straight-through estimator (identity gradient), and
the layer scale ``s_w`` and the range buffers carry no gradient. ``clamp`` passes no gradient to
inputs outside [lo, hi].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...tools.checks import is_finite_number, is_int
from ...tools.errors import ConfigError
from .kernels import runs_kernel
from .sites import SiteBase

__all__ = [
    "MORR_A",
    "MORR_R",
    "SqueezeLightLinearSite",
    "SqueezeLightParams",
    "expand_block_circulant",
    "morr_fwhm",
    "morr_max_slope_phase",
    "morr_slope",
    "morr_transmission",
    "project_block_circulant",
]

# torchonn.devices.mrr.MORRConfig_20um_MQ (pytorch-onn, J. Gu): the 20 um-radius, medium-Q
# multi-operand ring that torchonn's MORR layers use by default (Q ~ 2289).
# attenuation_factor = 0.8578 is the round-trip amplitude a; coupling_factor = 0.8985 is the
# self-coupling r. (0.8682 is sometimes quoted for a; the stored torchonn source says 0.8578.)
MORR_A = 0.8578
MORR_R = 0.8985

EPS = 1e-8


# ---------------------------------------------------------------------------------------------
# The ring


def morr_transmission(phi: Tensor, a: float = MORR_A, r: float = MORR_R) -> Tensor:
    """Power transmission of an all-pass micro-ring at round-trip phase `phi` (radians).

    ``T(phi) = (a^2 - 2 a r cos(phi) + r^2) / (1 - 2 a r cos(phi) + (a r)^2)``, with a dip to its
    minimum ``(r - a)^2 / (1 - a r)^2`` on resonance (phi = 0 mod 2 pi). Differentiable by autograd.

    Args:
        phi: round-trip phase detuning from resonance, any shape.
        a: round-trip amplitude transmission (loss), in (0, 1).
        r: self-coupling coefficient of the bus coupler, in (0, 1).

    Returns:
        T(phi), same shape and dtype as `phi`.
    """
    two_ar_cos = (2.0 * a * r) * torch.cos(phi)
    return (a * a + r * r - two_ar_cos) / (1.0 + (a * r) ** 2 - two_ar_cos)


def morr_max_slope_phase(a: float = MORR_A, r: float = MORR_R) -> float:
    """Detuning in (0, pi) where ``T'`` is largest (the inflection of the dip).

    With ``T = 1 - K / (A - B cos phi)`` (``A = 1 + a^2 r^2``, ``B = 2 a r``), ``T'' = 0`` gives
    ``B c^2 + A c - 2 B = 0`` for ``c = cos phi``.
    """
    big_a, big_b = 1.0 + (a * r) ** 2, 2.0 * a * r
    c = (-big_a + math.sqrt(big_a**2 + 8.0 * big_b**2)) / (2.0 * big_b)
    return math.acos(min(1.0, c))


def morr_slope(phi: float, a: float = MORR_A, r: float = MORR_R) -> float:
    """``T'(phi) = K B sin(phi) / (A - B cos(phi))^2`` with ``K = (1 - a^2)(1 - r^2)``."""
    big_a, big_b = 1.0 + (a * r) ** 2, 2.0 * a * r
    k = (1.0 - a * a) * (1.0 - r * r)
    return k * big_b * math.sin(phi) / (big_a - big_b * math.cos(phi)) ** 2


def morr_fwhm(a: float = MORR_A, r: float = MORR_R) -> float:
    """Full width (rad) of the resonance dip at half its depth: ``A - B cos(phi) = 2 (A - B)``."""
    big_a, big_b = 1.0 + (a * r) ** 2, 2.0 * a * r
    return 2.0 * math.acos(max(-1.0, (2.0 * big_b - big_a) / big_b))


# ---------------------------------------------------------------------------------------------
# Block-circulant structure: block[i, j] = c[(i - j) mod k]


def _circulant_index(k: int, device: torch.device) -> Tensor:
    """idx[i, j] = (i - j) mod k."""
    i = torch.arange(k, device=device)
    return (i[:, None] - i[None, :]) % k


def project_block_circulant(weight: Tensor, miniblock: int) -> tuple[Tensor, tuple[int, int]]:
    """Least-squares projection of a dense (out, in) matrix onto k x k circulant blocks.

    The matrix is zero-padded to multiples of k. The circulant basis matrices of a block have
    disjoint supports (one per wrapped diagonal), so the least-squares generator is the mean of
    the block's entries along each diagonal: ``c[p, q, d] = mean_i W[p k + i, q k + (i - d) mod k]``.
    Linear in `weight`, hence differentiable.

    Args:
        weight: dense (out, in) matrix.
        miniblock: block size k >= 1.

    Returns:
        ``(circ, padded_shape)``: generators of shape (P, Q, k) and ``(P k, Q k)``.
    """
    if weight.dim() != 2:
        raise ValueError(f"weight must be 2-D (out, in), got shape {tuple(weight.shape)}")
    k = miniblock
    out_f, in_f = weight.shape
    rows, cols = -(-out_f // k), -(-in_f // k)
    padded = F.pad(weight, (0, cols * k - in_f, 0, rows * k - out_f))
    blocks = padded.reshape(rows, k, cols, k).permute(0, 2, 1, 3)  # (P, Q, i, j)
    idx = _circulant_index(k, weight.device)  # idx[i, d] = (i - d) mod k = column of diagonal d
    rows_idx = torch.arange(k, device=weight.device)[:, None]
    diagonals = blocks[..., rows_idx, idx]  # (P, Q, i, d) = block[i, (i - d) mod k]
    return diagonals.mean(dim=-2), (rows * k, cols * k)


def _circulant_blocks(circ: Tensor) -> Tensor:
    """(..., k) generators -> (..., k, k) blocks with block[i, j] = c[(i - j) mod k]."""
    return circ[..., _circulant_index(circ.shape[-1], circ.device)]


def expand_block_circulant(circ: Tensor, out_features: int, in_features: int) -> Tensor:
    """Rebuild the dense (out_features, in_features) matrix from (P, Q, k) circulant generators.

    Inverse of :func:`project_block_circulant` on block-circulant matrices; padding is cropped.
    """
    rows, cols, k = circ.shape
    if out_features > rows * k or in_features > cols * k:
        raise ValueError(
            f"({out_features}, {in_features}) does not fit in {rows}x{cols} blocks of size {k}"
        )
    dense = _circulant_blocks(circ).permute(0, 2, 1, 3).reshape(rows * k, cols * k)
    return dense[:out_features, :in_features]


# ---------------------------------------------------------------------------------------------
# Quantization


class _RoundSTE(torch.autograd.Function):
    """round() in the forward, identity gradient in the backward (straight-through estimator)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        return torch.round(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return grad


def quantize_unit(v: Tensor, bits: int) -> Tensor:
    """Uniform quantization of `v` (already in [0, 1]) to ``2^bits`` levels, STE gradient."""
    levels = float(2**bits - 1)
    return _RoundSTE.apply(v * levels) / levels


# ---------------------------------------------------------------------------------------------
# Parameters


@dataclass(frozen=True)
class SqueezeLightParams:
    """Parameters of a SqueezeLight layer (YAML keys of the ``squeezelight`` technology).

    Attributes:
        miniblock: circulant block size k = operands per ring, >= 2.
        w_bits: bits of each non-negative weight rail, 1..16.
        in_bits: bits of the non-negative input operands, 1..16.
        morr_a: ring round-trip amplitude a, in (0, 1) (torchonn MORRConfig_20um_MQ).
        morr_r: ring self-coupling r, in (0, 1) (torchonn MORRConfig_20um_MQ).
        phase_bias: detuning phi0 (rad) of a ring with all-zero operands, in (0, pi); null means
            the maximum-slope detuning of the ring.
        phase_span: phase Phi (rad) added by a full-scale operand sum; null means the FWHM of
            the dip. phi0 + Phi must not exceed pi.
        smooth_factor: EMA factor of the input range, ``range = s * range + (1 - s) * batch``,
            in [0, 1].
    """

    miniblock: int = 4
    w_bits: int = 8
    in_bits: int = 8
    morr_a: float = MORR_A
    morr_r: float = MORR_R
    phase_bias: float | None = None
    phase_span: float | None = None
    smooth_factor: float = 0.9

    def __post_init__(self) -> None:
        if not is_int(self.miniblock) or self.miniblock < 2:
            raise ConfigError(f"miniblock: must be an integer >= 2, got {self.miniblock!r}")
        for name in ("w_bits", "in_bits"):
            value = getattr(self, name)
            if not is_int(value) or not 1 <= value <= 16:
                raise ConfigError(f"{name}: must be an integer in 1..16, got {value!r}")
        for name in ("morr_a", "morr_r"):
            value = getattr(self, name)
            if not is_finite_number(value) or not 0.0 < value < 1.0:
                raise ConfigError(f"{name}: must be a number in (0, 1), got {value!r}")
        if self.phase_bias is not None and not (is_finite_number(self.phase_bias) and 0.0 < self.phase_bias < math.pi):
            raise ConfigError(f"phase_bias: must be null or a number in (0, pi), got {self.phase_bias!r}")
        if self.phase_span is not None and not (
            is_finite_number(self.phase_span) and 0.0 < self.phase_span <= math.pi - self.resolved_phase_bias
        ):
            raise ConfigError(
                f"phase_span: must be null or a number in (0, pi - phase_bias] "
                f"(phase_bias = {self.resolved_phase_bias:.4g}), got {self.phase_span!r}"
            )
        if self.resolved_phase_bias + self.resolved_phase_span > math.pi:
            raise ConfigError(
                f"phase_span: the default (FWHM {self.resolved_phase_span:.4g}) plus phase_bias "
                f"{self.resolved_phase_bias:.4g} exceeds pi; set phase_span explicitly"
            )
        if not is_finite_number(self.smooth_factor) or not 0.0 <= self.smooth_factor <= 1.0:
            raise ConfigError(f"smooth_factor: must be a number in [0, 1], got {self.smooth_factor!r}")

    @property
    def resolved_phase_bias(self) -> float:
        """``phase_bias``, or the ring's maximum-slope detuning when it is None."""
        if self.phase_bias is None:
            return morr_max_slope_phase(self.morr_a, self.morr_r)
        return float(self.phase_bias)

    @property
    def resolved_phase_span(self) -> float:
        """``phase_span``, or the FWHM of the ring's dip when it is None."""
        if self.phase_span is None:
            return morr_fwhm(self.morr_a, self.morr_r)
        return float(self.phase_span)


# ---------------------------------------------------------------------------------------------
# The site


class SqueezeLightLinearSite(SiteBase):
    """Simulates ``F.linear(x, weight, bias)`` on SqueezeLight hardware (see the module docstring).

    The dense `weight` and `bias` are passed on every call and are not owned here, so fine-tuning
    trains them through the (linear) block-circulant projection. The only state is the input
    range buffer ``x_range`` = [lo, hi] (NaN until observed), updated as an EMA according to
    ``stats_mode``: ``auto`` in training mode only, ``observe`` always, ``frozen`` never.

    Args:
        params: the technology's parameters.
        name: the site's name (qualified module path of the replaced op), used in messages.
        out_features: rows of the weight.
        in_features: columns of the weight = size of the input's last dimension.
    """

    technology = "squeezelight"
    kind, op = "fc", "linear"
    # Ring phases materialised per chunk of tokens (the torch path): (2 rails) x P x Q x k x tokens <= this.
    chunk_elements = 1 << 23
    # ``auto``: the ring array runs as Triton kernels (kernels/rings.py: no phase is written to
    # memory; one operator, optopass::squeezelight_rings, opaque to torch.compile) on a GPU in
    # float32, as torch ops everywhere else and under torch.export; ``fused``: the kernels
    # wherever float32 runs (on a CPU in Triton's interpreter); ``unfused``: torch ops always.
    kernel = "auto"

    def __init__(self, params: SqueezeLightParams, name: str, out_features: int, in_features: int, site_id: int = 0):
        if not isinstance(params, SqueezeLightParams):
            raise TypeError(f"params must be SqueezeLightParams, got {type(params).__name__}")
        if not (is_int(out_features) and out_features > 0 and is_int(in_features) and in_features > 0):
            raise ValueError(f"out_features and in_features must be positive integers, got {out_features!r}, {in_features!r}")
        super().__init__(name, site_id, seed=0, smooth=params.smooth_factor, quantiles=None)
        self.params = params
        self.out_features = out_features
        self.in_features = in_features
        self.add_range("x")
        k = params.miniblock
        self.phase_bias = params.resolved_phase_bias
        self.phase_span = params.resolved_phase_span
        self.phase_per_unit = self.phase_span / k
        self.ring_gain = morr_slope(self.phase_bias, params.morr_a, params.morr_r)
        self._cache: tuple | None = None

    # -- module plumbing -------------------------------------------------------------------------

    def train(self, mode: bool = True):
        self._cache = None
        return super().train(mode)

    def extra_repr(self) -> str:
        p = self.params
        phase = f"[{self.phase_bias:.4g}, {self.phase_bias + self.phase_span:.4g}] rad"
        return (
            f"site={self.site_name!r}, in_features={self.in_features}, out_features={self.out_features}, "
            f"miniblock={p.miniblock}, w_bits={p.w_bits}, in_bits={p.in_bits}, "
            f"morr_a={p.morr_a}, morr_r={p.morr_r}, phase={phase}, stats_mode={self.stats_mode}"
        )

    # -- forward ---------------------------------------------------------------------------------

    def forward(self, x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
        """SqueezeLight ``linear(x, weight, bias)`` for `x` of shape (..., in_features)."""
        if x.shape[-1] != self.in_features or tuple(weight.shape) != (self.out_features, self.in_features):
            raise ValueError(
                f"SqueezeLight site {self.site_name!r} expects x (..., {self.in_features}) and weight "
                f"({self.out_features}, {self.in_features}), got {tuple(x.shape)} and {tuple(weight.shape)}"
            )
        if self.observing():
            self.observe("x", x)
        self.check_ready()
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        rails, w_scale, zero_point_gain = self._programmed_weights(weight, dtype)
        lo, hi = self.x_range[0].to(dtype), self.x_range[1].to(dtype)
        dx = (hi - lo).clamp_min(EPS)

        flat = x.reshape(-1, self.in_features).to(dtype)
        u = quantize_unit(((flat - lo) / dx).clamp(0.0, 1.0), self.params.in_bits)
        detector = self._ring_readout(u, rails)[:, : self.out_features]
        decode = w_scale * dx / (self.phase_per_unit * self.ring_gain)
        y = decode * detector + lo * zero_point_gain
        if bias is not None:
            y = y + bias.to(dtype)
        return y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def _programmed_weights(self, weight: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
        """(rails (Q, k, 2 P k), layer scale s_w, rowsum(W_hat) (out,)); cached in eval mode."""
        cacheable = (
            not self.training
            and not (torch.is_grad_enabled() and weight.requires_grad)
            and not torch.compiler.is_compiling()
        )
        if not cacheable:
            return self._program(weight, dtype)
        key = (weight.data_ptr(), weight._version, weight.device, weight.dtype, dtype)
        if self._cache is None or self._cache[0] != key:
            with torch.no_grad():
                self._cache = (key, self._program(weight, dtype))
        return self._cache[1]

    def _program(self, weight: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
        p = self.params
        k = p.miniblock
        circ, _ = project_block_circulant(weight.to(dtype), k)  # (P, Q, k)
        w_scale = circ.detach().abs().amax().clamp_min(EPS)
        pos = quantize_unit(torch.relu(circ) / w_scale, p.w_bits)
        neg = quantize_unit(torch.relu(-circ) / w_scale, p.w_bits)
        w_hat = w_scale * expand_block_circulant(pos - neg, self.out_features, self.in_features)
        rows, cols = circ.shape[:2]
        blocks = _circulant_blocks(torch.stack([pos, neg]))  # (2, P, Q, i, j)
        rails = blocks.permute(2, 4, 0, 1, 3).reshape(cols, k, 2 * rows * k)  # (Q, j, (rail, p, i))
        return rails, w_scale, w_hat.sum(dim=1)

    def uses_kernel(self, x: Tensor) -> bool:
        """Whether this call's ring array runs as the Triton kernels (see ``kernel``; float32 only)."""
        return runs_kernel(self.kernel, "kernel", x) and x.dtype == torch.float32

    def _ring_readout(self, u: Tensor, rails: Tensor) -> Tensor:
        """sum_q [T(phi_pos) - T(phi_neg)] for every token: (n, in) -> (n, P k); as the Triton
        kernels (``uses_kernel``), or as torch ops in token chunks."""
        cols, k, width = rails.shape
        n = u.shape[0]
        u = F.pad(u, (0, cols * k - self.in_features)).reshape(n, cols, k).transpose(0, 1)  # (Q, n, k)
        p = self.params
        ring = _RingConstants(self.phase_bias, self.phase_per_unit, p.morr_a, p.morr_r)
        if self.uses_kernel(u):
            from .kernels.ops import squeezelight_rings

            return squeezelight_rings(u, rails, ring.phase_bias, ring.phase_per_unit, *ring.abk)
        chunk = max(1, self.chunk_elements // max(1, cols * width))
        outs = [_DifferentialRings.apply(u[:, i : i + chunk], rails, ring) for i in range(0, n, chunk)]
        return torch.cat(outs, dim=0) if len(outs) > 1 else outs[0]


# ---------------------------------------------------------------------------------------------
# The ring array as torch ops (kernels/rings.py: the same in Triton kernels).
# T(phi) = 1 - K / (A - B cos phi) (the closed form of morr_transmission, rearranged), so
# T(phi_pos) - T(phi_neg) = K (1/den_neg - 1/den_pos). Evaluated in place, and
# differentiated with the analytic T'(phi) = K B sin(phi) / den^2 (the true gradient, recomputed
# from the saved operands in the backward, so activations of size Q x n x 2Pk are never stored).


@dataclass(frozen=True)
class _RingConstants:
    phase_bias: float
    phase_per_unit: float
    a: float
    r: float

    @property
    def abk(self) -> tuple[float, float, float]:
        """(A, B, K) = (1 + a^2 r^2, 2 a r, (1 - a^2)(1 - r^2))."""
        a, r = self.a, self.r
        return 1.0 + (a * r) ** 2, 2.0 * a * r, (1.0 - a * a) * (1.0 - r * r)


def _ring_phase(u: Tensor, rails: Tensor, ring: _RingConstants) -> Tensor:
    """phi = phi0 + gamma * (operand sums): (Q, n, k) x (Q, k, 2Pk) -> (Q, n, 2Pk), a new tensor."""
    return torch.bmm(u, rails).mul_(ring.phase_per_unit).add_(ring.phase_bias)


class _DifferentialRings(torch.autograd.Function):
    """(Q, n, k) operands, (Q, k, 2Pk) rails -> (n, Pk) = sum_q [T(phi_pos) - T(phi_neg)]."""

    @staticmethod
    def forward(ctx, u: Tensor, rails: Tensor, ring: _RingConstants) -> Tensor:
        ctx.save_for_backward(u, rails)
        ctx.ring = ring
        big_a, big_b, k = ring.abk
        inv_den = _ring_phase(u, rails, ring).cos_().mul_(-big_b).add_(big_a).reciprocal_()
        half = rails.shape[-1] // 2
        return (inv_den[..., half:].sum(dim=0) - inv_den[..., :half].sum(dim=0)).mul_(k)

    @staticmethod
    def backward(ctx, grad: Tensor):
        u, rails = ctx.saved_tensors
        ring = ctx.ring
        big_a, big_b, k = ring.abk
        phase = _ring_phase(u, rails, ring)
        den = torch.cos(phase).mul_(-big_b).add_(big_a)
        slope = phase.sin_().mul_(k * big_b * ring.phase_per_unit).div_(den.square_())  # dT/d(sum)
        half = rails.shape[-1] // 2
        slope[..., :half].mul_(grad)
        slope[..., half:].mul_(-grad)
        grad_u = torch.bmm(slope, rails.transpose(1, 2)) if ctx.needs_input_grad[0] else None
        grad_rails = torch.bmm(u.transpose(1, 2), slope) if ctx.needs_input_grad[1] else None
        return grad_u, grad_rails, None
