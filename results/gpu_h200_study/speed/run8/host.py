"""Host time per call of a compiled eval forward without its kernels (a backend that returns the
first call's outputs): dynamo's guards, input gathering and replayed side effects, plain vs optical,
RoBERTa-base shape on the GPU host."""
import os, statistics, sys, time, torch
import torch._dynamo
from optopass.tools import bench
import optopass
print("optopass from", os.path.dirname(optopass.__file__))
plain = bench.build_model("roberta-base", torch.bfloat16, "cuda").eval()
data = bench.make_batch(plain, 32, 128, "cuda")
inp = {k: v for k, v in data.items() if k != "labels"}
gm = bench.optical_model(plain, None, data, "cuda").eval()
def backend(g, ex):
    cached = [g(*ex)]
    return lambda *a: cached[0]
for name, m in (("plain", plain), ("optical", gm)):
    torch._dynamo.reset()
    cm = torch.compile(m, backend=backend)
    with torch.no_grad():
        for _ in range(3): cm(**inp)
        ts = []
        for _ in range(300):
            t0 = time.perf_counter(); cm(**inp); ts.append(time.perf_counter() - t0)
    print(f"{name}: {statistics.median(ts) * 1e6:.1f} us per call (host, no kernels)", flush=True)
