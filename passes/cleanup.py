"""Drop export's capture-time assertions (``aten._assert_tensor_metadata`` and friends).

They pin the dtype and device seen at capture, which would stop a captured model from moving
to another device or dtype; they compute nothing.
"""

from __future__ import annotations

import torch
import torch.fx

from .base import PassResult

aten = torch.ops.aten
_ASSERTS = {aten._assert_tensor_metadata.default, aten._assert_scalar.default, aten.sym_constrain_range_for_size.default}


def drop_capture_asserts(gm: torch.fx.GraphModule) -> PassResult:
    """Erase assertion nodes that have no users."""
    removed = 0
    for node in list(gm.graph.nodes):
        if node.op == "call_function" and node.target in _ASSERTS and not node.users:
            gm.graph.erase_node(node)
            removed += 1
    gm.recompile()
    return PassResult(gm, removed > 0, record={"removed": removed})
