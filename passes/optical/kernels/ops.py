"""The fused kernels as torch operators: opaque to torch.compile and torch.export, with fake
(meta) implementations for any batch shape, and CUDA-graph safe (no host synchronisation)."""

from __future__ import annotations

import torch
from torch import Tensor

from .attention import ot_attention_fwd


@torch.library.custom_op("optopass::ot_attention", mutates_args=())
def ot_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, scale: float, ranges: Tensor, keys: Tensor,
                 levels: int, lut_min: float | None, dither: bool) -> Tensor:
    """Optical attention forward (eval): see kernels/attention.py for the math."""
    return ot_attention_fwd(q, k, v, mask, scale, ranges, keys, levels, lut_min, dither)


@ot_attention.register_fake
def _(q, k, v, mask, scale, ranges, keys, levels, lut_min, dither):
    return q.new_empty((*q.shape[:-1], v.shape[-1]))
