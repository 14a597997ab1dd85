"""Pass infrastructure: a pass is ``GraphModule -> PassResult(graph_module, modified)``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch.fx

from ..tools.errors import OptopassError


@dataclass
class PassResult:
    """What a pass returns: the module, whether it changed, and its record of what it did."""

    graph_module: torch.fx.GraphModule
    modified: bool
    record: Any = field(default=None)


class PassError(RuntimeError):
    """A pass failed on a bug (not a user error); the message names the pass."""


def run_passes(gm: torch.fx.GraphModule, passes: Sequence[tuple[str, Callable]]) -> tuple[torch.fx.GraphModule, dict[str, PassResult]]:
    """Run named passes in order, linting the graph after each.

    User errors (``OptopassError``) pass through unchanged; any other failure is re-raised
    as ``PassError`` naming the pass that failed.

    Returns:
        The final graph module and each pass's result by name.
    """
    results: dict[str, PassResult] = {}
    for name, fn in passes:
        try:
            result = fn(gm)
            result.graph_module.graph.lint()
        except OptopassError:
            raise
        except Exception as err:
            raise PassError(f"pass {name!r} failed: {type(err).__name__}: {err}") from err
        gm = result.graph_module
        results[name] = result
    return gm, results
