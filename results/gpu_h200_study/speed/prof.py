"""GPU diagnosis for issue 4: where does compiled optopass eval spend its time?"""
import os, statistics, sys, time, traceback
import torch
import torch._dynamo
import torch._inductor.config as ic
from torch.profiler import profile, ProfilerActivity
from optopass.tools import bench

OUT = os.environ.get("OUT", "/tmp")
LOG = open(os.path.join(OUT, "prof.log"), "a")


def log(*a):
    s = " ".join(str(x) for x in a)
    print(s, flush=True)
    LOG.write(s + "\n"); LOG.flush()


B, L = (int(v) for v in (sys.argv[1] if len(sys.argv) > 1 else "32x128").split("x"))
variants = sys.argv[2].split(",") if len(sys.argv) > 2 else ["plain:default", "opt:default", "opt:max-autotune-no-cudagraphs", "plain:max-autotune-no-cudagraphs", "opt:reduce-overhead", "plain:reduce-overhead"]
dev = "cuda"
plain = bench.build_model("roberta-base", torch.bfloat16, dev).eval()
data = bench.make_batch(plain, B, L, dev)
inp = {k: v for k, v in data.items() if k != "labels"}
gm = bench.optical_model(plain, None, data, dev).eval()
log(f"gpu {torch.cuda.get_device_name()} torch {torch.__version__} batch {B}x{L}")
for var in variants:
    which, mode = var.split(":")
    torch._dynamo.reset()
    model = plain if which == "plain" else gm
    try:
        t0 = time.time()
        with ic.patch(freezing=True):
            cm = torch.compile(model, mode=None if mode == "default" else mode)
            with torch.no_grad():
                for _ in range(3):
                    cm(**inp)
        torch.cuda.synchronize()
        comp = time.time() - t0

        def step():
            with torch.no_grad():
                return cm(**inp)
        for _ in range(5):
            step()
        ms = statistics.median(bench.time_call(step, dev) for _ in range(50))
        log(f"{var}: {ms:.3f} ms (compile+warm {comp:.0f} s)")
        if mode == "default":
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                for _ in range(5):
                    step()
                torch.cuda.synchronize()
            log(prof.key_averages().table(sort_by="cuda_time_total", row_limit=30, max_name_column_width=90))
    except Exception as e:
        log(f"{var}: FAILED {type(e).__name__}: {''.join(traceback.format_exception(e))[-3000:]}")
