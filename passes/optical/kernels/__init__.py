"""Triton kernels of the optical ops."""
