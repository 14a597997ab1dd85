"""How optopass's own paths (the GLUE evaluator and trainer, ``optopass bench``) compile a model:
Inductor as ``torch.compile(mode=...)`` sets it up, without the per-call size asserts.

Inductor's generated ``call`` checks the size and stride of every graph input on every call
(``assert_size_stride``). A transformed model has several buffers per optical site (ranges,
counters, keys), so RoBERTa-base's optical graph has 683 inputs against the plain model's 204,
and those checks are host time on every call outside CUDA graphs. Dynamo's guards already check
the same inputs before the compiled code runs, so the asserts only repeat them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch

# Inductor settings of every compile that optopass starts (see the module docstring)
INDUCTOR_PATCHES: dict[str, Any] = {"size_asserts": False}


def inductor_options(mode: str | None = None, dynamic: bool | None = None) -> dict[str, Any]:
    """The Inductor options of ``torch.compile(mode=mode)``, with ``INDUCTOR_PATCHES``."""
    from torch._inductor import list_mode_options

    return {**(list_mode_options(mode, dynamic) if mode and mode != "default" else {}), **INDUCTOR_PATCHES}


def compile_model(model: Callable[..., Any], mode: str | None = None, dynamic: bool | None = None) -> Callable[..., Any]:
    """``torch.compile(model, mode=mode, dynamic=dynamic)`` with ``INDUCTOR_PATCHES``."""
    return torch.compile(model, dynamic=dynamic, options=inductor_options(mode, dynamic))


def inductor_patches() -> contextlib.AbstractContextManager:
    """``INDUCTOR_PATCHES`` for compiles that start inside code which calls ``torch.compile``
    itself (the HF Trainer's ``torch_compile``): Inductor reads them when it compiles, which for
    a training step's backward is at its first call."""
    import torch._inductor.config as inductor_config

    return inductor_config.patch(INDUCTOR_PATCHES)
