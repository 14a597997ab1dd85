"""Pointwise ablations at 32x128 tokens of RoBERTa-base (bf16, torch.compile, CUDA-graph replays):
which part of the FFN chain and the Q-side chain costs the time."""
import os, torch
from triton.testing import do_bench_cudagraph
from optopass.passes.optical import quant
OUT = os.environ.get("OUT", "/tmp")
log = open(os.path.join(OUT, "pw2.log"), "a")
def say(s):
    print(s, flush=True); log.write(s + "\n"); log.flush()
G = quant._GOLDEN
def uni(shape, key, dev, how):
    numel = 1
    for s in shape: numel *= s
    k32 = key.long().to(torch.int32)
    idx = torch.arange(numel, device=dev, dtype=torch.int64).view(shape).to(torch.int32)
    if how == "base":
        return quant.hash_uniform(shape, key, dev)
    if how == "onehash":
        h = quant.mix32(idx * G + k32)
    elif how == "mul1":  # one multiply-xorshift
        h = (idx ^ k32) * quant._MIX_C1
        h = h ^ quant._srl(h, 15)
    elif how == "idx":   # no mixing at all (a lower bound, not a dither)
        h = idx * G + k32
    return quant._srl(h, 8).float() * (1.0 / (1 << 24))
def chain(how, gelu=True):
    def fn(y, bias, rng_out, rng_in, base, counter):
        key = quant.key_at(base, counter)
        lo, hi = rng_out[0], rng_out[1]
        k = quant.to_grid(y, lo, hi, 256)
        if how != "none":
            k = k + (uni(y.shape, key, y.device, how) - 0.5)
        q = quant.from_grid(torch.round(k), lo, hi, 256).to(y.dtype)
        h = q + bias
        if gelu:
            h = torch.nn.functional.gelu(h)
        lo2, hi2 = rng_in[0], rng_in[1]
        return quant.from_grid(torch.round(quant.to_grid(h, lo2, hi2, 256)), lo2, hi2, 256).to(y.dtype)
    return fn
def plain(y, bias, *a):
    return torch.nn.functional.gelu(y + bias)
def plain_nogelu(y, bias, *a):
    return y + bias
dev = "cuda"
rng_out = torch.tensor([-3.0, 3.0], device=dev); rng_in = torch.tensor([-0.2, 2.0], device=dev)
base = torch.tensor(123456789, device=dev, dtype=torch.int64); counter = torch.tensor(7, device=dev, dtype=torch.int64)
say(f"{torch.cuda.get_device_name()} torch {torch.__version__}")
for rows, cols, gelu in ((4096, 3072, True), (4096, 768, False), (16384, 3072, True)):
    y = torch.randn(rows, cols, device=dev, dtype=torch.bfloat16); bias = torch.randn(cols, device=dev, dtype=torch.bfloat16)
    args = (y, bias, rng_out, rng_in, base, counter)
    ref = None
    for name, fn in [("plain", plain if gelu else plain_nogelu)] + [(h, chain(h, gelu)) for h in ("none", "idx", "mul1", "onehash", "base")]:
        torch._dynamo.reset()
        cf = torch.compile(fn)
        with torch.no_grad():
            cf(*args)
            t = do_bench_cudagraph(lambda: cf(*args), rep=200)
        say(f"{rows}x{cols} {'gelu' if gelu else 'nogelu'} {name:8s} {t * 1e3:8.1f} us")
