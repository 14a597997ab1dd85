"""The kernels' torch operators against PyTorch's operator checks (torch.library.opcheck): schema,
autograd registration, and fake implementations whose shapes and strides match what the kernels
return. Compiled code lays out its buffers from the fakes alone, so a fake with other strides than
the real output makes compiled code read the real output in the wrong order; the inputs here are
transposed views, the case where `empty_like` keeps the input's strides and the kernels do not."""

from __future__ import annotations

import pytest
import torch

from optopass.passes.optical.kernels import ops

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # on a CPU: Triton's interpreter


def _transposed(*shape: int) -> torch.Tensor:
    """A (..., a, b) tensor stored as (..., b, a): not contiguous."""
    return torch.randn(*shape[:-2], shape[-1], shape[-2], device=DEVICE).transpose(-1, -2)


def test_ring_operators_pass_opcheck_on_strided_inputs():
    torch.manual_seed(0)
    u, rails = _transposed(3, 10, 4), _transposed(3, 4, 8)
    assert not u.is_contiguous() and not rails.is_contiguous()
    constants = (0.1, 0.5, 2.0, 1.0, 0.3)
    torch.library.opcheck(ops.squeezelight_rings, (u.requires_grad_(), rails.requires_grad_(), *constants))
    grad = _transposed(10, 4)
    torch.library.opcheck(ops.squeezelight_rings_backward, (u.detach(), rails.detach(), grad, *constants))


@pytest.mark.parametrize("noise_floor", [None, 2.0])
def test_readout_operator_passes_opcheck_on_strided_inputs(noise_floor):
    torch.manual_seed(0)
    y = _transposed(6, 40) * 3
    magnitude = y.abs() + 1.0
    photons = torch.tensor(4.0, device=DEVICE)
    base, counter = torch.tensor(11, device=DEVICE), torch.tensor(0, device=DEVICE)  # int64
    torch.library.opcheck(ops.shot_noise_readout, (y, magnitude, photons, noise_floor, base, counter, False))


def test_attention_operator_passes_opcheck_on_strided_inputs():
    torch.manual_seed(0)
    q, k, v = _transposed(2, 3, 7, 16), _transposed(2, 3, 9, 16), _transposed(2, 3, 9, 16)
    ranges = torch.tensor([[-1.0, 1.0], [-6.0, 6.0], [0.0, 1.0]], device=DEVICE)
    keys = torch.zeros(4, dtype=torch.int64, device=DEVICE)
    torch.library.opcheck(ops.ot_attention, (q, k, v, None, 0.25, ranges, *keys, 256, True))


def test_ring_operator_alone_compiles_to_its_eager_gradients():
    """The ring operator without SqueezeLight's weight programming around it, compiled with
    Inductor against eager: forward and both gradients. (On one H200 the whole site's compiled
    weight gradients disagreed with eager while compiled sites took the torch ops,
    `test_ring_kernels_compile_as_one_operator`; this one checks the operator alone.)"""
    torch.manual_seed(0)
    constants = (0.1, 0.5, 2.0, 1.0, 0.3)
    u0, rails0 = _transposed(4, 18, 4), _transposed(4, 4, 24)

    def loss(u, rails):
        out = ops.squeezelight_rings(u, rails, *constants)
        return (out * torch.linspace(-1.0, 2.0, out.shape[-1], device=out.device)).square().sum()

    u, rails = u0.clone().requires_grad_(), rails0.clone().requires_grad_()
    eager = torch.autograd.grad(loss(u, rails), (u, rails))
    torch._dynamo.reset()
    try:
        got = torch.autograd.grad(torch.compile(loss, fullgraph=True)(u, rails), (u, rails))
    finally:
        torch._dynamo.reset()
    for name, g_got, g_eager in zip(("u", "rails"), got, eager):
        torch.testing.assert_close(g_got, g_eager, rtol=1e-4, atol=1e-4, msg=lambda m, n=name: f"grad {n}: {m}")
