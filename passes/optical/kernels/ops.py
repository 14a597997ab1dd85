"""The fused kernels as torch operators: opaque to torch.compile and torch.export, with fake
(meta) implementations for any batch shape, and CUDA-graph safe (no host synchronisation)."""

from __future__ import annotations

import torch
from torch import Tensor

from .attention import ot_attention_fwd


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
