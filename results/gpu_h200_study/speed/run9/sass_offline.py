import sys, triton, torch
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from optopass.passes.optical.kernels import attention as A
fn = A._ot_attention_fwd_kernel
BM, BN, W = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
sig = {}
names = fn.arg_names
ptrs = {"Q": "*bf16", "K": "*bf16", "V": "*bf16", "Out": "*bf16", "Mask": "*bf16", "Ranges": "*fp32",
        "KeyQK": "*i64", "KeyPV": "*i64", "CounterQK": "*i64", "CounterPV": "*i64"}
consts = dict(HAS_MASK=True, MASK_IS_BOOL=False, ROUND_MASKED=True, DITHER=True, SINGLE_PASS=BN >= 512 or BN >= int(sys.argv[4]),
              MASK_ROW=True, HAS_COUNTERS=True, OUT_QUANT=True, PRECISION="tf32", BLOCK_M=BM, BLOCK_N=BN,
              BLOCK_D=64, BLOCK_DV=64, EVEN=True)
ones = ("stride_qd", "stride_kd", "stride_vd", "stride_od", "stride_mn")
for n in ones:
    consts[n] = 1
for n in names:
    if n in ptrs: sig[n] = ptrs[n]
    elif n in consts: sig[n] = "constexpr"
    elif n == "scale": sig[n] = "fp32"
    else: sig[n] = "i32"
div16 = [[(names.index(n),), [["tt.divisibility", 16]]] for n in names if sig[n].startswith("*") or n in ("stride_qb","stride_qh","stride_qm","stride_kb","stride_kh","stride_kn","stride_vb","stride_vh","stride_vn","stride_ob","stride_oh","stride_om", "D", "DV")]
attrs = {k[0]: v for k, v in div16}
src = ASTSource(fn, sig, constexprs={(names.index(k),): v for k, v in consts.items()}, attrs={(k,): v for k, v in attrs.items()})
k = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=dict(num_warps=W, num_stages=1 if BN >= 256 else 2, enable_fp_fusion=False))
open(f"/tmp/k_{BM}_{BN}_{W}.ptx", "w").write(k.asm["ptx"])
open(f"/tmp/k_{BM}_{BN}_{W}.ttgir", "w").write(k.asm["ttgir"])
try:
    sass = k.asm["sass"]
    open(f"/tmp/k_{BM}_{BN}_{W}.sass", "w").write(sass)
except Exception as e:
    print("no sass", e)
open(f"/tmp/k_{BM}_{BN}_{W}.cubin", "wb").write(k.asm["cubin"])
print(k.metadata.shared if hasattr(k.metadata, "shared") else "", )
