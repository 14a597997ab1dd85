"""CPU micro-benchmark: one FFN-like pointwise chain (dither-quantize, bias, GELU, next quantization)
compiled with from_grid dividing vs multiplying and with one vs two hash rounds, against plain GELU.
Run: python results/micro_pointwise_cpu.py (the division variant is the code before this change)."""
import time, torch
from optopass.passes.optical import quant
torch.manual_seed(0)
N = 8*128*1024
x = torch.randn(N)
b = torch.randn(N)
rng = torch.tensor([-3.0, 3.0]); rng2 = torch.tensor([-2.0, 2.0])
key = torch.tensor(12345, dtype=torch.int64)

def fg_div(k, lo, hi, L): return k / (L - 1) * (hi - lo) + lo
def fg_mul(k, lo, hi, L): return k * ((hi - lo) / (L - 1)) + lo

def make(fg, rounds):
    def f(x, b, rng, rng2, key):
        lo, hi = rng[0], rng[1]
        k = quant.to_grid(x, lo, hi, 256)
        k32 = key.to(torch.int32)
        idx = torch.arange(N, dtype=torch.int32)
        h = quant.mix32(idx + k32 * quant._GOLDEN)
        if rounds == 2:
            h = quant.mix32(h ^ k32)
        u = quant._srl(h, 8).float() * (1.0 / (1 << 24))
        y = fg(torch.round(k + (u - 0.5)), lo, hi, 256) + b
        y = torch.nn.functional.gelu(y)
        lo2, hi2 = rng2[0], rng2[1]
        return fg(torch.round(quant.to_grid(y, lo2, hi2, 256)), lo2, hi2, 256)
    return f

def gelu_only(x, b, rng, rng2, key):
    return torch.nn.functional.gelu(x + b)
fns = {"plain gelu": gelu_only}
for fgn, fg in (("div", fg_div), ("mul", fg_mul)):
    for r in (2, 1):
        fns[f"{fgn} hash{r}"] = make(fg, r)
comp = {n: torch.compile(f) for n, f in fns.items()}
for n, f in comp.items():
    f(x, b, rng, rng2, key)
res = {n: [] for n in comp}
for _ in range(30):
    for n, f in comp.items():
        t = time.perf_counter(); f(x, b, rng, rng2, key); res[n].append(time.perf_counter() - t)
import statistics
for n, v in res.items():
    print(f"{n}: {statistics.median(v)*1e3:.2f} ms ({statistics.median(v)/N*1e9:.2f} ns/elem)")
