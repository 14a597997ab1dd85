"""Pointwise chains (FFN: dither-quantize, bias, GELU, quantize; Q side: dither-quantize, bias,
quantize): the shipped uniform (24 bits through an int->float conversion) against one built from
the hash's bits (23 bits, a bitcast and a subtraction). bf16, torch.compile, CUDA-graph replays."""
import os, torch
from triton.testing import do_bench_cudagraph
from optopass.passes.optical import quant
OUT = os.environ.get("OUT", "/tmp")
log = open(os.path.join(OUT, "pw3.log"), "a")
def say(s):
    print(s, flush=True); log.write(s + "\n"); log.flush()
G = quant._GOLDEN
def uni(shape, key, dev, how):
    if how == "base":
        return quant.hash_uniform(shape, key, dev)
    numel = 1
    for s in shape: numel *= s
    k32 = key.long().to(torch.int32)
    idx = torch.arange(numel, device=dev, dtype=torch.int64).view(shape).to(torch.int32)
    h = quant.mix32(quant.mix32(idx + k32 * G) ^ k32)
    return (quant._srl(h, 9) | 0x3F800000).view(torch.float32) - 1.0
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
dev = "cuda"
rng_out = torch.tensor([-3.0, 3.0], device=dev); rng_in = torch.tensor([-0.2, 2.0], device=dev)
base = torch.tensor(123456789, device=dev, dtype=torch.int64); counter = torch.tensor(7, device=dev, dtype=torch.int64)
say(f"{torch.cuda.get_device_name()} torch {torch.__version__}")
for rows, cols, gelu in ((4096, 3072, True), (4096, 768, False), (16384, 3072, True), (16384, 768, False)):
    y = torch.randn(rows, cols, device=dev, dtype=torch.bfloat16); bias = torch.randn(cols, device=dev, dtype=torch.bfloat16)
    args = (y, bias, rng_out, rng_in, base, counter)
    for name in ("none", "base", "ubits", "base", "ubits"):
        torch._dynamo.reset()
        cf = torch.compile(chain(name, gelu))
        with torch.no_grad():
            cf(*args)
            t = do_bench_cudagraph(lambda: cf(*args), rep=200)
        say(f"{rows}x{cols} {'gelu' if gelu else 'nogelu'} {name:8s} {t * 1e3:8.1f} us")
