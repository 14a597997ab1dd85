"""Where the compiled (Inductor, default mode, freezing) eval forward spends its GPU time, plain
against optopass (fused attention), RoBERTa-base bf16 at B x L: kernel time per forward by kind,
from torch.profiler's CUDA activity over 5 forwards."""
import collections
import os
import sys
import time

import torch
import torch._dynamo
import torch._inductor.config as ic
from torch.profiler import ProfilerActivity, profile

from optopass.tools import bench

OUT = os.environ.get("OUT", "/tmp")
LOG = open(os.path.join(OUT, "prof2.log"), "a")


def log(s):
    print(s, flush=True)
    LOG.write(s + "\n")
    LOG.flush()


def kind(name):
    n = name.lower()
    if "ot_attention" in n:
        return "optical attention kernel"
    if "flash" in n or "fmha" in n or "attention" in n and "triton" not in n:
        return "sdpa attention"
    if any(s in n for s in ("gemm", "cutlass", "sm90_xmma", "nvjet", "cublas", "matmul")):
        return "GEMM"
    if n.startswith("triton"):
        return "inductor kernel"
    return "other"


B, L = (int(v) for v in (sys.argv[1] if len(sys.argv) > 1 else "32x128").split("x"))
dev = "cuda"
plain = bench.build_model("roberta-base", torch.bfloat16, dev).eval()
data = bench.make_batch(plain, B, L, dev)
inp = {k: v for k, v in data.items() if k != "labels"}
gm = bench.optical_model(plain, None, data, dev).eval()
log(f"{torch.cuda.get_device_name()} torch {torch.__version__}, batch {B}x{L}, compiled (default mode, freezing), eval")
for which, model in (("plain", plain), ("optopass", gm)):
    torch._dynamo.reset()
    t0 = time.time()
    with ic.patch(freezing=True), torch.no_grad():
        cm = torch.compile(model)
        for _ in range(3):
            cm(**inp)
    torch.cuda.synchronize()
    with torch.no_grad(), profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            cm(**inp)
        torch.cuda.synchronize()
    per_kind = collections.defaultdict(lambda: [0, 0.0])
    sizes = collections.Counter()
    names = collections.defaultdict(lambda: [0, 0.0])
    for e in prof.events():
        if e.device_type != torch.autograd.DeviceType.CUDA:
            continue
        us = e.time_range.elapsed_us()
        k = kind(e.name)
        if k == "inductor kernel" and us < 3.0:
            k = "inductor kernel < 3 us"
        per_kind[k][0] += 1
        per_kind[k][1] += us
        names[e.name[:100]][0] += 1
        names[e.name[:100]][1] += us
    total = sum(v[1] for v in per_kind.values()) / 5
    log(f"{which}: compile {time.time() - t0:.0f} s; GPU kernel time per forward {total:.0f} us, "
        f"{sum(v[0] for v in per_kind.values()) // 5} kernels")
    for k, (n, us) in sorted(per_kind.items(), key=lambda kv: -kv[1][1]):
        log(f"  {k:28s} {n // 5:5d} kernels  {us / 5:8.1f} us")
    for name, (n, us) in sorted(names.items(), key=lambda kv: -kv[1][1])[:14]:
        log(f"    {us / 5:8.1f} us  {n // 5:4d}x  {name}")
