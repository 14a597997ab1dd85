"""Triton kernels of the optical ops (importing this package does not import Triton)."""

MAX_LEVELS = 1 << 22  # the kernels round by adding 1.5 * 2**23: exact for grid values below 2**22
