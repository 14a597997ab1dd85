"""The output-quantization fold: an optical attention whose output reaches an optical linear
through layout ops only (HF's transpose, contiguous and reshape) quantizes that output to the
linear's input range itself, and the linear takes it as it is.

The quantization is elementwise, so it commutes with the layout ops: the numbers are those of
the linear quantizing its input. In the fused attention kernel it is the epilogue, where it
costs a few operations per output element instead of a pass over memory (a kernel of its own
per layer once compiled). While the linear observes its input range (calibration, training in
``auto`` mode), neither folds: the linear then sees, and quantizes, the raw output.
"""

from __future__ import annotations

import torch
import torch.fx

from ..base import PassResult
from .optical_transformer import OTAttention, OTLinear

aten = torch.ops.aten
_LAYOUT_OPS = {aten.reshape.default, aten.view.default, aten._unsafe_view.default, aten.transpose.int,
               aten.permute.default, aten.contiguous.default, aten.clone.default, aten.flatten.using_ints}


def _consumer_linear(gm: torch.fx.GraphModule, node: torch.fx.Node) -> OTLinear | None:
    """The optical linear that takes `node`'s value as its input `x` through a chain of layout
    ops, each the only user of the one before, or None."""
    while len(node.users) == 1:
        user = next(iter(node.users))
        if user.op == "call_function" and user.target in _LAYOUT_OPS and user.args[0] is node:
            node = user
            continue
        if user.op == "call_module" and user.args and user.args[0] is node:
            module = gm.get_submodule(user.target)
            if isinstance(module, OTLinear) and node not in user.args[1:] and node not in user.kwargs.values():
                return module
        return None
    return None


def fold_attention_output_quant(gm: torch.fx.GraphModule) -> PassResult:
    """Link each optical attention of `gm` to the optical linear that takes its output (see the
    module docstring). The graph itself is unchanged."""
    changed = False
    for node in gm.graph.nodes:
        if node.op != "call_module":
            continue
        attn = gm.get_submodule(node.target)
        if not isinstance(attn, OTAttention):
            continue
        linear = _consumer_linear(gm, node)
        if linear is None or linear.input_quantized:
            continue
        object.__setattr__(attn, "_out_site", linear)
        linear.input_quantized = True
        changed = True
    return PassResult(gm, changed)
