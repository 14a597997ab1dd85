"""The fused kernels as torch operators: opaque to torch.compile and torch.export, with fake
(meta) implementations for any batch shape, and CUDA-graph safe (no host synchronisation)."""

from __future__ import annotations

import torch
from torch import Tensor

from .attention import ot_attention_fwd


@torch.library.custom_op("optopass::ot_attention", mutates_args=())
def ot_attention(qq: Tensor, kq: Tensor, vq: Tensor, mask: Tensor | None, scale: float, ranges: Tensor,
                 keys: Tensor, levels: int, dither: bool) -> Tensor:
    """Optical attention forward (eval) on quantized operands: see kernels/attention.py."""
    return ot_attention_fwd(qq, kq, vq, mask, scale, ranges, keys, levels, dither)


@ot_attention.register_fake
def _(qq, kq, vq, mask, scale, ranges, keys, levels, dither):
    return qq.new_empty((*qq.shape[:-1], vq.shape[-1]))
