"""SqueezeLight's ring array (passes/optical/squeezelight.py), forward and backward, in Triton
kernels that never write the rings' phases to memory.

With ``u`` (Q, n, k) the quantized input operands of each column block q, ``rails`` (Q, k, 2W)
the programmed weight rails (the first W columns the positive rail, the last W the negative one),
``phi = phi0 + gamma * (u[q] @ rails[q])`` and ``T(phi) = 1 - K / (A - B cos phi)``::

    out[n, o] = sum_q T(phi_pos[q, n, o]) - T(phi_neg[q, n, o])
              = K * sum_q 1 / (A - B cos phi_neg[q, n, o]) - 1 / (A - B cos phi_pos[q, n, o])

The torch path (squeezelight._DifferentialRings) materialises the phases of a chunk of tokens,
(Q, chunk, 2W) floats, and passes over them several times: memory traffic of about 40 bytes per
ring and token, and several kernel launches per chunk. Here one program owns a (tokens x
outputs) tile and loops over q, with the k-term operand sums, the cosines and the reciprocals in
registers. The backward recomputes the phases in the same way (they are never stored, in the
forward or for the backward) for the two gradients::

    slope[q, n, o]    = dOut/dphi * gamma = +-K B gamma sin(phi) / (A - B cos phi)^2 * grad[n, o]
    grad_u[q, n, j]   = sum_o slope_pos rails_pos[q, j, o] + slope_neg rails_neg[q, j, o]
    grad_rails[q, j, o] = sum_n u[q, n, j] slope[q, n, o]          (each rail's half)

float32 throughout; the operand sums add the k products in order j = 0..k-1 (the torch path's
bmm may order or fuse them differently: results agree to float32 rounding).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor


@triton.jit
def _phases(u_ptr, r_ptr, q, offs_n, offs_o, mask_n, mask_o, s_uq, s_uj, s_rq, s_rj, W, phi0, gamma,
            K: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_O: tl.constexpr):
    """phi_pos, phi_neg of the (BLOCK_N x BLOCK_O) tile for column block q."""
    sum_pos = tl.zeros((BLOCK_N, BLOCK_O), dtype=tl.float32)
    sum_neg = tl.zeros((BLOCK_N, BLOCK_O), dtype=tl.float32)
    for j in tl.static_range(K):
        u_j = tl.load(u_ptr + q * s_uq + j * s_uj + offs_n, mask=mask_n, other=0.0)
        r_pos = tl.load(r_ptr + q * s_rq + j * s_rj + offs_o, mask=mask_o, other=0.0)
        r_neg = tl.load(r_ptr + q * s_rq + j * s_rj + W + offs_o, mask=mask_o, other=0.0)
        sum_pos += u_j[:, None] * r_pos[None, :]
        sum_neg += u_j[:, None] * r_neg[None, :]
    return phi0 + gamma * sum_pos, phi0 + gamma * sum_neg


@triton.jit
def _rings_fwd(u_ptr, r_ptr, out_ptr, Q, N, W, s_uq, s_uj, s_rq, s_rj, phi0, gamma, A, B, KK,
               K: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_O: tl.constexpr):
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_o = tl.program_id(1) * BLOCK_O + tl.arange(0, BLOCK_O)
    mask_n, mask_o = offs_n < N, offs_o < W
    acc = tl.zeros((BLOCK_N, BLOCK_O), dtype=tl.float32)
    for q in range(Q):
        phi_pos, phi_neg = _phases(u_ptr, r_ptr, q, offs_n, offs_o, mask_n, mask_o, s_uq, s_uj, s_rq, s_rj, W,
                                   phi0, gamma, K, BLOCK_N, BLOCK_O)
        acc += 1.0 / (A - B * tl.cos(phi_neg)) - 1.0 / (A - B * tl.cos(phi_pos))
    tl.store(out_ptr + offs_n[:, None] * W + offs_o[None, :], KK * acc, mask=mask_n[:, None] & mask_o[None, :])


@triton.jit
def _slopes(u_ptr, r_ptr, g_ptr, q, offs_n, offs_o, mask_n, mask_o, s_uq, s_uj, s_rq, s_rj, W, phi0, gamma, A, B,
            KBG, K: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_O: tl.constexpr):
    """slope_pos, slope_neg (the phases' gradients times gamma) of the tile for column block q."""
    phi_pos, phi_neg = _phases(u_ptr, r_ptr, q, offs_n, offs_o, mask_n, mask_o, s_uq, s_uj, s_rq, s_rj, W,
                               phi0, gamma, K, BLOCK_N, BLOCK_O)
    grad = tl.load(g_ptr + offs_n[:, None] * W + offs_o[None, :], mask=mask_n[:, None] & mask_o[None, :], other=0.0)
    den_pos = A - B * tl.cos(phi_pos)
    den_neg = A - B * tl.cos(phi_neg)
    slope_pos = KBG * tl.sin(phi_pos) / (den_pos * den_pos) * grad
    slope_neg = -KBG * tl.sin(phi_neg) / (den_neg * den_neg) * grad
    return slope_pos, slope_neg


@triton.jit
def _rings_grad_u(u_ptr, r_ptr, g_ptr, gu_ptr, N, W, s_uq, s_uj, s_rq, s_rj, phi0, gamma, A, B, KBG,
                  K: tl.constexpr, K_POW2: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_O: tl.constexpr):
    q = tl.program_id(0)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < N
    cols = tl.arange(0, K_POW2)
    acc = tl.zeros((BLOCK_N, K_POW2), dtype=tl.float32)
    for o0 in range(0, W, BLOCK_O):
        offs_o = o0 + tl.arange(0, BLOCK_O)
        mask_o = offs_o < W
        slope_pos, slope_neg = _slopes(u_ptr, r_ptr, g_ptr, q, offs_n, offs_o, mask_n, mask_o, s_uq, s_uj, s_rq,
                                       s_rj, W, phi0, gamma, A, B, KBG, K, BLOCK_N, BLOCK_O)
        for j in tl.static_range(K):
            r_pos = tl.load(r_ptr + q * s_rq + j * s_rj + offs_o, mask=mask_o, other=0.0)
            r_neg = tl.load(r_ptr + q * s_rq + j * s_rj + W + offs_o, mask=mask_o, other=0.0)
            part = tl.sum(slope_pos * r_pos[None, :] + slope_neg * r_neg[None, :], axis=1)
            acc += tl.where(cols[None, :] == j, part[:, None], 0.0)
    tl.store(gu_ptr + q * s_uq + cols[None, :] * s_uj + offs_n[:, None], acc,
             mask=mask_n[:, None] & (cols[None, :] < K))


@triton.jit
def _rings_grad_rails(u_ptr, r_ptr, g_ptr, gr_ptr, N, W, s_uq, s_uj, s_rq, s_rj, phi0, gamma, A, B, KBG,
                      K: tl.constexpr, K_POW2: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_O: tl.constexpr):
    q = tl.program_id(0)
    offs_o = tl.program_id(1) * BLOCK_O + tl.arange(0, BLOCK_O)
    mask_o = offs_o < W
    rows = tl.arange(0, K_POW2)
    acc_pos = tl.zeros((K_POW2, BLOCK_O), dtype=tl.float32)
    acc_neg = tl.zeros((K_POW2, BLOCK_O), dtype=tl.float32)
    for n0 in range(0, N, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        mask_n = offs_n < N
        slope_pos, slope_neg = _slopes(u_ptr, r_ptr, g_ptr, q, offs_n, offs_o, mask_n, mask_o, s_uq, s_uj, s_rq,
                                       s_rj, W, phi0, gamma, A, B, KBG, K, BLOCK_N, BLOCK_O)
        for j in tl.static_range(K):
            u_j = tl.load(u_ptr + q * s_uq + j * s_uj + offs_n, mask=mask_n, other=0.0)
            part_pos = tl.sum(u_j[:, None] * slope_pos, axis=0)
            part_neg = tl.sum(u_j[:, None] * slope_neg, axis=0)
            acc_pos += tl.where(rows[:, None] == j, part_pos[None, :], 0.0)
            acc_neg += tl.where(rows[:, None] == j, part_neg[None, :], 0.0)
    where = gr_ptr + q * s_rq + rows[:, None] * s_rj + offs_o[None, :]
    mask = (rows[:, None] < K) & mask_o[None, :]
    tl.store(where, acc_pos, mask=mask)
    tl.store(where + W, acc_neg, mask=mask)


BLOCK_N, BLOCK_O = 64, 64


def _prepare(u: Tensor, rails: Tensor) -> tuple[Tensor, Tensor, int, int, int, int]:
    """u as (Q, k, n) contiguous (loads along tokens coalesce), rails contiguous; (Q, n, k, W)."""
    if u.dtype != torch.float32 or rails.dtype != torch.float32:
        raise TypeError(f"ring kernels take float32 operands, got {u.dtype} and {rails.dtype}")
    cols, n, k = u.shape
    if rails.shape[0] != cols or rails.shape[1] != k or rails.shape[2] % 2:
        raise ValueError(f"rails {tuple(rails.shape)} do not match operands {tuple(u.shape)}")
    return u.transpose(1, 2).contiguous(), rails.contiguous(), cols, n, k, rails.shape[2] // 2


def rings_forward(u: Tensor, rails: Tensor, phi0: float, gamma: float, abk: tuple[float, float, float]) -> Tensor:
    """(Q, n, k) operands, (Q, k, 2W) rails -> (n, W) float32 (the module docstring's ``out``)."""
    ut, rails, cols, n, k, width = _prepare(u, rails)
    big_a, big_b, kk = abk
    out = torch.empty((n, width), device=u.device, dtype=torch.float32)
    grid = (triton.cdiv(n, BLOCK_N), triton.cdiv(width, BLOCK_O))
    _rings_fwd[grid](ut, rails, out, cols, n, width, ut.stride(0), ut.stride(1), rails.stride(0), rails.stride(1),
                     phi0, gamma, big_a, big_b, kk, K=k, BLOCK_N=BLOCK_N, BLOCK_O=BLOCK_O)
    return out


def rings_backward(u: Tensor, rails: Tensor, grad: Tensor, phi0: float, gamma: float,
                   abk: tuple[float, float, float]) -> tuple[Tensor, Tensor]:
    """Gradients of ``rings_forward`` with respect to `u` (Q, n, k) and `rails` (Q, k, 2W), given
    `grad` (n, W) of its output."""
    ut, rails, cols, n, k, width = _prepare(u, rails)
    grad = grad.to(torch.float32).contiguous()
    big_a, big_b, kk = abk
    kbg = kk * big_b * gamma
    k_pow2 = triton.next_power_of_2(k)
    common = (n, width, ut.stride(0), ut.stride(1), rails.stride(0), rails.stride(1), phi0, gamma, big_a, big_b, kbg)
    grad_ut = torch.empty_like(ut)
    _rings_grad_u[(cols, triton.cdiv(n, BLOCK_N))](ut, rails, grad, grad_ut, *common, K=k, K_POW2=k_pow2,
                                                   BLOCK_N=BLOCK_N, BLOCK_O=BLOCK_O)
    grad_rails = torch.empty_like(rails)
    _rings_grad_rails[(cols, triton.cdiv(width, BLOCK_O))](ut, rails, grad, grad_rails, *common, K=k,
                                                           K_POW2=k_pow2, BLOCK_N=BLOCK_N, BLOCK_O=BLOCK_O)
    return grad_ut.transpose(1, 2), grad_rails
