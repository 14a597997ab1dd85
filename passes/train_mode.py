"""Make the captured graph follow ``.train()`` / ``.eval()``.

Export records dropout with its training flag frozen (``aten.dropout(x, p, True)``) and SDPA
with a fixed ``dropout_p``. This pass replaces each with a small module that reads
``self.training`` at call time.
"""

from __future__ import annotations

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from .base import PassResult

aten = torch.ops.aten


class ModeAwareSDPA(nn.Module):
    """``F.scaled_dot_product_attention`` with its dropout only in training mode."""

    def __init__(self, dropout_p: float):
        super().__init__()
        self.dropout_p = dropout_p

    def forward(self, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
        p = self.dropout_p if self.training else 0.0
        return F.scaled_dot_product_attention(
            query, key, value, attn_mask=attn_mask, dropout_p=p, is_causal=is_causal, scale=scale, enable_gqa=enable_gqa
        )


def _dropout_args(node: torch.fx.Node):
    names = ("input", "p", "train")
    values = dict(zip(names, node.args))
    values.update(node.kwargs)
    return values["input"], float(values.get("p", 0.5)), bool(values.get("train", True))


def _sdpa_args(node: torch.fx.Node) -> tuple[tuple, dict]:
    names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal")
    values = dict(zip(names, node.args))
    values.update(node.kwargs)
    args = (values.pop("query"), values.pop("key"), values.pop("value"))
    return args, values


def _install(gm: torch.fx.GraphModule, node: torch.fx.Node, module: nn.Module, prefix: str, args, kwargs) -> None:
    name = f"{prefix}_{node.name}"
    gm.add_submodule(f"mode_aware.{name}", module)
    with gm.graph.inserting_before(node):
        new = gm.graph.call_module(f"mode_aware.{name}", args=args, kwargs=kwargs)
    new.meta = dict(node.meta)
    node.replace_all_uses_with(new)
    gm.graph.erase_node(node)


def make_mode_aware(gm: torch.fx.GraphModule) -> PassResult:
    """Rewrite frozen-mode dropout and SDPA-with-dropout nodes into mode-aware modules."""
    count = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_function":
            continue
        if node.target == aten.dropout.default:
            x, p, train = _dropout_args(node)
            if train and p > 0:
                _install(gm, node, nn.Dropout(p), "dropout", (x,), {})
            else:
                node.replace_all_uses_with(x)
                gm.graph.erase_node(node)
            count += 1
        elif node.target == aten.scaled_dot_product_attention.default:
            args, kwargs = _sdpa_args(node)
            p = float(kwargs.pop("dropout_p", 0.0) or 0.0)
            _install(gm, node, ModeAwareSDPA(p), "sdpa", args, kwargs)
            count += 1
    gm.recompile()
    return PassResult(gm, count > 0, record={"mode_aware_nodes": count})
