"""Attention matmuls (``attn``): eager Q·Kᵀ and probs·V, and scaled-dot-product attention."""

from __future__ import annotations

import torch
import torch.fx

from .base import Match, Rule, origin_of, tensor_rank

aten = torch.ops.aten

_SOFTMAX = {aten.softmax.int, aten._softmax.default, aten._safe_softmax.default}
# ops that carry the probabilities unchanged (in value) from softmax to the P·V matmul
_PASS_THROUGH = {
    aten.dropout.default, aten.to.dtype, aten.to.dtype_layout, aten._to_copy.default,
    aten.type_as.default, aten.clone.default, aten.contiguous.default,
    aten.view.default, aten.reshape.default, aten.expand.default,
}


def _from_softmax(arg, depth: int = 6) -> bool:
    """Whether `arg` is (a pass-through chain from) a softmax."""
    while isinstance(arg, torch.fx.Node) and depth > 0:
        if arg.op != "call_function":
            return False
        if arg.target in _SOFTMAX:
            return True
        if arg.target not in _PASS_THROUGH:
            return False
        arg, depth = arg.args[0], depth - 1
    return False


def _is_activation(arg) -> bool:
    return isinstance(arg, torch.fx.Node) and arg.op not in ("get_attr",)


def _attention_matmul(node) -> Match | None:
    a, b = node.args[:2]
    if not (_is_activation(a) and _is_activation(b)):
        return None  # a matmul with a parameter is a linear layer in disguise, not attention
    if (tensor_rank(a) or 0) < 3 or (tensor_rank(b) or 0) < 3:
        return None
    role = "pv" if _from_softmax(a) else "qk"
    return Match(f"attention_{role}", node, "attn", "matmul", origin_of(node), role=role, args=(a, b))


_SDPA_ARGS = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal")


def _sdpa(node) -> Match | None:
    kwargs = dict(zip(_SDPA_ARGS, node.args))
    kwargs.update(node.kwargs)
    args = (kwargs.pop("query"), kwargs.pop("key"), kwargs.pop("value"))
    return Match("sdpa", node, "attn", "attention", origin_of(node), args=args, kwargs=kwargs)


RULES = [
    # aten.matmul(Q, Kᵀ) / aten.matmul(P, V) (eager attention) -> optical matmul site(a, b)
    Rule("attention_matmul", "attn", (aten.matmul.default, aten.bmm.default), _attention_matmul),
    # aten.scaled_dot_product_attention(q, k, v, mask, p) -> optical attention site(q, k, v, mask, p)
    Rule("sdpa", "attn", (aten.scaled_dot_product_attention.default,), _sdpa),
]
