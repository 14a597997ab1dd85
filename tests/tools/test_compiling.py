"""optopass's compiles (tools/compiling.py): the generated code drops the per-call size asserts,
forward and the lazily compiled backward, and computes what the uncompiled module computes; the
modes' own Inductor options are kept."""

import pytest
import torch
from torch._inductor.utils import run_and_get_code

from optopass.tools import compiling

CHECK = "assert_size_stride("  # a call of the check (the generated module always imports the name)


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 4))


def _code(fn, *args) -> str:
    torch._dynamo.reset()
    try:
        _, sources = run_and_get_code(fn, *args)
    finally:
        torch._dynamo.reset()
    return "\n".join(sources)


def test_plain_torch_compile_asserts_sizes_and_compile_model_does_not():
    model, x = _model(), torch.randn(3, 8)
    # the premise: Inductor's default code checks every input's size and stride on every call
    assert CHECK in _code(torch.compile(model), x)
    compiled = compiling.compile_model(model)
    code = _code(compiled, x)
    assert code and CHECK not in code
    torch._dynamo.reset()
    torch.testing.assert_close(compiled(x), model(x))


def test_the_patches_reach_the_backward_compiled_at_its_first_call():
    model, x = _model(), torch.randn(3, 8)

    def step(x):
        model.zero_grad()
        out = compiled(x)
        out.square().sum().backward()
        return out

    compiled = torch.compile(model)
    assert CHECK in _code(step, x)
    compiled = torch.compile(model)
    with compiling.inductor_patches():
        code = _code(step, x)
    assert code.count("def call(") >= 2 and CHECK not in code  # forward and backward
    assert torch._inductor.config.size_asserts  # restored outside


@pytest.mark.parametrize("mode,expected", [(None, {}), ("default", {}),
                                           ("reduce-overhead", {"triton.cudagraphs": True}),
                                           ("max-autotune", {"max_autotune": True, "triton.cudagraphs": True})])
def test_inductor_options_keep_the_mode_and_add_the_patches(mode, expected):
    options = compiling.inductor_options(mode)
    assert expected.items() <= options.items()
    assert options["size_asserts"] is False
    assert "triton.cudagraphs" not in options or mode in ("reduce-overhead", "max-autotune")
