"""Inductor output code and per-kernel GPU times of a 2-layer RoBERTa-base-width optical model,
compiled (default mode, freezing), eval, bf16, 32x128."""
import collections, os, sys, torch
import torch._inductor.config as ic
from torch.profiler import ProfilerActivity, profile
from transformers import RobertaConfig, RobertaForSequenceClassification
from optopass.tools import bench
OUT = os.environ.get("OUT", "/tmp")
cfg = RobertaConfig(hidden_size=768, num_hidden_layers=2, num_attention_heads=12, intermediate_size=3072,
                    vocab_size=50265, max_position_embeddings=514, num_labels=2, attn_implementation="sdpa")
torch.manual_seed(0)
plain = RobertaForSequenceClassification(cfg).to("cuda", torch.bfloat16).eval()
data = bench.make_batch(plain, 32, 128, "cuda")
inp = {k: v for k, v in data.items() if k != "labels"}
gm = bench.optical_model(plain, None, data, "cuda").eval()
with ic.patch(freezing=True), torch.no_grad():
    cm = torch.compile(gm)
    for _ in range(3):
        cm(**inp)
torch.cuda.synchronize()
with torch.no_grad(), profile(activities=[ProfilerActivity.CUDA]) as prof:
    for _ in range(5):
        cm(**inp)
    torch.cuda.synchronize()
seq = []
for e in prof.events():
    if e.device_type == torch.autograd.DeviceType.CUDA:
        seq.append((e.name, e.time_range.elapsed_us()))
n = len(seq) // 5
with open(os.path.join(OUT, "kernels_2layer.txt"), "w") as f:
    f.write(f"{n} kernels per forward, {sum(t for _, t in seq) / 5:.1f} us\n")
    for name, t in seq[:n]:
        f.write(f"{t:8.1f}  {name}\n")
print(open(os.path.join(OUT, "kernels_2layer.txt")).read()[:6000])
