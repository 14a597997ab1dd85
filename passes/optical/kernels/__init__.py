"""Triton kernels of the optical ops (importing this package does not import Triton)."""

import torch

MAX_LEVELS = 1 << 22  # the kernels round by adding 1.5 * 2**23: exact for grid values below 2**22

KERNELS = ("auto", "fused", "unfused")
"""A site's choice of its Triton kernel: ``auto`` on a GPU, ``fused`` wherever it runs (on a CPU
in Triton's interpreter), ``unfused`` never (the torch ops)."""


def exporting() -> bool:
    """Whether torch.export is tracing, under torch.compile too: torch.compile before torch 2.14
    traces ``torch.compiler.is_exporting()`` as the constant True (pytorch/pytorch#176347), which
    sent every compiled site to its torch ops; the flag behind it is read as it stands."""
    flag = getattr(torch.compiler, "_is_exporting_flag", None)
    return torch.compiler.is_exporting() if flag is None else bool(flag)


def runs_kernel(choice: str, setting: str, x: torch.Tensor) -> bool:
    """Whether a site set to `choice` (its attribute `setting`, named in the error) runs its
    Triton kernel for the input `x`; never under torch.export, whose graph holds torch ops only."""
    if choice not in KERNELS:
        raise ValueError(f"{setting}: must be 'auto', 'fused' or 'unfused', got {choice!r}")
    if choice == "unfused" or exporting():
        return False
    return choice == "fused" or x.is_cuda
