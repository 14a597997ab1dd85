"""Pattern records: what to match in an exported ATen graph and which config kind it belongs to.

A pattern file exports a list of ``Rule`` records; lists are combined by concatenation. A rule's
``extract`` returns a ``Match`` or declines with None; the first rule that matches a node wins.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch.fx


@dataclass(frozen=True)
class Match:
    """One op found in the graph.

    Attributes:
        rule: name of the rule that matched.
        node: the matched fx node.
        kind: config key it belongs to (``fc``, ``attn``).
        op: site op the rewrite builds (``linear``, ``matmul``, ``attention``).
        origin: dotted path of the module the op came from.
        role: ``qk`` / ``pv`` for attention matmuls, ``""`` otherwise.
        args: operands, in the order the site module's forward takes them.
        kwargs: keyword operands of the site module's forward.
    """

    rule: str
    node: torch.fx.Node
    kind: str
    op: str
    origin: str
    role: str = ""
    args: tuple = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def site(self) -> str:
        """The site's name: the origin path, with the attention role appended."""
        return f"{self.origin}.{self.role}" if self.role else self.origin


@dataclass(frozen=True)
class Rule:
    """Match nodes calling one of `targets`; `extract` builds the Match or returns None."""

    name: str
    kind: str
    targets: tuple
    extract: Callable[[torch.fx.Node], Match | None]


def origin_of(node: torch.fx.Node) -> str:
    """Dotted path of the innermost module the node was traced in ("" at top level)."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    path, _type = list(stack.values())[-1]
    return str(path)


def tensor_rank(arg) -> int | None:
    """Rank of an fx node's example value, if known."""
    val = arg.meta.get("val") if isinstance(arg, torch.fx.Node) else None
    return val.dim() if hasattr(val, "dim") else None


def match_node(node: torch.fx.Node, rules: Sequence[Rule]) -> Match | None:
    """The first rule's Match for `node`, or None."""
    if node.op != "call_function":
        return None
    for rule in rules:
        if node.target in rule.targets:
            found = rule.extract(node)
            if found is not None:
                return found
    return None
