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
import os
from collections.abc import Callable, Iterator
from pathlib import Path
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
# no such tile. Inductor's fix, budgeting the candidates against the emitted block, is
# pytorch/pytorch#193801 (open).
DYNAMIC_OPTICAL_PATCHES: dict[str, Any] = {"triton.persistent_reductions": False}


def inductor_patches(optical: bool = False) -> contextlib.AbstractContextManager:
    """``INDUCTOR_PATCHES`` for compiles that start inside code which calls ``torch.compile``
    itself (the HF Trainer's ``torch_compile``): Inductor reads them when it compiles, which for
    a training step's backward is at its first call. `optical`: the model has optical sites and
    its inputs' lengths are dynamic (``DYNAMIC_OPTICAL_PATCHES`` too)."""
    import torch._inductor.config as inductor_config

    return inductor_config.patch({**INDUCTOR_PATCHES, **(DYNAMIC_OPTICAL_PATCHES if optical else {})})


TRITON_COMPILE_LOG_HEADER = "# seconds\tkernel\tconstants\tsource\n"


def _index_key(key: Any, names: list[str]) -> bool:
    """Whether `key` of a Triton source's constants is an argument's position, ``(i,)``."""
    return isinstance(key, tuple) and len(key) == 1 and isinstance(key[0], int) and 0 <= key[0] < len(names)


@contextlib.contextmanager
def triton_compile_log(path: str | os.PathLike | None) -> Iterator[None]:
    """Writes a line per Triton compile of this process to `path` while open (a header line
    first, replacing what it held): the seconds it took, the kernel's name, its compile-time
    constants (Inductor's block sizes among them) and its source file, tab-separated. None:
    nothing.

    It wraps ``triton.compile``, which Inductor calls for each of its kernels' candidate
    configurations. Inductor compiles in worker processes by default; while the log is open it
    compiles in this one (``compile_threads = 1``), one kernel after another, so each compile's
    own seconds show. Kernels that Triton's JIT compiles at their first launch (optopass's own)
    are not logged."""
    if path is None:
        yield
        return
    import time

    import torch._inductor.config as inductor_config
    import triton
    import triton.compiler.compiler as triton_compiler

    original = triton_compiler.compile
    log = Path(path)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(TRITON_COMPILE_LOG_HEADER)

    def timed_compile(src, *args, **kwargs):
        started = time.perf_counter()
        try:
            return original(src, *args, **kwargs)
        finally:
            seconds = time.perf_counter() - started
            fn = getattr(getattr(src, "fn", None), "fn", None)
            source = getattr(getattr(fn, "__code__", None), "co_filename", "?")
            names = getattr(getattr(src, "fn", None), "arg_names", None) or []
            constants = {(names[key[0]] if _index_key(key, names) else key): value
                         for key, value in (getattr(src, "constants", None) or {}).items()}
            line = f"{seconds:.3f}\t{getattr(src, 'name', '?')}\t{constants}\t{source}\n"
            with log.open("a") as out:
                out.write(line)

    triton_compiler.compile = triton.compile = timed_compile
    try:
        with inductor_config.patch(compile_threads=1):
            yield
    finally:
        triton_compiler.compile = triton.compile = original
