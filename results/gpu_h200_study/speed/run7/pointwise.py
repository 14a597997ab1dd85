"""The FFN's pointwise work at 128 x 128 tokens of RoBERTa-base (16384 x 3072, bf16) under
torch.compile, timed from CUDA-graph replays: plain (bias + GELU) against the optical chain
(dither-quantize + bias + GELU + the next input's quantization) in variants of its arithmetic:
  base      quant.py as shipped (torch.round, int->float uniform, two lowbias32 rounds)
  rint      rounding by adding and removing 1.5 * 2**23 (two float adds, exact for |x| < 2**22)
  bitcast   rint + U[0, 1) from a float bit pattern (23 bits) instead of an int->float conversion
  onehash   bitcast + one lowbias32 round per element
Also the input quantization alone (LayerNorm output -> Q(x)) with torch.round and rint."""
import os

import torch
from triton.testing import do_bench_cudagraph

from optopass.passes.optical import quant

OUT = os.environ.get("OUT", "/tmp")
log = open(os.path.join(OUT, "pointwise.log"), "a")


def say(s):
    print(s, flush=True)
    log.write(s + "\n")
    log.flush()


MAGIC = 12582912.0


def rint(x):
    return (x + MAGIC) - MAGIC


def uniform(shape, key, device, bitcast, rounds):
    numel = 1
    for s in shape:
        numel *= s
    k32 = key.long().to(torch.int32)
    idx = torch.arange(numel, device=device, dtype=torch.int64).view(shape).to(torch.int32)
    if rounds == 2:
        h = quant.mix32(quant.mix32(idx + k32 * quant._GOLDEN) ^ k32)
    else:
        h = quant.mix32(idx * quant._GOLDEN + k32)
    if bitcast:
        return (quant._srl(h, 9) | 0x3F800000).view(torch.float32) - 1.0
    return quant._srl(h, 8).float() * (1.0 / (1 << 24))


def chain(variant):
    r = torch.round if variant == "base" else rint
    bitcast = variant in ("bitcast", "onehash")
    rounds = 1 if variant == "onehash" else 2

    def fn(y, bias, rng_out, rng_in, seed, site, counter):
        key = quant.stream_key(seed, site, counter)
        lo, hi = rng_out[0], rng_out[1]
        k = quant.to_grid(y, lo, hi, 256) + (uniform(y.shape, key, y.device, bitcast, rounds) - 0.5)
        q = quant.from_grid(r(k), lo, hi, 256).to(y.dtype)
        h = torch.nn.functional.gelu(q + bias)
        lo2, hi2 = rng_in[0], rng_in[1]
        return quant.from_grid(r(quant.to_grid(h, lo2, hi2, 256)), lo2, hi2, 256).to(y.dtype)

    return fn


def inq(variant):
    r = torch.round if variant == "base" else rint

    def fn(x, rng):
        lo, hi = rng[0], rng[1]
        return quant.from_grid(r(quant.to_grid(x, lo, hi, 256)), lo, hi, 256).to(x.dtype)

    return fn


dev = "cuda"
y = torch.randn(16384, 3072, device=dev, dtype=torch.bfloat16)
x = torch.randn(16384, 768, device=dev, dtype=torch.bfloat16)
bias = torch.randn(3072, device=dev, dtype=torch.bfloat16)
rng_out = torch.tensor([-3.0, 3.0], device=dev)
rng_in = torch.tensor([-0.2, 2.0], device=dev)
seed, site, counter = (torch.tensor(v, device=dev) for v in (1, 5, 7))
plain = torch.compile(lambda y, b: torch.nn.functional.gelu(y + b))
plain(y, bias)
t_plain = do_bench_cudagraph(lambda: plain(y, bias))
say(f"{torch.cuda.get_device_name()} torch {torch.__version__}; 16384 x 3072 bf16")
say(f"plain bias + GELU: {t_plain * 1e3:.1f} us")
ref = None
for v in ("base", "rint", "bitcast", "onehash"):
    f = torch.compile(chain(v))
    out = f(y, bias, rng_out, rng_in, seed, site, counter)
    t = do_bench_cudagraph(lambda: f(y, bias, rng_out, rng_in, seed, site, counter))
    ref = out if ref is None else ref
    say(f"optical FFN chain {v}: {t * 1e3:.1f} us ({t / t_plain:.2f}x plain), equal to base {(out == ref).float().mean().item():.4f}")
for v in ("base", "rint"):
    f = torch.compile(inq(v))
    out = f(x, rng_in)
    t = do_bench_cudagraph(lambda: f(x, rng_in))
    say(f"input quantization 16384 x 768, {v}: {t * 1e3:.1f} us")
