"""Where the fused attention kernel's time goes: variants of kernels/attention.py built from its
source by text edits (measurement only), each timed from CUDA-graph replays
(triton.testing.do_bench_cudagraph), bf16, 12 heads of 64, at fixed tilings and autotuned.
  base      the kernel as shipped
  nodither  DITHER=False (no hash per score)
  noround   no rounding of intermediates to bf16 (_as is the identity)
  bitcast   U[0,1) from the hash by a float bit pattern instead of an int->float conversion
  onehash   one lowbias32 round per element instead of two
"""
import importlib.util
import os
import sys

import torch
import triton
from triton.testing import do_bench_cudagraph

from optopass.passes.optical import quant
from optopass.passes.optical.kernels import attention as ka

OUT = os.environ.get("OUT", "/tmp")
log = open(os.path.join(OUT, "attn_variants.log"), "a")


def say(s):
    print(s, flush=True)
    log.write(s + "\n")
    log.flush()


SRC = open(ka.__file__).read()
EDITS = {
    "base": [],
    "noround": [("    return x.to(dtype).to(tl.float32)", "    return x")],
    "bitcast": [("    return (h >> 8).to(tl.float32) * (1.0 / 16777216.0)",
                 "    return ((h >> 9) | 0x3F800000).to(tl.float32, bitcast=True) - 1.0")],
    "onehash": [("    h = _mix32(_mix32(idx + key * 0x9E3779B9) ^ key)", "    h = _mix32(idx * 0x9E3779B9 + key)")],
}


def variant(name):
    src = SRC
    for a, b in EDITS[name]:
        assert a in src, (name, a)
        src = src.replace(a, b)
    src = src.replace("from . import MAX_LEVELS", "MAX_LEVELS = 1 << 16")
    path = os.path.join("/tmp", f"ka_{name}.py")
    open(path, "w").write(src)
    spec = importlib.util.spec_from_file_location(f"ka_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def launch(mod, qq, kq, vq, mask, r3, keys, dither, bm, bn, w):
    B, H, Lq, D = qq.shape
    Lk = kq.shape[2]
    out = torch.empty_like(qq)
    mask = mask.expand(B, H, Lq, Lk)
    args = (qq, kq, vq, out, mask, r3, keys, *qq.stride(), *kq.stride(), *vq.stride(), *out.stride(), *mask.stride(),
            H, Lq, Lk, D, D, D ** -0.5, 256)
    flags = dict(HAS_MASK=True, MASK_IS_BOOL=False, ROUND_MASKED=True, DITHER=dither, MASK_ROW=True,
                 PRECISION="tf32", BLOCK_D=64, BLOCK_DV=64, enable_fp_fusion=False)
    k = mod._ot_attention_fwd_kernel[(triton.cdiv(Lq, bm) * B * H,)](
        *args, **flags, SINGLE_PASS=bn >= Lk, BLOCK_M=bm, BLOCK_N=bn, num_warps=w, num_stages=2)
    return out, k


say(f"{torch.cuda.get_device_name()} torch {torch.__version__} triton {triton.__version__}")
mods = {n: variant(n) for n in EDITS}
TILES = {128: [(128, 128, 8), (64, 128, 4), (32, 128, 4)], 512: [(64, 32, 4), (16, 512, 4), (16, 512, 8), (32, 512, 8)]}
for B, L in ((32, 128), (8, 512), (128, 128)):
    H, D = 12, 64
    q, k, v = (torch.randn(B, L, H, D, device="cuda", dtype=torch.bfloat16).transpose(1, 2) for _ in range(3))
    mask = torch.zeros(B, 1, 1, L, device="cuda", dtype=torch.bfloat16)
    mask[-1, ..., L // 2:] = torch.finfo(torch.bfloat16).min
    rq = torch.tensor([[-4, 4], [-4, 4], [-4, 4]], device="cuda", dtype=torch.float32)
    r3 = torch.tensor([[-60, 60], [0, 1], [-3, 3]], device="cuda", dtype=torch.float32)
    keys = torch.tensor([123, 456], device="cuda")
    qq = quant.quantize(q, rq[0], 256).to(q.dtype)
    kq = quant.quantize(k, rq[1], 256, 0.02004).to(k.dtype)
    vq = quant.quantize(v, rq[2], 256, 0.02004).to(v.dtype)
    with torch.no_grad():
        sdpa = do_bench_cudagraph(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask))
        tuned = lambda: ka.ot_attention_fwd(qq, kq, vq, mask, D ** -0.5, r3, keys, 256, True)
        ref = tuned()
        t_tuned = do_bench_cudagraph(tuned)
        say(f"{B}x{L}: sdpa {sdpa * 1e3:.1f} us; autotuned base {t_tuned * 1e3:.1f} us, tile {ka._tuned_kernel.best_config}")
        for bm, bn, w in TILES[L]:
            parts = []
            for name, mod in mods.items():
                for dither in ((True, False) if name == "base" else (True,)):
                    try:
                        out, kern = launch(mod, qq, kq, vq, mask, r3, keys, dither, bm, bn, w)
                        t = do_bench_cudagraph(lambda: launch(mod, qq, kq, vq, mask, r3, keys, dither, bm, bn, w))
                        agree = (out == ref).float().mean().item()
                        parts.append(f"{name}{'' if dither else '-nodither'} {t * 1e3:.1f} us "
                                     f"(regs {kern.n_regs}, spills {kern.n_spills}, = tuned {agree:.3f})")
                    except Exception as e:  # noqa: BLE001
                        parts.append(f"{name} failed: {type(e).__name__}: {str(e)[:120]}")
            say(f"  tile {bm}x{bn} w{w}: " + "; ".join(parts))
