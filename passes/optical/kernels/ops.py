"""The fused kernels as torch operators: opaque to torch.compile and torch.export, with fake
(meta) implementations for any batch shape, and CUDA-graph safe (no host synchronisation)."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.library import triton_op, wrap_triton

from .attention import ot_attention_fwd
from .readout import shot_noise_readout as _shot_noise_readout
from .rings import rings_backward, rings_forward


@torch.library.custom_op("optopass::ot_attention", mutates_args=())
def ot_attention(qq: Tensor, kq: Tensor, vq: Tensor, mask: Tensor | None, scale: float, ranges: Tensor,
                 key_qk: Tensor, key_pv: Tensor, counter_qk: Tensor, counter_pv: Tensor, levels: int,
                 dither: bool, out_levels: int = 0) -> Tensor:
    """Optical attention forward (eval) on quantized operands: see kernels/attention.py. The two
    sites' key bases and call counters are passed as they are (0-d buffers): the kernel derives
    the dither keys, so no kernel is spent on them. `out_levels` (with a fourth row of `ranges`):
    the output quantized again for the linear that takes it (passes/optical/fold.py)."""
    return ot_attention_fwd(qq, kq, vq, mask, scale, ranges, (key_qk, key_pv), levels, dither,
                            counters=(counter_qk, counter_pv), out_levels=out_levels)


@ot_attention.register_fake
def _(qq, kq, vq, mask, scale, ranges, key_qk, key_pv, counter_qk, counter_pv, levels, dither, out_levels=0):
    return qq.new_empty((*qq.shape[:-1], vq.shape[-1]))


@torch.library.custom_op("optopass::squeezelight_rings", mutates_args=())
def squeezelight_rings(u: Tensor, rails: Tensor, phase_bias: float, phase_per_unit: float, big_a: float,
                       big_b: float, big_k: float) -> Tensor:
    """SqueezeLight's ring array (kernels/rings.py): (Q, n, k) operands, (Q, k, 2W) rails ->
    (n, W) float32; differentiable in both (the backward recomputes the phases)."""
    return rings_forward(u, rails, phase_bias, phase_per_unit, (big_a, big_b, big_k))


@squeezelight_rings.register_fake
def _(u, rails, phase_bias, phase_per_unit, big_a, big_b, big_k):
    return u.new_empty((u.shape[1], rails.shape[2] // 2), dtype=torch.float32)


@torch.library.custom_op("optopass::squeezelight_rings_backward", mutates_args=())
def squeezelight_rings_backward(u: Tensor, rails: Tensor, grad: Tensor, phase_bias: float, phase_per_unit: float,
                                big_a: float, big_b: float, big_k: float) -> tuple[Tensor, Tensor]:
    grad_u, grad_rails = rings_backward(u, rails, grad, phase_bias, phase_per_unit, (big_a, big_b, big_k))
    return grad_u.contiguous(), grad_rails.contiguous()


@squeezelight_rings_backward.register_fake
def _(u, rails, grad, phase_bias, phase_per_unit, big_a, big_b, big_k):
    # contiguous, as the kernels write them: a fake with the inputs' strides would make compiled
    # code read the real gradients in the wrong order
    return u.new_empty(u.shape, dtype=torch.float32), rails.new_empty(rails.shape, dtype=torch.float32)


def _rings_setup(ctx, inputs, output):
    u, rails, *constants = inputs
    ctx.save_for_backward(u, rails)
    ctx.constants = constants


def _rings_backward(ctx, grad):
    u, rails = ctx.saved_tensors
    grad_u, grad_rails = squeezelight_rings_backward(u, rails, grad, *ctx.constants)
    return grad_u, grad_rails, None, None, None, None, None


squeezelight_rings.register_autograd(_rings_backward, setup_context=_rings_setup)


@torch.library.custom_op("optopass::shot_noise_readout", mutates_args=())
def shot_noise_readout(y: Tensor, magnitude: Tensor, photons_per_unit: Tensor, detector_noise: float | None,
                       base: Tensor, counter: Tensor, offset: bool = False) -> Tensor:
    """quant.shot_noise as one kernel (kernels/readout.py); float32 of `y`'s shape."""
    return _shot_noise_readout(y, magnitude, photons_per_unit, detector_noise, base, counter, offset)


@shot_noise_readout.register_fake
def _(y, magnitude, photons_per_unit, detector_noise, base, counter, offset=False):
    return y.new_empty(y.shape, dtype=torch.float32)  # contiguous, as the kernel writes it


@triton_op("optopass::shot_noise_readout_cuda", mutates_args=())
def shot_noise_readout_cuda(y: Tensor, magnitude: Tensor, photons_per_unit: Tensor, detector_noise: float | None,
                            base: Tensor, counter: Tensor, offset: bool = False) -> Tensor:
    """The same read-out as a ``triton_op`` (CUDA tensors): torch.compile keeps its kernels in the
    graph and launches them from the compiled code. A custom operator's call goes through its
    Python: 0.17 ms a call on the H200's host under the profiler, and a RoBERTa-base forward
    reads out 96 matmuls (``results/speed_h200/shot_noise_eval_one_kernel_32x128``)."""
    return _shot_noise_readout(y, magnitude, photons_per_unit, detector_noise, base, counter, offset,
                               launch=wrap_triton)


def readout(y: Tensor, *args) -> Tensor:
    """The read-out operator for `y`'s device: the ``triton_op`` for CUDA tensors, else the custom
    operator (Triton's interpreter on a CPU, which a ``triton_op`` cannot trace)."""
    return (shot_noise_readout_cuda if y.is_cuda else shot_noise_readout)(y, *args)
