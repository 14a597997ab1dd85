"""Linear layers (``fc``)."""

from __future__ import annotations

import torch

from .base import Match, Rule, origin_of

aten = torch.ops.aten


def _linear(node) -> Match | None:
    x, weight, *rest = node.args
    bias = rest[0] if rest else node.kwargs.get("bias")
    return Match("linear", node, "fc", "linear", origin_of(node), args=(x, weight, bias))


RULES = [
    # aten.linear(x, W, b) -> optical linear site(x, W, b)
    Rule("linear", "fc", (aten.linear.default,), _linear),
]
