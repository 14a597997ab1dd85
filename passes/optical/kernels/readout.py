"""The balanced detector pair's read-out with shot noise (quant.shot_noise) as Triton kernels.

They draw what quant.shot_noise draws: the same hash streams of the call's key (streams 1-2 the
Box-Muller normals, 3-4 the inversion's uniforms, 5-6 the detector floor), the same Poisson
inversion below a mean of ``quant.POISSON_EXACT_BELOW`` photons and the same Gaussian at and above
it, so counts agree with the torch ops except where float32 rounding of a transcendental
function moves a uniform across a CDF step (almost never).

What they add is doing the 40-step inversion (and the hashing of its two uniform streams) only
for the outputs that need it. Compiled from torch ops, every output computes both the inversion
and the Gaussian and keeps one of them. At the light levels where a model keeps its accuracy
almost every detector sees far more than 10 photons, but not all: in the attention's P·V the
probabilities are non-negative, so a value column of one sign leaves one detector nearly dark
(77% of that read-out's blocks of 1024 outputs held such a mean, counted on the CPU over one
forward of the reference config). So the first kernel gives every output Gaussian counts and
lists the outputs with a mean under the threshold; the second draws only those again.
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
def _read(y, m, s, idx, key, floor, HAS_FLOOR: tl.constexpr, OFFSET: tl.constexpr, EXACT: tl.constexpr):
    """quant.shot_noise for one tile of outputs (float32), and which of them have a detector mean
    under ``EXACT_BELOW`` photons. ``EXACT``: those detectors counted by the Poisson inversion (the
    torch ops' counts); otherwise every detector takes the Gaussian."""
    z_pos, z_neg = _normal_pair(idx, key, 1)
    if OFFSET:  # one detector of the offset-encoded light; the offset products subtracted after
        lam = tl.maximum(s * m, 0.0)
        small = lam < EXACT_BELOW
        count = lam + tl.sqrt(lam) * z_pos
        if EXACT:
            exact = _inversion(tl.minimum(lam, EXACT_BELOW), _uniform(idx, _stream_key(key, 3)))
            count = tl.where(small, exact, count)
        if HAS_FLOOR:
            d_pos, d_neg = _normal_pair(idx, key, 5)
            count = count + floor * d_pos
        out = count / s - (m - y)
    else:
        lam_pos = tl.maximum(0.5 * s * (m + y), 0.0)
        lam_neg = tl.maximum(0.5 * s * (m - y), 0.0)
        small_pos, small_neg = lam_pos < EXACT_BELOW, lam_neg < EXACT_BELOW
        small = small_pos | small_neg
        count_pos = lam_pos + tl.sqrt(lam_pos) * z_pos
        count_neg = lam_neg + tl.sqrt(lam_neg) * z_neg
        if EXACT:
            exact_pos = _inversion(tl.minimum(lam_pos, EXACT_BELOW), _uniform(idx, _stream_key(key, 3)))
            exact_neg = _inversion(tl.minimum(lam_neg, EXACT_BELOW), _uniform(idx, _stream_key(key, 4)))
            count_pos = tl.where(small_pos, exact_pos, count_pos)
            count_neg = tl.where(small_neg, exact_neg, count_neg)
        count = count_pos - count_neg
        if HAS_FLOOR:
            d_pos, d_neg = _normal_pair(idx, key, 5)
            count = count + floor * (d_pos - d_neg)
        out = count / s
    return out, small


@triton.jit
def _readout_kernel(Y, M, S, Base, Counter, Out, Deferred, NDeferred, N, N_BUCKET, floor,
                    HAS_FLOOR: tl.constexpr, OFFSET: tl.constexpr, BLOCK: tl.constexpr):
    """Every output with Gaussian counts; the flat indices of those with a detector mean under
    ``EXACT_BELOW`` appended to `Deferred` (their number in `NDeferred`) for ``_exact_kernel``."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    key = _key(Base, Counter, True)
    y = tl.load(Y + offs, mask=mask, other=0.0).to(tl.float32)
    m = tl.load(M + offs, mask=mask, other=0.0).to(tl.float32)
    s = tl.load(S).to(tl.float32)
    out, small = _read(y, m, s, offs.to(tl.uint32), key, floor, HAS_FLOOR, OFFSET, False)
    tl.store(Out + offs, out, mask=mask)
    small = (small & mask).to(tl.int32)
    deferred = tl.sum(small, axis=0)
    if deferred > 0:
        slot = tl.atomic_add(NDeferred, deferred) + tl.cumsum(small, axis=0) - 1
        # slots past N only if a tuner replays the kernel without resetting the count: dropped
        tl.store(Deferred + slot, offs, mask=(small > 0) & (slot < N))


@triton.jit
def _exact_kernel(Y, M, S, Base, Counter, Out, Deferred, NDeferred, N, floor, HAS_FLOOR: tl.constexpr,
                  OFFSET: tl.constexpr, BLOCK: tl.constexpr):
    """The deferred outputs again, with the Poisson inversion where a mean is under the threshold:
    a fixed grid of programs strides over however many there are (read on the device)."""
    key = _key(Base, Counter, True)
    s = tl.load(S).to(tl.float32)
    total = tl.minimum(tl.load(NDeferred), N)
    for start in range(tl.program_id(0) * BLOCK, total, tl.num_programs(0) * BLOCK):
        j = start + tl.arange(0, BLOCK)
        listed = j < total
        offs = tl.load(Deferred + j, mask=listed, other=0)
        # any output drawn again gets the value it has (the inversion only where a mean is low):
        # only an index outside the outputs, which a stale count would read, is left out
        listed = listed & (offs >= 0) & (offs < N)
        y = tl.load(Y + offs, mask=listed, other=0.0).to(tl.float32)
        m = tl.load(M + offs, mask=listed, other=0.0).to(tl.float32)
        out, _ = _read(y, m, s, offs.to(tl.uint32), key, floor, HAS_FLOOR, OFFSET, True)
        tl.store(Out + offs, out, mask=listed)


BLOCK = 1024  # outputs per program where the launch is not tuned (Triton's interpreter)
EXACT_BLOCK = 256  # deferred outputs per program and step of _exact_kernel
EXACT_PROGRAMS = 4  # _exact_kernel's programs per multiprocessor (on a CPU: one)

# On a GPU the launcher times these once per (power-of-two bucket of the output count, floor,
# encoding) and keeps the fastest (Triton's autotuner, on the first call: before any CUDA-graph
# capture, in torch.compile's warm-up). Every output's draws are keyed by its flat index, and the
# deferral only moves an output's inversion to the second kernel, so the outputs do not depend
# on the tiling.
_TUNING = [triton.Config({"BLOCK": b}, num_warps=w)
           for b, w in ((1024, 4), (1024, 8), (512, 4), (512, 8), (256, 4), (256, 2), (128, 4))]
_tuned_kernel = triton.autotune(configs=_TUNING, key=["N_BUCKET", "HAS_FLOOR", "OFFSET"],
                                reset_to_zero=["NDeferred"])(_readout_kernel)


def _programs(device: torch.device) -> int:
    """_exact_kernel's grid, whatever the number of outputs (known on the device only)."""
    if device.type != "cuda":
        return 1
    return EXACT_PROGRAMS * torch.cuda.get_device_properties(device).multi_processor_count


def shot_noise_readout(y: Tensor, magnitude: Tensor, photons_per_unit: Tensor, detector_noise: float | None,
                       base: Tensor, counter: Tensor, offset: bool = False, *, block: int | None = None,
                       num_warps: int | None = None, launch=None, deferred_count: list | None = None) -> Tensor:
    """quant.shot_noise in two kernels: float32 of `y`'s shape, element i keyed by its flat index.

    The first gives every output Gaussian counts and lists the outputs with a detector mean under
    ``quant.POISSON_EXACT_BELOW`` photons; the second draws those again with the Poisson inversion.
    So the 40-step inversion runs for those outputs only, however they are spread (a branch per
    block of outputs took it for most blocks of the attention's P·V). `block`, `num_warps`: a
    fixed tiling instead of the tuned one (tests); `launch`: wraps each kernel before its launch
    (``torch.library.wrap_triton`` under a ``triton_op``); `deferred_count`: gets the number of
    listed outputs appended (tests)."""
    if magnitude.shape != y.shape:
        raise ValueError(f"magnitude {tuple(magnitude.shape)} must have y's shape {tuple(y.shape)}")
    flat_y, flat_m = y.reshape(-1).contiguous(), magnitude.reshape(-1).contiguous()
    n = flat_y.numel()
    if n >= 1 << 32:
        raise ValueError(f"{n} elements: the hash indexes at most 2**32")
    launch = launch or (lambda kernel: kernel)
    out = torch.empty(n, device=y.device, dtype=torch.float32)
    deferred = torch.empty(n + 1, device=y.device, dtype=torch.int32)
    n_deferred = torch.zeros(1, device=y.device, dtype=torch.int32)
    floor = 0.0 if detector_noise is None else float(detector_noise)
    keys = (photons_per_unit.reshape(1), base.reshape(1), counter.reshape(1))
    flags = {"HAS_FLOOR": detector_noise is not None, "OFFSET": offset}
    bucket = triton.next_power_of_2(max(n, 1)) if isinstance(n, int) else n
    args = (flat_y, flat_m, *keys, out, deferred, n_deferred, n, bucket, floor)
    if y.is_cuda and block is None and num_warps is None:
        launch(_tuned_kernel)[lambda meta: (triton.cdiv(n, meta["BLOCK"]),)](*args, **flags)
    else:
        block = block or BLOCK
        launch(_readout_kernel)[(triton.cdiv(n, block),)](*args, **flags, BLOCK=block, num_warps=num_warps or 4)
    launch(_exact_kernel)[(_programs(y.device),)](flat_y, flat_m, *keys, out, deferred, n_deferred, n, floor,
                                                     **flags, BLOCK=EXACT_BLOCK, num_warps=4)
    if deferred_count is not None:
        deferred_count.append(int(n_deferred.item()))
    return out.view(y.shape)
