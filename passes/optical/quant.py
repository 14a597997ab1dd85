"""Numerics of the Optical Transformer op (Anderson et al., arXiv 2302.10360), as mase-triton
defines it, in plain torch so that it runs on any device and Inductor can fuse it.

Every function takes its range as 0-d/1-d tensors that live on the data's device, so a
calibrated forward needs no host synchronisation. Arithmetic is done in float32 whatever the
input dtype; results are cast back.
"""

from __future__ import annotations

import os
import warnings

import torch
from torch import Tensor

EPS = 1e-8  # mase-triton's guard against a zero-width range
_MASK32 = 0xFFFFFFFF


def to_grid(x: Tensor, lo: Tensor, hi: Tensor, levels: int) -> Tensor:
    """Clamp `x` to [lo, hi] and scale it to [0, levels-1] (float32, not rounded).

    The scale is one factor of the range alone, so a compiled eval graph folds it into a
    constant and each element costs a multiply, not a division (within 1 ulp of ``/``).
    """
    x = torch.clamp(x.float(), lo, hi)
    return (x - lo) * ((levels - 1) / (hi - lo + EPS))


def from_grid(k: Tensor, lo: Tensor, hi: Tensor, levels: int) -> Tensor:
    """Map grid indices `k` back to values in [lo, hi]: ``k * step + lo``, the step
    ``(hi - lo) / (levels - 1)`` computed once per range (a compiled eval graph folds it into a
    constant), so each element costs a multiply-add instead of mase-triton's division
    ``k / (levels - 1) * (hi - lo) + lo``; the two differ by an ulp or two of the range's
    width, never by a level. The fused attention kernel computes the same."""
    return k * ((hi - lo) / (levels - 1)) + lo


def lut_floor(x: Tensor, lo: Tensor, hi: Tensor, lut_min: float) -> Tensor:
    """A non-zero value under ``lut_min*hi`` (positive) or ``lut_min*|lo|`` (negative) in
    magnitude becomes that floor, with its sign."""
    pos = lut_min * hi
    neg = -lut_min * lo.abs()
    x = torch.where((x > 0) & (x < pos), pos, x)
    return torch.where((x < 0) & (x > neg), neg, x)


def quantize(x: Tensor, rng: Tensor, levels: int, lut_min: float | None = None) -> Tensor:
    """Deterministic quantization of `x` to `levels` levels over ``rng = [min, max]``.

    Steps 1-2 of the op: clamp, scale to ``levels-1`` steps, round half to even, rescale,
    then the optional LUT floor. Returns float32.
    """
    lo, hi = rng[0], rng[1]
    q = from_grid(torch.round(to_grid(x, lo, hi, levels)), lo, hi, levels)
    if lut_min is not None:
        q = lut_floor(q, lo, hi, lut_min)
    return q


def dither_quantize(x: Tensor, rng: Tensor, levels: int, noise: Tensor | None) -> Tensor:
    """Output quantization with stochastic rounding: ``round(grid(x) + u - 0.5)`` with `noise`
    = u ~ U[0, 1) drawn per element; plain rounding when `noise` is None. Returns float32."""
    lo, hi = rng[0], rng[1]
    k = to_grid(x, lo, hi, levels)
    if noise is not None:
        k = k + (noise - 0.5)
    return from_grid(torch.round(k), lo, hi, levels)


# ---------------------------------------------------------------------------------------------
# Dither streams: keyed by (seed, site, call counter); the global torch RNG is never touched.
# A stateless hash of (key, element index) that needs no host value and fuses into its
# consumer; the same stream on every device, eager or compiled.


def _mulmod32(x: Tensor, c: int) -> Tensor:
    """(x * c) mod 2**32 for int64 `x` in [0, 2**32), exact without int64 overflow (keys)."""
    c_hi, c_lo = c >> 16, c & 0xFFFF
    return (x * c_lo + ((x * c_hi) & 0xFFFF) * 65536) & _MASK32


def _signed32(c: int) -> int:
    """The int32 with the bit pattern of the uint32 `c`."""
    return c - (1 << 32) if c >= 1 << 31 else c


def _srl(x: Tensor, n: int) -> Tensor:
    """Logical right shift of int32 `x` (``>>`` on int32 is arithmetic: mask the sign copies)."""
    return (x >> n) & ((1 << (32 - n)) - 1)


_MIX_C1, _MIX_C2, _GOLDEN = _signed32(0x7FEB352D), _signed32(0x846CA68B), _signed32(0x9E3779B9)


def _lowbias32(x, xor, srl, mul):
    """lowbias32's steps over any arithmetic (torch ops here, Inductor's ops in its lowering)."""
    x = xor(x, srl(x, 16))
    x = mul(x, _MIX_C1)
    x = xor(x, srl(x, 15))
    x = mul(x, _MIX_C2)
    return xor(x, srl(x, 16))


def mix32(x: Tensor) -> Tensor:
    """The 'lowbias32' integer hash (C. Wellons) on uint32 bit patterns held in int32.

    int32 products wrap modulo 2**32 (on CPUs, CUDA and in Triton), so this is the uint32 hash
    in one native 32-bit multiply per step: the per-element dither costs a few integer ops.
    """
    return _lowbias32(x, torch.bitwise_xor, _srl, torch.mul)


def _mix32_key(x: Tensor) -> Tensor:
    """lowbias32 on a 0-d int64 key in [0, 2**32) (exact int64 arithmetic, no wrapping)."""
    x = x ^ (x >> 16)
    x = _mulmod32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mulmod32(x, 0x846CA68B)
    return x ^ (x >> 16)


def stream_base(seed: Tensor, site_id: int | Tensor) -> Tensor:
    """The 32-bit base of one site's keys (int64 in [0, 2**32)): ``lowbias32(seed ^ site *
    0x9E3779B9)``, from the config seed and the site (an int or a 0-d int64 tensor). A site
    keeps it as a buffer, so no call computes it."""
    site = site_id.long() if isinstance(site_id, Tensor) else site_id
    return _mix32_key((seed.long() & _MASK32) ^ (site * 0x9E3779B9 & _MASK32))


def key_at(base: Tensor, counter: Tensor) -> Tensor:
    """The key of call `counter` of the site with key base `base` (int64 in [0, 2**32)):
    ``base ^ (counter * 0x9E3779B9 mod 2**32)``. A handful of integer ops: compiled code computes
    it inside each kernel that draws the dither, so no kernel is spent on one site's key (the
    element hash mixes the key in twice, so consecutive keys need no mixing of their own)."""
    step = counter.to(torch.int32) * _GOLDEN  # int32 products wrap modulo 2**32
    return (base.to(torch.int32) ^ step).long() & _MASK32


def stream_key(seed: Tensor, site_id: int | Tensor, counter: Tensor) -> Tensor:
    """The key (int64 in [0, 2**32)) of call `counter` of a site: ``key_at(stream_base(seed,
    site_id), counter)``."""
    return key_at(stream_base(seed, site_id), counter)


@torch.library.custom_op("optopass::dither_hash", mutates_args=())
def dither_hash(x: Tensor, key: Tensor) -> Tensor:
    """``mix32(mix32(x) ^ key)`` elementwise on int32 bit patterns (`key` 0-d int32).

    One operator, so that Inductor lowers the whole hash as one elementwise function
    (``register_inductor_lowering``). Written as separate torch ops, each xorshift step reads
    its input twice, and Inductor's lowering re-expands a shared unrealized input once per read:
    the two rounds cost 2**6 expansions of the index expression per site, which made compiling
    an optical model several times slower (186 against 44 s on a 2-core CPU for the
    2-layer test model, dither on against off); the kernels are the same."""
    return mix32(mix32(x) ^ key)


@dither_hash.register_fake
def _(x, key):
    return torch.empty_like(x)


_LOWERING = {"registered": False}


def register_inductor_lowering() -> bool:
    """Give Inductor ``dither_hash`` as one elementwise function (idempotent; imports Inductor).

    Called before anything of optopass compiles (``apply_optical_pass``, the eager fusion).
    Without it Inductor still compiles the hash correctly, as a call of the eager op (extra
    kernels). Returns whether the lowering is in place."""
    if _LOWERING["registered"]:
        return True
    try:
        from torch._inductor.lowering import make_pointwise, register_lowering
        from torch._inductor.virtualized import ops
    except Exception as err:  # an Inductor without these internals: the op runs as it is
        warnings.warn(f"optopass: no Inductor lowering for the dither hash ({type(err).__name__}: {err})", stacklevel=2)
        _LOWERING["registered"] = True  # warn once
        return False

    def const(value: int):
        return ops.constant(value, torch.int32)

    def srl(x, n: int):
        return ops.bitwise_and(ops.bitwise_right_shift(x, const(n)), const((1 << (32 - n)) - 1))

    def mix(x):  # mix32, on loaded values: each intermediate is a variable, read as often as needed
        return _lowbias32(x, ops.bitwise_xor, srl, lambda v, c: ops.mul(v, const(c)))

    register_lowering(torch.ops.optopass.dither_hash.default, broadcast=True, type_promotion_kind=None)(
        make_pointwise(lambda x, key: mix(ops.bitwise_xor(mix(x), key))))

    def scale(x, c: float):
        return ops.mul(x, ops.constant(c, torch.float32))

    def at_least(a, b):
        return ops.to_dtype(ops.ge(a, b), torch.float32)

    register_lowering(torch.ops.optopass.poisson_inversion.default, broadcast=True, type_promotion_kind=None)(
        make_pointwise(lambda lam, u: _inversion_steps(lam, u, ops.exp, ops.add, ops.mul, scale, at_least)))
    _LOWERING["registered"] = True
    return True


def hash_uniform(shape: torch.Size, key: Tensor, device: torch.device) -> Tensor:
    """U[0, 1) float32 noise from a stateless hash of (key, element index): for element i,
    ``u = mix32(mix32(i + key*0x9E3779B9) ^ key) >> 8`` over uint32, scaled by 2**-24."""
    numel = 1
    for s in shape:
        numel *= s
    # int64 -> int32 keeps the low 32 bits (the same uint32 bit pattern). No literal >= 2**31
    # here: Inductor narrows the index to int32 and Triton refuses such a constant there.
    k32 = key.long().to(torch.int32)
    idx = torch.arange(numel, device=device, dtype=torch.int64).view(shape).to(torch.int32)
    h = dither_hash(idx + k32 * _GOLDEN, k32)
    return _srl(h, 8).float() * (1.0 / (1 << 24))


def stream_uniform(shape: torch.Size, key: Tensor, stream: int, device: torch.device) -> Tensor:
    """U[0, 1) float32 noise of the numbered `stream` (>= 1) of one call's key: ``hash_uniform``
    with the key ``lowbias32(key ^ stream * 0x632BE5AB)``, so that each stream of a call (shot
    noise of each rail, detector noise) is a draw of its own, apart from the dither's (which
    hashes the call's key itself)."""
    derived = _mix32_key((key.long() & _MASK32) ^ (stream * 0x632BE5AB & _MASK32))
    return hash_uniform(shape, derived, device)


def normal_pair(u1: Tensor, u2: Tensor) -> tuple[Tensor, Tensor]:
    """Two independent standard normals from two U[0, 1) draws (Box-Muller). With 24-bit
    uniforms the largest magnitude is sqrt(2 * 24 * ln 2) = 5.77 sigma."""
    radius = torch.sqrt(-2.0 * torch.log1p(-u1))  # 1 - u1 in (0, 1]: no log(0)
    angle = (2.0 * torch.pi) * u2
    return radius * torch.cos(angle), radius * torch.sin(angle)


POISSON_EXACT_BELOW = 10.0
"""Mean photon count under which a count is drawn from the Poisson distribution itself (by
inversion); at and above it, from a Gaussian of equal mean and variance (the same switch as
numpy's Poisson sampler, which changes method at a mean of 10)."""
POISSON_TERMS = 40  # inversion terms: P(count >= 40) at a mean of 10 is about 1e-11
_INVERSION_U_MAX = 1.0 - 2.0**-18  # keeps u under the float32 CDF's plateau (rounding of 40 terms)


def _inversion_steps(lam, u, exp, add, mul, scale, ge):
    """The CDF inversion's steps over any arithmetic (torch ops here, Inductor's in its lowering):
    ``count = #{k < POISSON_TERMS : CDF(k) <= u}``, the CDF summed term by term."""
    u = scale(u, _INVERSION_U_MAX)
    p = exp(scale(lam, -1.0))
    cdf = p
    count = ge(u, cdf)
    for i in range(1, POISSON_TERMS):
        p = mul(p, scale(lam, 1.0 / i))
        cdf = add(cdf, p)
        count = add(count, ge(u, cdf))
    return count


@torch.library.custom_op("optopass::poisson_inversion", mutates_args=())
def poisson_inversion(lam: Tensor, u: Tensor) -> Tensor:
    """Poisson(`lam`) counts (float32) by inversion of the CDF at `u` ~ U[0, 1), in a fixed number
    of elementwise steps. Exact for means under ``POISSON_EXACT_BELOW`` up to the tail beyond
    ``POISSON_TERMS`` counts and a probability mass of 2**-18 moved from the far tail (float32
    rounding of the CDF).

    One operator, so that Inductor lowers the 40 steps as one elementwise function
    (``register_inductor_lowering``): written as torch ops, each step reads the running CDF
    twice, and Inductor re-expands or materialises such shared intermediates."""
    return _inversion_steps(lam.float(), u.float(), torch.exp, torch.add, torch.mul, lambda x, c: x * c,
                            lambda a, b: (a >= b).float())


@poisson_inversion.register_fake
def _(lam, u):
    return torch.empty_like(lam, dtype=torch.float32)


def photon_count(lam: Tensor, u: Tensor, z: Tensor) -> Tensor:
    """A detector's photon count of mean `lam` (float32 >= 0): Poisson by inversion at `u`
    below ``POISSON_EXACT_BELOW``, ``lam + sqrt(lam) * z`` (z standard normal) above."""
    exact = poisson_inversion(torch.clamp(lam, max=POISSON_EXACT_BELOW), u)
    return torch.where(lam < POISSON_EXACT_BELOW, exact, lam + torch.sqrt(lam) * z)


def offset_light(y: Tensor, a: Tensor, b: Tensor, a_range: Tensor, b_range: Tensor) -> Tensor:
    """The light sums ``sum_k (a_k + c)(b_k + d)`` of ``y = a @ b`` with offset encoding: each
    operand shifted by its range's negative end, ``c = max(-lo_a, 0)``, ``d = max(-lo_b, 0)``, so
    that every shifted operand is >= 0. Computed from `y` and the operands' sums along the
    contraction, ``y + c sum_k b + d sum_k a + K c d`` (float32), without a second matmul."""
    c = torch.clamp(-a_range[0].float(), min=0.0)
    d = torch.clamp(-b_range[0].float(), min=0.0)
    depth = a.shape[-1]
    return (y.float() + c * b.float().sum(dim=-2, keepdim=True) + d * a.float().sum(dim=-1, keepdim=True)
            + depth * c * d)


def shot_noise(y: Tensor, magnitude: Tensor, photons_per_unit: Tensor, detector_noise: float | None,
               base: Tensor, counter: Tensor, offset: bool = False) -> Tensor:
    """The matmul output `y` as a balanced pair of photodetectors would read it (float32); with
    `offset`, as one detector reads offset-encoded operands.

    Signed operands travel on two rails each (x = x+ - x-, w = w+ - w-, all intensities >= 0);
    a product's light reaches the positive detector (x+ w+, x- w-) or the negative one (x+ w-,
    x- w+), so for `y` = sum x w and `magnitude` = sum |x| |w| the detectors' mean photon
    counts are ``s (magnitude + y) / 2`` and ``s (magnitude - y) / 2`` with `photons_per_unit`
    = s. Each count is drawn (``photon_count``) with its own streams of the call's key
    ``key_at(base, counter)``, plus a Gaussian detector floor of `detector_noise` photons rms
    per detector when given; the result is ``(count+ - count-) / s``.

    With `offset`, `magnitude` holds the light sums ``sum (a + c)(b + d)`` (``offset_light``):
    one detector counts Poisson(``s * magnitude``) (streams 1 and 3, and 5 for its floor), and
    the electronics subtract the offset products, ``magnitude - y``, from ``count / s``."""
    key = key_at(base, counter)
    shape, device = y.shape, y.device
    y, magnitude = y.float(), magnitude.float()
    s = photons_per_unit.float()
    if offset:
        z, _ = normal_pair(stream_uniform(shape, key, 1, device), stream_uniform(shape, key, 2, device))
        count = photon_count(torch.clamp(s * magnitude, min=0.0), stream_uniform(shape, key, 3, device), z)
        if detector_noise is not None:
            floor, _ = normal_pair(stream_uniform(shape, key, 5, device), stream_uniform(shape, key, 6, device))
            count = count + detector_noise * floor
        return count / s - (magnitude - y)
    lam_pos = torch.clamp(0.5 * s * (magnitude + y), min=0.0)
    lam_neg = torch.clamp(0.5 * s * (magnitude - y), min=0.0)
    z_pos, z_neg = normal_pair(stream_uniform(shape, key, 1, device), stream_uniform(shape, key, 2, device))
    count = photon_count(lam_pos, stream_uniform(shape, key, 3, device), z_pos)
    count = count - photon_count(lam_neg, stream_uniform(shape, key, 4, device), z_neg)
    if detector_noise is not None:
        d_pos, d_neg = normal_pair(stream_uniform(shape, key, 5, device), stream_uniform(shape, key, 6, device))
        count = count + detector_noise * (d_pos - d_neg)
    return count / s


def photons_per_unit(magnitude: Tensor, photons_per_mac: float, depth: int) -> Tensor:
    """The photons per unit of light (0-d float32) at which one call's products average
    `photons_per_mac` detected photons: ``photons_per_mac * depth / mean(magnitude)``, where
    `magnitude` holds each output's light summed over the contraction of length `depth` (|x| |w|
    on both rails, or the offset-encoded products), so its mean over depth is the mean product.
    That is the optical power setting of the call; computed on the device, no host
    synchronisation."""
    mean = magnitude.float().mean().clamp(min=1e-30)
    return (photons_per_mac * depth) / mean


# ---------------------------------------------------------------------------------------------
# Range statistics


def batch_range(x: Tensor, quantiles: tuple[float, float] | None, per_channel: bool = False) -> Tensor:
    """[lo, hi] of `x` (float32, on x's device): min/max, or the two quantiles.

    With `per_channel`, one range per index of the last dimension: shape (2, C).
    Quantiles use ``torch.kthvalue`` with linear interpolation (torch.quantile's rule), which
    works on tensors of any size (torch.quantile refuses more than 16M elements).
    """
    flat = x.detach().float()
    flat = flat.reshape(-1, flat.shape[-1]) if per_channel else flat.reshape(-1)
    if quantiles is None:
        return torch.stack([flat.amin(dim=0), flat.amax(dim=0)])
    return torch.stack([_quantile(flat, q) for q in quantiles])


MSE_GRID = 24  # shrink factors tried by the MSE range search
MSE_SAMPLE = 1 << 16  # elements the MSE search looks at (a strided subsample of larger tensors)


def mse_range(x: Tensor, levels: int, lut_min: float | None = None) -> Tensor:
    """[lo, hi] minimising the mean squared error of ``quantize(x)`` against `x`.

    Searches ranges ``alpha * [min, max]`` for ``alpha`` from 1 down to 0.2 (clipping outliers
    buys a finer step for the bulk); the LUT floor, when given, is part of the error. All on the
    tensor's device, vectorised over the candidates, no host synchronisation.
    """
    flat = x.detach().reshape(-1).float()
    if flat.numel() > MSE_SAMPLE:
        flat = flat[:: flat.numel() // MSE_SAMPLE]
    full = torch.stack([flat.min(), flat.max()])
    alphas = torch.linspace(1.0, 0.2, MSE_GRID, device=flat.device)
    lo = (full[0] * alphas)[:, None]
    hi = (full[1] * alphas)[:, None]
    k = torch.round(to_grid(flat[None, :], lo, hi, levels))
    q = from_grid(k, lo, hi, levels)
    if lut_min is not None:
        q = lut_floor(q, lo, hi, lut_min)
    err = (q - flat[None, :]).pow(2).mean(dim=1)
    best = torch.argmin(err)
    return torch.stack([lo[best, 0], hi[best, 0]])


def _quantile(flat: Tensor, q: float) -> Tensor:
    """Quantile `q` of `flat` along dim 0 (linear interpolation, like torch.quantile)."""
    n = flat.shape[0]
    pos = q * (n - 1)
    below = int(pos)
    frac = pos - below
    v_lo = torch.kthvalue(flat, below + 1, dim=0).values
    if frac == 0.0 or below + 1 >= n:
        return v_lo
    v_hi = torch.kthvalue(flat, below + 2, dim=0).values
    return v_lo + (v_hi - v_lo) * frac


def ema_update(rng: Tensor, new: Tensor, smooth: float) -> None:
    """In place: ``rng = smooth*rng + (1-smooth)*new``, or ``rng = new`` where `rng` is still
    NaN (the first observation initialises). No host synchronisation."""
    blended = smooth * rng + (1.0 - smooth) * new
    rng.copy_(torch.where(torch.isnan(rng), new, blended))


class STE(torch.autograd.Function):
    """Forward returns the quantized value exactly; backward passes the gradient straight
    through to the unquantized input (the reference's straight-through estimator)."""

    @staticmethod
    def forward(ctx, x: Tensor, q: Tensor) -> Tensor:
        return q.to(x.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad, None


def ste(x: Tensor, q: Tensor) -> Tensor:
    """`q` in the forward, identity gradient to `x` in the backward."""
    if not torch.is_grad_enabled() or not x.requires_grad:
        return q.to(x.dtype)
    return STE.apply(x, q.detach())


# ---------------------------------------------------------------------------------------------
# Eager speed: each site's elementwise chain as one compiled kernel


def _site_dither_quantize(y: Tensor, rng: Tensor, levels: int, base: Tensor, counter: Tensor | None) -> Tensor:
    noise = None if counter is None else hash_uniform(y.shape, key_at(base, counter), y.device)
    return dither_quantize(y, rng, levels, noise)


class EagerFused:
    """`fn`, a chain of elementwise ops whose result needs no gradient (it feeds ``ste``), as one
    compiled kernel when called from eager code: one launch and one pass over memory instead of
    one per op (10-40 per site). Inside torch.compile or export, and on fake or meta tensors,
    the plain ops run (and are traced: there they fuse with their neighbours anyway).

    Compiled with dynamic shapes on 1-d (``flat``) or 2-d (last dimension kept, for per-channel
    ranges) views, so one kernel serves every site and batch shape of a dtype. Where Inductor
    cannot compile (no C++ compiler, say), the plain ops run after one warning (an error that the
    plain ops raise too is the caller's and is raised as is); so they do with
    ``OPTOPASS_EAGER_FUSION=0``. Either way the numbers are the same up to float32 rounding:
    both compute the same ops, and the dither is the same hash.
    """

    def __init__(self, fn, flat: bool, shaped_args: int = 0):
        self.fn = fn
        self.flat = flat
        self.shaped_args = shaped_args  # leading arguments after x of x's shape, viewed as x is
        self.compiled = None
        self.failed = False

    def active(self, x: Tensor) -> bool:
        if self.failed or os.environ.get("OPTOPASS_EAGER_FUSION", "1") == "0":
            return False
        if torch.compiler.is_compiling() or torch.compiler.is_exporting() or x.device.type == "meta":
            return False
        return not isinstance(x, torch._subclasses.FakeTensor) and x.dim() >= 1 and x.numel() > 0

    def __call__(self, x: Tensor, *args) -> Tensor:
        if not self.active(x):
            if torch.compiler.is_compiling() or torch.compiler.is_exporting():
                return self.fn(x, *args)  # traced: the graph around decides what is kept
            with torch.no_grad():  # eager: the result feeds ste, so no graph (and nothing saved) for it
                return self.fn(x, *args)
        # detached, and not a view: no recompiles for requires_grad or for the base's layout
        view = (x.reshape(-1) if self.flat else x.reshape(-1, x.shape[-1])).detach()
        n = self.shaped_args
        shaped = tuple(a.reshape(view.shape).detach() for a in args[:n])
        if self.compiled is None:
            register_inductor_lowering()
            self.compiled = torch.compile(self.fn, dynamic=True)
        try:
            with torch.no_grad():
                return self.compiled(view, *shaped, *args[n:]).view(x.shape)
        except Exception as err:
            with torch.no_grad():
                out = self.fn(x, *args)  # raises where the inputs are at fault: fusion stays on then
            self.failed = True  # the plain ops run, so the compiler cannot run here
            warnings.warn(f"optopass: eager elementwise fusion disabled ({type(err).__name__}: "
                          f"{str(err).splitlines()[0][:200] if str(err) else ''}); running the plain ops", stacklevel=2)
            return out


quantize_fused = EagerFused(quantize, flat=True)
"""``quantize(x, rng, levels, lut_min)`` (tensor-wise range) as one kernel in eager code."""

site_dither_quantize = EagerFused(_site_dither_quantize, flat=False)
"""``site_dither_quantize(y, rng, levels, base, counter)``: `y`'s output quantization with the
dither of key ``key_at(base, counter)`` (rounding when `counter` is None), per element with flat
index over `y`, as one kernel in eager code; float32. `rng` is (2,) or (2, y.shape[-1]). The
caller counts the call (``SiteBase.counted``)."""

shot_noise_fused = EagerFused(shot_noise, flat=True, shaped_args=1)
"""``shot_noise(y, magnitude, photons_per_unit, detector_noise, base, counter)`` as one kernel
in eager code; float32, element i's draws keyed by its flat index in `y`."""
