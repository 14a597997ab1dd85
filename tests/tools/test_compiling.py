"""optopass's compiles (tools/compiling.py): the generated code drops the per-call size asserts,
forward and the lazily compiled backward, and computes what the uncompiled module computes; the
modes' own Inductor options are kept; the Triton compile log names and times each compile."""

import os
import subprocess
import sys

import pytest
import torch
from torch._inductor.utils import run_and_get_code

from optopass.tools import compiling
from tests.conftest import nvidia_backend

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


LOG_SCRIPT = r'''
import sys
import torch._inductor.config as inductor_config
import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from optopass.tools.compiling import triton_compile_log


@triton.jit
def double(x, n, BLOCK: tl.constexpr):
    i = tl.arange(0, BLOCK)
    tl.store(x + i, tl.load(x + i, mask=i < n) * 2, mask=i < n)


original, threads = triton.compile, inductor_config.compile_threads
with triton_compile_log(sys.argv[1]):
    assert inductor_config.compile_threads == 1 and triton.compile is not original
    src = ASTSource(fn=double, signature={"x": "*fp32", "n": "i32", "BLOCK": "constexpr"}, constexprs={"BLOCK": 64})
    assert triton.compile(src, target=GPUTarget("cuda", 90, 32)).asm.get("cubin")
assert triton.compile is original and inductor_config.compile_threads == threads
print("done")
'''


@pytest.mark.skipif(not nvidia_backend(), reason="this Triton has no NVIDIA backend")
def test_triton_compile_log_times_each_compile_by_name_and_constants(tmp_path):
    """A kernel compiled for sm_90 (no GPU needed) inside the log: one line with its seconds, name
    and block size; triton.compile and Inductor's compile threads restored after."""
    log = tmp_path / "logs" / "compiles.tsv"
    log.parent.mkdir()
    log.write_text("an earlier run\n")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # conftest's interpreter: no compiles
    script = tmp_path / "compile_one.py"  # a file: @triton.jit reads the kernel's source
    script.write_text(LOG_SCRIPT)
    done = subprocess.run([sys.executable, str(script), str(log)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and "done" in done.stdout, done.stderr[-3000:]
    header, *lines = log.read_text().splitlines()
    assert header == compiling.TRITON_COMPILE_LOG_HEADER.strip() and len(lines) == 1
    seconds, name, constants, source = lines[0].split("\t")
    assert float(seconds) > 0 and name == "double" and constants == "{'BLOCK': 64}" and source == str(script)
