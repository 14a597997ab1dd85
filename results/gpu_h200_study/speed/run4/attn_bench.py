"""Optical attention alone, bf16, 12 heads of 64, on the GPU; every time from CUDA-graph replays
(triton.testing.do_bench_cudagraph), so Python launch overhead is not counted:
  sdpa        F.scaled_dot_product_attention (flash), the plain model's attention;
  kernel      the fused Triton kernel on quantized operands (what the compiled model launches);
  fused op    OTAttention(kernel="fused") under torch.compile: operand quantization + kernel;
  composed    OTAttention(kernel="unfused") under torch.compile: two optical bmm + softmax.
"""
import os
import torch
import torch._dynamo
import torch.nn.functional as F
import triton
from triton.testing import do_bench_cudagraph

from optopass.passes.optical import quant
from optopass.passes.optical.kernels import attention as ka
from optopass.passes.optical.optical_transformer import OTAttention, OpticalTransformerParams

OUT = os.environ.get("OUT", "/tmp")
log = open(os.path.join(OUT, "attn_bench.log"), "a")


def say(s):
    print(s, flush=True)
    log.write(s + "\n")
    log.flush()


say(f"{torch.cuda.get_device_name()} torch {torch.__version__} triton {triton.__version__}")
for B, L in ((32, 128), (8, 512), (128, 128)):
    torch._dynamo.reset()
    H, D = 12, 64
    q, k, v = (torch.randn(B, L, H, D, device="cuda", dtype=torch.bfloat16).transpose(1, 2) for _ in range(3))
    mask = torch.zeros(B, 1, 1, L, device="cuda", dtype=torch.bfloat16)
    mask[-1, ..., L // 2:] = torch.finfo(torch.bfloat16).min
    ranges6 = torch.tensor([[-4, 4], [-4, 4], [-60, 60], [0, 1], [-4, 4], [-3, 3]], device="cuda", dtype=torch.float32)
    keys = torch.tensor([123, 456], device="cuda")
    qq = quant.quantize(q, ranges6[0], 256).to(q.dtype)
    kq = quant.quantize(k, ranges6[1], 256, 0.02004).to(k.dtype)
    vq = quant.quantize(v, ranges6[4], 256, 0.02004).to(v.dtype)
    r3 = ranges6[[2, 3, 5]].contiguous()
    attn = OTAttention(OpticalTransformerParams(), "a", 0).cuda().eval()
    for site, rows in ((attn.qk, ranges6[:3]), (attn.pv, ranges6[3:])):
        for n, r in zip(("a", "b", "out"), rows):
            site.range(n).copy_(r)
    times = {}
    with torch.no_grad():
        times["sdpa"] = do_bench_cudagraph(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
        kernel = lambda: ka.ot_attention_fwd(qq, kq, vq, mask, D ** -0.5, r3, keys, 256, True)
        out = kernel()  # autotunes, outside the capture
        times["kernel"] = do_bench_cudagraph(kernel)
        best = getattr(ka._tuned_kernel, "best_config", None)
        for name, setting in (("fused op", "fused"), ("composed", "unfused")):
            attn.kernel = setting
            fn = torch.compile(lambda: attn(q, k, v, attn_mask=mask), dynamic=False)
            for _ in range(3):
                fn()
            times[name] = do_bench_cudagraph(fn)
    say(f"attention {B}x{L}: " + ", ".join(f"{n} {t * 1e3:.1f} us" for n, t in times.items())
        + f"; kernel/sdpa {times['kernel'] / times['sdpa']:.2f}x, composed/kernel {times['composed'] / times['kernel']:.2f}x"
        + f"; tile {best}; output finite {bool(out.isfinite().all())}")
