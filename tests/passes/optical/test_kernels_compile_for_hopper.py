"""The Triton kernels that CPU tests run in the interpreter compile for a Hopper GPU (sm_90: the
H100/H200) too: Triton's NVIDIA backend builds PTX and a cubin without a GPU, so a kernel that
only the interpreter accepts (a type the compiler refuses, a scalar branch it cannot lower)
fails here rather than on the GPU. Run in a subprocess without TRITON_INTERPRET (conftest sets it
for the interpreter, which replaces @triton.jit functions)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import nvidia_backend

SCRIPT = r'''
import sys
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from optopass.passes.optical.kernels import readout, rings

target = GPUTarget("cuda", 90, 32)


def build(fn, types, constexprs):
    signature = {name: ("constexpr" if name in constexprs else types[name]) for name in fn.arg_names}
    compiled = triton.compile(ASTSource(fn=fn, signature=signature, constexprs=constexprs), target=target)
    assert compiled.asm.get("cubin"), fn.__name__
    print(fn.__name__, "compiled", flush=True)


f32, i32 = "fp32", "i32"
for y_type in ("*fp32", "*bf16"):
    for offset in (False, True):
        for floor in (False, True):
            types = {"Y": y_type, "M": y_type, "S": "*fp32", "Base": "*i64", "Counter": "*i64", "Out": "*fp32",
                     "Deferred": "*i32", "NDeferred": "*i32", "N": i32, "N_BUCKET": i32, "floor": f32}
            build(readout._readout_kernel, types, {"HAS_FLOOR": floor, "OFFSET": offset, "BLOCK": readout.BLOCK})
            build(readout._exact_kernel, types,
                  {"HAS_FLOOR": floor, "OFFSET": offset, "BLOCK": readout.EXACT_BLOCK})
common = {"N": i32, "W": i32, "s_uq": i32, "s_uj": i32, "s_rq": i32, "s_rj": i32, "phi0": f32, "gamma": f32,
          "A": f32, "B": f32}
blocks = {"BLOCK_N": rings.BLOCK_N, "BLOCK_O": rings.BLOCK_O}
build(rings._rings_fwd, {**common, "u_ptr": "*fp32", "r_ptr": "*fp32", "out_ptr": "*fp32", "Q": i32, "KK": f32},
      {"K": 4, **blocks})
for k in (3, 4):
    build(rings._rings_grad_u, {**common, "u_ptr": "*fp32", "r_ptr": "*fp32", "g_ptr": "*fp32", "gu_ptr": "*fp32",
                                "KBG": f32}, {"K": k, "K_POW2": triton.next_power_of_2(k), **blocks})
    build(rings._rings_grad_rails, {**common, "u_ptr": "*fp32", "r_ptr": "*fp32", "g_ptr": "*fp32", "gr_ptr": "*fp32",
                                    "KBG": f32}, {"K": k, "K_POW2": triton.next_power_of_2(k), **blocks})
'''


@pytest.mark.skipif(not nvidia_backend(), reason="this Triton has no NVIDIA backend")
def test_readout_and_ring_kernels_compile_for_sm90():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("compiled") == 2 * 8 + 1 + 2 * 2
