"""Compile settings for the optical eval model (2 RoBERTa-base layers, bf16, 32x128, freezing):
median forward time over CUDA-event-timed calls, plain beside optical, and compile time."""
import os, statistics, sys, time, torch
import torch._dynamo
import torch._inductor.config as ic
from transformers import RobertaConfig, RobertaForSequenceClassification
from optopass.tools import bench
OUT = os.environ.get("OUT", "/tmp")
LOG = open(os.path.join(OUT, "exp3.log"), "a")
def say(s):
    print(s, flush=True); LOG.write(s + "\n"); LOG.flush()
layers = int(os.environ.get("LAYERS", "2"))
cfg = RobertaConfig(hidden_size=768, num_hidden_layers=layers, num_attention_heads=12, intermediate_size=3072,
                    vocab_size=50265, max_position_embeddings=514, num_labels=2, attn_implementation="sdpa")
torch.manual_seed(0)
plain = RobertaForSequenceClassification(cfg).to("cuda", torch.bfloat16).eval()
BATCH = int(os.environ.get("BATCH", "32"))
data = bench.make_batch(plain, BATCH, 128, "cuda")
inp = {k: v for k, v in data.items() if k != "labels"}
gm = bench.optical_model(plain, None, data, "cuda").eval()
say(f"{torch.cuda.get_device_name()} torch {torch.__version__}; {layers} layers, {BATCH}x128 bf16 eval")
def timed(name, model, mode, patch):
    torch._dynamo.reset()
    t0 = time.time()
    with ic.patch(freezing=True, **patch), torch.no_grad():
        cm = torch.compile(model, mode=mode)
        for _ in range(3):
            cm(**inp)
    torch.cuda.synchronize()
    comp = time.time() - t0
    ts = []
    with torch.no_grad():
        for _ in range(60):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record(); cm(**inp); e.record(); e.synchronize()
            ts.append(s.elapsed_time(e))
    say(f"{name:40s} {statistics.median(ts[10:]) * 1e3:8.1f} us   compile {comp:6.1f} s")
only = sys.argv[1:] 
V = [
    ("plain compiled", plain, None, {}),
    ("plain reduce-overhead", plain, "reduce-overhead", {}),
    ("optical reduce-overhead", gm, "reduce-overhead", {}),
    ("optical r-o + combo_kernels", gm, "reduce-overhead", {"combo_kernels": True}),
    ("optical r-o + coordinate_descent", gm, "reduce-overhead", {"coordinate_descent_tuning": True}),
    ("optical max-autotune", gm, "max-autotune", {}),
    ("plain max-autotune", plain, "max-autotune", {}),
]
for name, model, mode, patch in V:
    if only and not any(o in name for o in only):
        continue
    try:
        timed(name, model, mode, patch)
    except Exception as err:
        say(f"{name}: FAILED {type(err).__name__}: {str(err)[:300]}")
