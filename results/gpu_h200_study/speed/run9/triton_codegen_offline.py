"""Inductor's Triton source for a dither-quantization chain, generated on a machine without a GPU
(cpu_backend="triton", stopped before compiling): python triton_codegen_offline.py [noreg]."""
import sys, torch
import torch._inductor.config as ic
import torch.utils._triton as ut
ut.triton_hash_with_backend = lambda: "fake"
from torch._inductor.codegen import triton as tcg
srcs = []
orig = tcg.TritonKernel.codegen_kernel
def grab(self, *a, **k):
    s = orig(self, *a, **k); srcs.append(s); raise SystemExit("got source")
tcg.TritonKernel.codegen_kernel = grab
from optopass.passes.optical import quant
if "noreg" not in sys.argv:
    quant.register_inductor_lowering()
key = quant.stream_key(torch.tensor(3), 5, torch.tensor(9))
y = torch.randn(6, 33); rng = torch.tensor([-2.0, 2.0])
fn = lambda y, rng, key: quant.dither_quantize(y, rng, 256, quant.hash_uniform(y.shape, key, y.device))
try:
    with ic.patch(fx_graph_cache=False, cpu_backend="triton"):
        torch.compile(fn)(y, rng, key)
except BaseException as e:
    pass
body = [l.strip() for l in srcs[0].splitlines() if l.strip().startswith(("tmp", "tl.store", "x"))]
print("\n".join(body))
