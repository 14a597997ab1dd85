"""Fused forward of the Optical Transformer attention (eval), in one Triton kernel.

With ``Q(x, r)`` = clamp to r = [lo, hi], scale to ``levels-1`` steps, round half to even,
rescale (quant.quantize), ``LUT`` its floor, and ``Qd(x, r, u)`` the same with the rounding
``round(grid + u - 0.5)`` (quant.dither_quantize), the optical attention is::

    s = Qd(Q(q, qa) · LUT(Q(k, qb))ᵀ, qo, u_qk) * scale + mask
    p = softmax(s)                                   (float32)
    o = Qd(Q(p, pa) · LUT(Q(v, pb)), po, u_pv)

The kernel takes the operands already quantized, ``qq = Q(q, qa)``, ``kq = LUT(Q(k, qb))``,
``vq = LUT(Q(v, pb))`` in the input dtype, and computes the rest. Quantizing them is plain
elementwise work that torch.compile fuses into the kernels producing q, k and v; done here, every
program would quantize its whole key and value blocks again (Lq / BLOCK_M times per head, twice
in two-pass mode), which cost more than the scores' own quantization.

The dither u is quant.hash_uniform's: element (b, h, i, j) of s has flat index
``((b*H + h)*Lq + i)*Lk + j`` and the Q·Kᵀ site's key; element (b, h, i, d) of o has
``((b*H + h)*Lq + i)*Dv + d`` and the P·V site's key (indices mod 2**32). A key is
quant.key_at(base, counter), computed in the kernel from the sites' buffers (no kernel of its own). Neither s nor p is
written to memory: a program owns one (b, h, block of query rows); when the keys span several
blocks, pass 1 finds each row's max and sum of exp (online rescaling) and pass 2 recomputes
the identical scores and accumulates ``Q(p)·vq``; one block of keys (up to 128 keys always, up
to 512 where the autotuner finds it faster) takes one pass.

Where the eager op (OTAttention) rounds an intermediate to the input dtype (matmul outputs,
scaled scores, probabilities), the kernel rounds it too, so bf16/fp16 results follow the
unfused op; for fp32 those roundings are no-ops. The launch turns off FMA contraction;
per-element divisions are multiplications by a reciprocal computed once per range or row
(within an ulp of torch's division: a value within an ulp of a rounding tie may land one level
away). A bool mask sets -inf where False; a fully masked row gives NaN, as in torch.

Speed: see docs/speed.md (one H200, bf16, 12 heads of 64). The elementwise
work per score (two quantizations and a 32-bit hash on CUDA cores) bounds it, not the
tensor-core products.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from . import MAX_LEVELS

EPS = tl.constexpr(1e-8)  # quant.EPS


@triton.jit
def _round_half_even(x):
    """torch.round for |x| < 2**22 (grid values are): adding and removing 1.5 * 2**23 leaves
    the nearest integer, ties to even, in IEEE float32 (two adds; libdevice.rint is not
    available in the interpreter). NaN stays NaN."""
    return (x + 12582912.0) - 12582912.0


@triton.jit
def _to_grid(x, lo, hi, steps):
    """quant.to_grid: one factor per range, rounded as torch rounds ``steps / t`` (1/t, then *)."""
    # torch.clamp keeps NaN (a fully masked row stays NaN)
    x = tl.minimum(tl.maximum(x, lo, propagate_nan=tl.PropagateNan.ALL), hi, propagate_nan=tl.PropagateNan.ALL)
    return (x - lo) * (tl.math.div_rn(1.0, hi - lo + EPS) * steps)


@triton.jit
def _from_grid(k, lo, hi, steps):
    """quant.from_grid: the step of the range computed once, then a multiply-add per element."""
    return k * ((hi - lo) / steps) + lo


@triton.jit
def _quantize(x, lo, hi, steps):
    return _from_grid(_round_half_even(_to_grid(x, lo, hi, steps)), lo, hi, steps)


@triton.jit
def _dither_quantize(x, lo, hi, steps, idx, key, DITHER: tl.constexpr):
    g = _to_grid(x, lo, hi, steps)
    if DITHER:
        g = g + (_uniform(idx, key) - 0.5)
    return _from_grid(_round_half_even(g), lo, hi, steps)


@triton.jit
def _mix32(x):
    """lowbias32 on uint32 (logical shifts, products wrap mod 2**32)."""
    x = x ^ (x >> 16)
    x = x * 0x7FEB352D
    x = x ^ (x >> 15)
    x = x * 0x846CA68B
    return x ^ (x >> 16)


@triton.jit
def _uniform(idx, key):
    """quant.hash_uniform's U[0, 1) for uint32 flat indices `idx` and uint32 `key`."""
    h = _mix32(_mix32(idx + key * 0x9E3779B9) ^ key)
    return (h >> 8).to(tl.float32) * (1.0 / 16777216.0)


@triton.jit
def _key(Base, Counter, HAS_COUNTERS: tl.constexpr):
    """quant.key_at: ``base ^ counter * 0x9E3779B9`` over uint32 (the base alone without counters)."""
    key = tl.load(Base).to(tl.uint32)
    if HAS_COUNTERS:
        key = key ^ (tl.load(Counter).to(tl.uint32) * 0x9E3779B9)
    return key


@triton.jit
def _as(x, dtype: tl.constexpr):
    """`x` rounded to `dtype`, back in float32."""
    return x.to(dtype).to(tl.float32)


@triton.jit
def _scores(
    qq, K, Mask, start_n, offs_m, rows, key_qk,
    Lq, Lk, D, stride_kn, stride_kd, stride_mm, stride_mn,
    scale, qo_lo, qo_hi, steps,
    HAS_MASK: tl.constexpr, MASK_IS_BOOL: tl.constexpr,
    ROUND_MASKED: tl.constexpr, DITHER: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, MASK_ROW: tl.constexpr, EVEN: tl.constexpr,
):
    """Final scores (dithered, scaled, masked; -inf past Lk) of one key block, float32. EVEN: the
    key blocks tile Lk exactly (no column past it)."""
    dt = qq.dtype
    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    in_k = (offs_d[:, None] < D) & (offs_n[None, :] < Lk)
    kq = tl.load(K + offs_d[:, None] * stride_kd + offs_n[None, :] * stride_kn, mask=in_k, other=0.0)
    s = _as(tl.dot(qq, kq, input_precision=PRECISION), dt)
    idx = rows[:, None] * Lk + offs_n[None, :].to(tl.uint32)
    s = _as(_dither_quantize(s, qo_lo, qo_hi, steps, idx, key_qk, DITHER), dt)
    s = _as(s * scale, dt)
    if HAS_MASK:
        if MASK_ROW:  # the same mask row for every query (HF's padding mask): one vector load
            in_s = offs_n[None, :] < Lk
            m_ptrs = Mask + offs_n[None, :] * stride_mn
        else:
            in_s = (offs_m[:, None] < Lq) & (offs_n[None, :] < Lk)
            m_ptrs = Mask + offs_m[:, None] * stride_mm + offs_n[None, :] * stride_mn
        if MASK_IS_BOOL:
            s = tl.where(tl.load(m_ptrs, mask=in_s, other=1) != 0, s, float("-inf"))
        else:
            s = s + tl.load(m_ptrs, mask=in_s, other=0.0).to(tl.float32)
            if ROUND_MASKED:
                s = _as(s, dt)
    if EVEN:
        return s
    return tl.where(offs_n[None, :] < Lk, s, float("-inf"))


@triton.jit
def _pv(
    acc, e, inv_l, V, start_n, Lk, DV, stride_vn, stride_vd,
    pa_lo, pa_hi, steps, PRECISION: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_DV: tl.constexpr, EVEN: tl.constexpr,
):
    """``acc + Q(p) · vq`` over one key block, p = e / l with ``e = exp(s - m)``."""
    dt = V.dtype.element_ty
    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_dv = tl.arange(0, BLOCK_DV)
    pq = _quantize(_as(e * inv_l[:, None], dt), pa_lo, pa_hi, steps)
    if not EVEN:
        pq = tl.where(offs_n[None, :] < Lk, pq, 0.0)
    in_v = (offs_n[:, None] < Lk) & (offs_dv[None, :] < DV)
    vq = tl.load(V + offs_n[:, None] * stride_vn + offs_dv[None, :] * stride_vd, mask=in_v, other=0.0)
    return tl.dot(pq.to(dt), vq, acc, input_precision=PRECISION)


@triton.jit
def _ot_attention_fwd_kernel(
    Q, K, V, Out, Mask, Ranges, KeyQK, KeyPV, CounterQK, CounterPV,
    stride_qb, stride_qh, stride_qm, stride_qd,
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    stride_ob, stride_oh, stride_om, stride_od,
    stride_mb, stride_mh, stride_mm, stride_mn,
    H, Lq, Lk, D, DV, scale, levels, out_levels,
    HAS_MASK: tl.constexpr, MASK_IS_BOOL: tl.constexpr,
    ROUND_MASKED: tl.constexpr, DITHER: tl.constexpr, SINGLE_PASS: tl.constexpr, MASK_ROW: tl.constexpr,
    HAS_COUNTERS: tl.constexpr, OUT_QUANT: tl.constexpr, PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr, EVEN: tl.constexpr,
):
    """One program: query rows [pid_m*BLOCK_M, +BLOCK_M) of head (b, h); Q, K, V hold the
    quantized operands; ranges are the rows of `Ranges` (3, 2) [qo, pa, po], and with OUT_QUANT a
    fourth row, the range the output is then quantized to (`out_levels` levels); the dither keys
    come from the 0-d key bases and call counters of the two sites."""
    n_m = (Lq + BLOCK_M - 1) // BLOCK_M
    pid = tl.program_id(0)
    pid_bh = pid // n_m
    pid_m = pid % n_m
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    Q += b * stride_qb + h * stride_qh
    K += b * stride_kb + h * stride_kh
    V += b * stride_vb + h * stride_vh
    Out += b * stride_ob + h * stride_oh
    if HAS_MASK:
        Mask += b * stride_mb + h * stride_mh

    qo_lo, qo_hi = tl.load(Ranges + 0), tl.load(Ranges + 1)
    pa_lo, pa_hi = tl.load(Ranges + 2), tl.load(Ranges + 3)
    po_lo, po_hi = tl.load(Ranges + 4), tl.load(Ranges + 5)
    key_qk = _key(KeyQK, CounterQK, HAS_COUNTERS)
    key_pv = _key(KeyPV, CounterPV, HAS_COUNTERS)
    steps = (levels - 1).to(tl.float32)
    dt = Q.dtype.element_ty

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    rows = pid_bh.to(tl.uint32) * Lq + offs_m.to(tl.uint32)  # flat row index (b*H + h)*Lq + i
    in_q = (offs_m[:, None] < Lq) & (offs_d[None, :] < D)
    qq = tl.load(Q + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd, mask=in_q, other=0.0)
    acc = tl.zeros([BLOCK_M, BLOCK_DV], dtype=tl.float32)

    if SINGLE_PASS:
        s = _scores(qq, K, Mask, 0, offs_m, rows, key_qk, Lq, Lk, D, stride_kn, stride_kd, stride_mm, stride_mn,
                    scale, qo_lo, qo_hi, steps, HAS_MASK, MASK_IS_BOOL, ROUND_MASKED, DITHER, PRECISION, BLOCK_N, BLOCK_D, MASK_ROW, EVEN)
        e = tl.exp(s - tl.max(s, 1)[:, None])  # once, for the sum and the probabilities
        acc = _pv(acc, e, 1.0 / tl.sum(e, 1), V, 0, Lk, DV, stride_vn, stride_vd, pa_lo, pa_hi,
                  steps, PRECISION, BLOCK_N, BLOCK_DV, EVEN)
    else:
        m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
        for start_n in range(0, Lk, BLOCK_N):
            s = _scores(qq, K, Mask, start_n, offs_m, rows, key_qk, Lq, Lk, D, stride_kn, stride_kd,
                        stride_mm, stride_mn, scale, qo_lo, qo_hi, steps, HAS_MASK, MASK_IS_BOOL, ROUND_MASKED, DITHER, PRECISION, BLOCK_N, BLOCK_D, MASK_ROW, EVEN)
            m_new = tl.maximum(m_i, tl.max(s, 1))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # rows masked so far: no inf - inf
            l_i = l_i * tl.exp(m_i - m_safe) + tl.sum(tl.exp(s - m_safe[:, None]), 1)
            m_i = m_new
        for start_n in range(0, Lk, BLOCK_N):
            s = _scores(qq, K, Mask, start_n, offs_m, rows, key_qk, Lq, Lk, D, stride_kn, stride_kd,
                        stride_mm, stride_mn, scale, qo_lo, qo_hi, steps, HAS_MASK, MASK_IS_BOOL, ROUND_MASKED, DITHER, PRECISION, BLOCK_N, BLOCK_D, MASK_ROW, EVEN)
            acc = _pv(acc, tl.exp(s - m_i[:, None]), 1.0 / l_i, V, start_n, Lk, DV, stride_vn, stride_vd, pa_lo, pa_hi,
                      steps, PRECISION, BLOCK_N, BLOCK_DV, EVEN)

    offs_dv = tl.arange(0, BLOCK_DV)
    idx = rows[:, None] * DV + offs_dv[None, :].to(tl.uint32)
    o = _dither_quantize(_as(acc, dt), po_lo, po_hi, steps, idx, key_pv, DITHER)
    if OUT_QUANT:  # the next linear's input quantization (passes/optical/fold.py), on o in the input dtype
        o = _quantize(_as(o, dt), tl.load(Ranges + 6), tl.load(Ranges + 7), (out_levels - 1).to(tl.float32))
    in_o = (offs_m[:, None] < Lq) & (offs_dv[None, :] < DV)
    tl.store(Out + offs_m[:, None] * stride_om + offs_dv[None, :] * stride_od, o.to(dt), mask=in_o)


def _pow2(n: int) -> int:
    return max(16, triton.next_power_of_2(n))


def _config(Lq: int, Lk: int, d: int, fp32: bool) -> tuple[int, int, int, int]:
    """(BLOCK_M, BLOCK_N, num_warps, num_stages) without timing (CPU, tests): up to 128 keys
    take one pass. From sm_90 builds of the bf16 kernel (d = 64), no register spills: 32x128
    tiles on 4 warps use 242 registers (two programs per multiprocessor), 64x32 ones 232."""
    if Lk <= 128:
        block_m, block_n, num_warps = 32, _pow2(Lk), 4
    else:
        block_m, block_n, num_warps = 64, 32, 4
    if d > 64 or fp32:
        block_m, num_warps = min(block_m, 32), 8
    return min(block_m, _pow2(Lq)), block_n, num_warps, 2


# On a GPU the launcher times these once per (Lq, Lk, D, Dv) and keeps the fastest (Triton's
# autotuner, run on the first call: before any CUDA-graph capture, in torch.compile's warm-up).
# One pass over up to 512 keys (a row's scores held whole: 16 x 512 on 8 warps was the fastest
# at 8 x 512 on an H200, 8% under two passes), two passes over blocks of 32-64 keys beyond 128.
_TUNING = [triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=st)
           for m, n, w, st in ((16, 128, 4, 2), (32, 128, 4, 2), (64, 128, 4, 2), (32, 128, 8, 2), (64, 128, 8, 2),
                               (128, 128, 8, 2), (16, 256, 4, 1), (32, 256, 8, 1), (16, 512, 8, 1), (32, 512, 8, 1),
                               (32, 32, 4, 2), (64, 32, 4, 2), (32, 64, 4, 2), (64, 64, 8, 2), (128, 32, 8, 2))]
MAX_SINGLE_PASS = 512


def _prune(configs, named_args, **kwargs):
    """Up to 128 keys: one pass. Up to 512: one pass (a block of Lk rounded up to a power of two)
    or two passes over blocks of 32-64 keys. Beyond: two passes."""
    lk = named_args["Lk"]
    widest = max(128, _pow2(lk)) if lk <= MAX_SINGLE_PASS else 0
    keep = [c for c in configs if lk <= c.kwargs["BLOCK_N"] <= widest or (lk > 128 and c.kwargs["BLOCK_N"] <= 64)]
    return keep or configs


_tuned_kernel = triton.autotune(configs=_TUNING, key=["Lq", "Lk", "D", "DV", "HAS_MASK", "DITHER"],
                                prune_configs_by={"early_config_prune": _prune})(
    triton.heuristics({"SINGLE_PASS": lambda args: args["BLOCK_N"] >= args["Lk"],
                       "EVEN": lambda args: args["Lk"] % args["BLOCK_N"] == 0})(_ot_attention_fwd_kernel))


def ot_attention_fwd(
    qq: Tensor, kq: Tensor, vq: Tensor, mask: Tensor | None, scale: float, ranges: Tensor, keys: Tensor,
    levels: int, dither: bool, *, counters: tuple[Tensor, Tensor] | None = None, out_levels: int = 0,
    block_m: int | None = None, block_n: int | None = None, num_warps: int | None = None,
    num_stages: int | None = None,
) -> Tensor:
    """Optical attention forward (eval) in one kernel; no host synchronisation.

    Args:
        qq, kq, vq: the quantized operands ``Q(q)``, ``LUT(Q(k))``, ``LUT(Q(v))``: (B, H, Lq, D),
            (B, H, Lk, D), (B, H, Lk, Dv), one dtype, any strides; D, Dv <= 256.
        mask: None, additive float or bool (False -> -inf), broadcastable to (B, H, Lq, Lk).
        scale: factor of the scores.
        ranges: (3, 2) float32 [lo, hi] of qo (Q·Kᵀ's output), pa (the probabilities) and po
            (P·V's output), on the device; (4, 2) with `out_levels`.
        keys: the dither key bases [qk, pv] (int64 in [0, 2**32), on the device): a (2,) tensor
            or two 0-d tensors.
        counters: None (the keys are used as given), or the two sites' 0-d int64 call
            counters: each key is then ``quant.key_at(base, counter)``, computed in the kernel.
        levels: quantization levels (>= 2).
        out_levels: 0, or the levels of a last quantization of the output (quant.quantize, in
            the input dtype) over ``ranges[3]``: the input quantization of the linear that takes
            the attention's output (passes/optical/fold.py).
        dither: stochastic rounding of both matmul outputs; False rounds.
        block_m, block_n, num_warps, num_stages: override the heuristic (tests).

    Returns:
        (B, H, Lq, Dv) contiguous, in q's dtype.
    """
    q, k, v = qq, kq, vq
    B, H, Lq, D = q.shape
    Lk, DV = k.shape[2], v.shape[3]
    if k.shape != (B, H, Lk, D) or v.shape != (B, H, Lk, DV):
        raise ValueError(f"q, k, v shapes do not fit: {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if not q.dtype == k.dtype == v.dtype:
        raise ValueError(f"q, k, v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if max(D, DV) > 256:
        raise ValueError(f"head dims up to 256 are supported, got {D} and {DV}")
    if ranges.shape != ((4, 2) if out_levels else (3, 2)):
        raise ValueError(f"ranges must be (3, 2) [qo, pa, po], or (4, 2) with out_levels, got {tuple(ranges.shape)}")
    for name, n in (("levels", levels), ("out_levels", out_levels or 2)):
        if not 2 <= n <= MAX_LEVELS:
            raise ValueError(f"{name} must be in [2, {MAX_LEVELS}] for the kernel's rounding, got {n}")
    fp32 = q.dtype == torch.float32
    out = torch.empty((B, H, Lq, DV), dtype=q.dtype, device=q.device)
    has_mask = mask is not None
    mask_is_bool = has_mask and mask.dtype == torch.bool
    round_masked = has_mask and not mask_is_bool and torch.promote_types(q.dtype, mask.dtype) == q.dtype
    if has_mask:
        mask = mask.expand(B, H, Lq, Lk)
    precision = "tf32" if not fp32 or torch.backends.cuda.matmul.allow_tf32 else "ieee"  # as torch.matmul
    key_qk, key_pv = keys[0], keys[1]
    counter_qk, counter_pv = counters if counters is not None else (key_qk, key_pv)  # unread then
    args = (q, k, v, out, mask if has_mask else q, ranges.float().contiguous(), key_qk, key_pv, counter_qk, counter_pv,
            *q.stride(), *k.stride(), *v.stride(), *out.stride(), *(mask.stride() if has_mask else (0, 0, 0, 0)),
            H, Lq, Lk, D, DV, float(scale), int(levels), int(out_levels))
    flags = dict(HAS_MASK=has_mask, MASK_IS_BOOL=mask_is_bool,
                 ROUND_MASKED=round_masked, DITHER=bool(dither), MASK_ROW=has_mask and mask.stride(2) == 0,
                 HAS_COUNTERS=counters is not None, OUT_QUANT=bool(out_levels),
                 PRECISION=precision, BLOCK_D=_pow2(D), BLOCK_DV=_pow2(DV), enable_fp_fusion=False)
    overridden = any(o is not None for o in (block_m, block_n, num_warps, num_stages))
    tune = q.is_cuda and not fp32 and max(D, DV) <= 64 and not overridden
    if tune:
        _tuned_kernel[lambda meta: (triton.cdiv(Lq, meta["BLOCK_M"]) * B * H,)](*args, **flags)
        return out
    bm, bn, warps, stages = _config(Lq, Lk, max(D, DV), fp32)
    bm, bn = block_m or bm, block_n or bn
    _ot_attention_fwd_kernel[(triton.cdiv(Lq, bm) * B * H,)](
        *args, **flags, SINGLE_PASS=bn >= Lk, EVEN=Lk % bn == 0, BLOCK_M=bm, BLOCK_N=bn,
        num_warps=num_warps or warps, num_stages=num_stages or stages,
    )
    return out
