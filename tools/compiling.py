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


# Inductor settings added for an optical model compiled with dynamic sequence lengths (the
# Trainer's training and evaluation steps): no persistent reductions. With the length dynamic,
# Inductor (torch 2.11) sizes a persistent reduction's block along the row from the length's upper
# bound (512, from the position table) but chooses how many rows a program takes from the first
# batch's length (32 rows of 128 allowed for a 32-token hint), so the optical attention's softmax,
# fused with the score quantization, the dither hash and the dropout, became tiles of 128 x 512
# for 64 threads. On one H200 ptxas took 412 s for one such kernel and the Trainer's compile ran
# past 22 minutes (results/speed_h200/optical_trainer_triton_compiles.log). A looped reduction has
# no such tile.
DYNAMIC_OPTICAL_PATCHES: dict[str, Any] = {"triton.persistent_reductions": False}


def inductor_patches(optical: bool = False) -> contextlib.AbstractContextManager:
    """``INDUCTOR_PATCHES`` for compiles that start inside code which calls ``torch.compile``
    itself (the HF Trainer's ``torch_compile``): Inductor reads them when it compiles, which for
    a training step's backward is at its first call. `optical`: the model has optical sites and
    its inputs' lengths are dynamic (``DYNAMIC_OPTICAL_PATCHES`` too)."""
    import torch._inductor.config as inductor_config

    return inductor_config.patch({**INDUCTOR_PATCHES, **(DYNAMIC_OPTICAL_PATCHES if optical else {})})
