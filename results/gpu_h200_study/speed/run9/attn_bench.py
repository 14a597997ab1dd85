"""Attention-kernel variants (experiment): bitwise checks against the shipped kernel where the
variant keeps numerics, and GPU times at 32x128, 128x128, 8x512 (RoBERTa-base heads, bf16)."""
import os, sys, torch
sys.path.insert(0, os.path.dirname(__file__))
import attn_exp as A
from optopass.passes.optical.kernels import attention as K
OUT = os.environ.get("OUT", "/tmp")
log = open(os.path.join(OUT, "attn_bench.log"), "a")
def say(s):
    print(s, flush=True); log.write(s + "\n"); log.flush()
dev = "cuda" if torch.cuda.is_available() else "cpu"
# name: (flags, even, wide)
VARIANTS = {
    "base": ({}, False, False),
    "even+oneexp": (dict(ONE_EXP=True), True, False),
    "even+oneexp+scale": (dict(ONE_EXP=True, SCALE_EXACT=True), True, False),
    "wide": ({}, False, True),
    "wide+even+oneexp": (dict(ONE_EXP=True), True, True),
    "base again": ({}, False, False),
}
def inputs(B, H, L, D=64, dt=torch.bfloat16):
    g = torch.Generator(device="cpu").manual_seed(0)
    mk = lambda: (torch.randint(-127, 128, (B, H, L, D), generator=g).float() / 64).to(dev, dt)
    q, k, v = mk(), mk(), mk()
    mask = torch.zeros(B, 1, 1, L, device=dev, dtype=dt)
    mask[: B // 2, ..., L - L // 4:] = torch.finfo(dt).min
    ranges = torch.tensor([[-40.0, 40.0], [0.0, 1.0], [-2.0, 2.0], [-1.5, 1.5]], device=dev)
    keys = (torch.tensor(12345, device=dev), torch.tensor(67890, device=dev))
    counters = (torch.tensor(3, device=dev), torch.tensor(4, device=dev))
    return q, k, v, mask, ranges, keys, counters
def run(mod, args, extra, **kw):
    q, k, v, mask, ranges, keys, counters = args
    return mod.ot_attention_fwd(q, k, v, mask, 0.125, ranges, keys, 256, True, counters=counters, out_levels=256, **kw, **extra)
if dev == "cpu":
    args = inputs(2, 2, 32, 16)
    ref = run(K, args, {}, block_m=16, block_n=32)
    for name, (ex, even, wide) in VARIANTS.items():
        A.USE_EVEN[0] = even
        out = run(A, args, ex, block_m=16, block_n=32)
        say(f"cpu {name:12s} max|diff| {(out.float() - ref.float()).abs().max().item():.3g}  equal {torch.equal(out, ref)}")
    sys.exit()
from triton.testing import do_bench, do_bench_cudagraph
import torch.nn.functional as F
say(f"{torch.cuda.get_device_name()} torch {torch.__version__}")
for B, L in ((8, 512), (128, 128), (32, 128)):
    args = inputs(B, 12, L)
    q, k, v, mask = args[:4]
    t = do_bench_cudagraph(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask), rep=200)
    say(f"{B}x{L} sdpa {t * 1e3:8.1f} us")
    ref = run(K, args, {})
    for name, (ex, even, wide) in VARIANTS.items():
        A.USE_EVEN[0], A.WIDE[0] = even, wide
        tk = A._tuned_wide if wide else A._tuned_kernel
        tk.cache.clear()
        out = run(A, args, ex)
        same = torch.equal(out, ref)
        diff = (out.float() - ref.float()).abs().max().item()
        t = do_bench_cudagraph(lambda: run(A, args, ex), rep=200)
        cfg = tk.best_config
        say(f"{B}x{L} {name:12s} {t * 1e3:8.1f} us  equal {same} maxdiff {diff:.3g}  {cfg}")
