"""The balanced detector pair's read-out with shot noise (quant.shot_noise) as one Triton kernel.

It draws what quant.shot_noise draws: the same hash streams of the call's key (streams 1-2 the
Box-Muller normals, 3-4 the inversion's uniforms, 5-6 the detector floor), the same Poisson
inversion below a mean of ``quant.POISSON_EXACT_BELOW`` photons and the same Gaussian at and above
it, so counts agree with the torch ops except where float32 rounding of a transcendental
function moves a uniform across a CDF step (almost never).

What it adds is a branch per block of elements: the 40-step inversion (and the hashing of its
two uniform streams) runs only in a block that holds a mean under the threshold. Compiled from
torch ops, every element computes both the inversion and the Gaussian and keeps one of them;
at the light levels where a model keeps its accuracy almost every detector sees far more than
10 photons, so nearly every block takes the Gaussian alone.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from .. import quant
from .attention import _key, _mix32, _uniform

EXACT_BELOW = tl.constexpr(quant.POISSON_EXACT_BELOW)
TERMS = tl.constexpr(quant.POISSON_TERMS)
U_MAX = tl.constexpr(quant._INVERSION_U_MAX)
TWO_PI = tl.constexpr(2.0 * 3.141592653589793)


@triton.jit
def _stream_key(key, stream: tl.constexpr):
    """quant.stream_uniform's derived key: lowbias32(key ^ stream * 0x632BE5AB) over uint32."""
    return _mix32(key ^ ((stream * 0x632BE5AB) & 0xFFFFFFFF))


@triton.jit
def _normal_pair(idx, key, first: tl.constexpr):
    """quant.normal_pair of streams `first` and `first` + 1 (1 - u is exact for 24-bit u)."""
    u1 = _uniform(idx, _stream_key(key, first))
    u2 = _uniform(idx, _stream_key(key, first + 1))
    radius = tl.sqrt(-2.0 * tl.log(1.0 - u1))
    angle = TWO_PI * u2
    return radius * tl.cos(angle), radius * tl.sin(angle)


@triton.jit
def _inversion(lam, u):
    """quant._inversion_steps: #{k < TERMS : CDF(k) <= u}, the CDF summed term by term."""
    u = u * U_MAX
    p = tl.exp(lam * -1.0)
    cdf = p
    count = (u >= cdf).to(tl.float32)
    for i in tl.static_range(1, TERMS):
        p = p * (lam * (1.0 / i))
        cdf = cdf + p
        count = count + (u >= cdf).to(tl.float32)
    return count


@triton.jit
def _count(lam, idx, key, stream: tl.constexpr, z):
    """quant.photon_count, the inversion computed only in a block that needs it."""
    gauss = lam + tl.sqrt(lam) * z
    small = lam < EXACT_BELOW
    if tl.max(small.to(tl.int32), axis=0) > 0:
        exact = _inversion(tl.minimum(lam, EXACT_BELOW), _uniform(idx, _stream_key(key, stream)))
        gauss = tl.where(small, exact, gauss)
    return gauss


@triton.jit
def _readout_kernel(Y, M, S, Base, Counter, Out, N, N_BUCKET, floor, HAS_FLOOR: tl.constexpr,
                    OFFSET: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    key = _key(Base, Counter, True)
    idx = offs.to(tl.uint32)
    y = tl.load(Y + offs, mask=mask, other=0.0).to(tl.float32)
    m = tl.load(M + offs, mask=mask, other=0.0).to(tl.float32)
    s = tl.load(S).to(tl.float32)
    z_pos, z_neg = _normal_pair(idx, key, 1)
    if OFFSET:  # one detector of the offset-encoded light; the offset products subtracted after
        lam = tl.where(mask, tl.maximum(s * m, 0.0), EXACT_BELOW)  # lanes past the end take no branch
        count = _count(lam, idx, key, 3, z_pos)
        if HAS_FLOOR:
            d_pos, d_neg = _normal_pair(idx, key, 5)
            count = count + floor * d_pos
        out = count / s - (m - y)
    else:
        lam_pos = tl.where(mask, tl.maximum(0.5 * s * (m + y), 0.0), EXACT_BELOW)
        lam_neg = tl.where(mask, tl.maximum(0.5 * s * (m - y), 0.0), EXACT_BELOW)
        count = _count(lam_pos, idx, key, 3, z_pos) - _count(lam_neg, idx, key, 4, z_neg)
        if HAS_FLOOR:
            d_pos, d_neg = _normal_pair(idx, key, 5)
            count = count + floor * (d_pos - d_neg)
        out = count / s
    tl.store(Out + offs, out, mask=mask)


BLOCK = 1024  # outputs per program where the launch is not tuned (Triton's interpreter)

# On a GPU the launcher times these once per (power-of-two bucket of the output count, floor,
# encoding) and keeps the fastest (Triton's autotuner, on the first call: before any CUDA-graph
# capture, in torch.compile's warm-up). An offline sm_90 build of 1024 outputs on 4 warps holds
# 117 registers per thread (a quarter of a multiprocessor's warps resident); 256 on 4 warps, 48.
# Every output's draws are keyed by its flat index, and a block's branch only skips work no
# output of the block needs, so the outputs do not depend on the tiling.
_TUNING = [triton.Config({"BLOCK": b}, num_warps=w)
           for b, w in ((1024, 4), (1024, 8), (512, 4), (512, 8), (256, 4), (256, 2), (128, 4))]
_tuned_kernel = triton.autotune(configs=_TUNING, key=["N_BUCKET", "HAS_FLOOR", "OFFSET"])(_readout_kernel)


def shot_noise_readout(y: Tensor, magnitude: Tensor, photons_per_unit: Tensor, detector_noise: float | None,
                       base: Tensor, counter: Tensor, offset: bool = False, *, block: int | None = None,
                       num_warps: int | None = None) -> Tensor:
    """quant.shot_noise in one kernel: float32 of `y`'s shape, element i keyed by its flat index.
    `block`, `num_warps`: a fixed tiling instead of the tuned one (tests)."""
    if magnitude.shape != y.shape:
        raise ValueError(f"magnitude {tuple(magnitude.shape)} must have y's shape {tuple(y.shape)}")
    flat_y, flat_m = y.reshape(-1).contiguous(), magnitude.reshape(-1).contiguous()
    n = flat_y.numel()
    if n >= 1 << 32:
        raise ValueError(f"{n} elements: the hash indexes at most 2**32")
    out = torch.empty(n, device=y.device, dtype=torch.float32)
    floor = 0.0 if detector_noise is None else float(detector_noise)
    args = (flat_y, flat_m, photons_per_unit.reshape(1), base.reshape(1), counter.reshape(1), out, n,
            triton.next_power_of_2(max(n, 1)), floor)
    flags = {"HAS_FLOOR": detector_noise is not None, "OFFSET": offset}
    if y.is_cuda and block is None and num_warps is None:
        _tuned_kernel[lambda meta: (triton.cdiv(n, meta["BLOCK"]),)](*args, **flags)
    else:
        block = block or BLOCK
        _readout_kernel[(triton.cdiv(n, block),)](*args, **flags, BLOCK=block, num_warps=num_warps or 4)
    return out.view(y.shape)
