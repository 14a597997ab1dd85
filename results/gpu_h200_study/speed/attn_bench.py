"""Fused optical attention vs SDPA (flash) vs the composed optical ops, bf16, on the GPU."""
import os, torch, triton
import torch.nn.functional as F
from optopass.passes.optical.kernels.attention import ot_attention_fwd
from optopass.passes.optical.optical_transformer import OTAttention, OpticalTransformerParams
OUT = os.environ.get("OUT", "/tmp")
log = open(os.path.join(OUT, "attn_bench.log"), "a")
def say(s):
    print(s, flush=True); log.write(s + "\n"); log.flush()
for B, L in ((32, 128), (8, 512), (128, 128)):
    H, D = 12, 64
    q, k, v = (torch.randn(B, L, H, D, device="cuda", dtype=torch.bfloat16).transpose(1, 2) for _ in range(3))
    mask = torch.zeros(B, 1, 1, L, device="cuda", dtype=torch.bfloat16)
    mask[-1, ..., L // 2:] = torch.finfo(torch.bfloat16).min
    ranges = torch.tensor([[-4, 4], [-4, 4], [-60, 60], [0, 1], [-4, 4], [-3, 3]], device="cuda", dtype=torch.float32)
    keys = torch.tensor([123, 456], device="cuda")
    attn = OTAttention(OpticalTransformerParams(), "a", 0).cuda().eval()
    for site, rows in ((attn.qk, ranges[:3]), (attn.pv, ranges[3:])):
        for n, r in zip(("a", "b", "out"), rows):
            site.range(n).copy_(r)
    attn.kernel = "unfused"
    unfused = torch.compile(lambda: attn(q, k, v, attn_mask=mask)) if B == 32 else None
    with torch.no_grad():
        fused_out = ot_attention_fwd(q, k, v, mask, D ** -0.5, ranges, keys, 256, 0.02004, True)
        t_sdpa = triton.testing.do_bench(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask), return_mode="median")
        t_fused = triton.testing.do_bench(lambda: ot_attention_fwd(q, k, v, mask, D ** -0.5, ranges, keys, 256, 0.02004, True), return_mode="median")
        t_unf = triton.testing.do_bench(unfused, return_mode="median") if B == 32 else float('nan')
    say(f"attention {B}x{L}: sdpa {t_sdpa*1e3:.1f} us, fused optical {t_fused*1e3:.1f} us ({t_fused/t_sdpa:.2f}x), composed+compiled optical {t_unf*1e3:.1f} us; out finite {bool(fused_out.isfinite().all())}")
