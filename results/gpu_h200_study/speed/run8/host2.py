"""Host time per compiled eval call without kernels (no-op backend), RoBERTa-base shape, with a
cProfile of the calls. argv[1]: 'as-is' or 'w-cache-old' (OTLinear._weight_q as before: always
assigns the cache)."""
import cProfile, os, pstats, statistics, sys, time, torch
import torch._dynamo
from optopass.tools import bench
import optopass
variant = sys.argv[1]
if variant == "w-cache-old":
    from optopass.passes.optical import optical_transformer as ot, quant
    def _weight_q(self, weight, observing):
        wq = quant.ste(weight, quant.quantize_fused(weight, self.range("w"), self.levels, self.lut_min))
        self._w_cache = None
        return wq
    ot.OTLinear._weight_q = _weight_q
plain = bench.build_model("roberta-base", torch.bfloat16, "cuda").eval()
data = bench.make_batch(plain, 32, 128, "cuda")
inp = {k: v for k, v in data.items() if k != "labels"}
gm = bench.optical_model(plain, None, data, "cuda").eval()
def backend(g, ex):
    print("graph inputs", len(ex), flush=True)
    cached = [g(*ex)]
    return lambda *a: cached[0]
torch._dynamo.reset()
cm = torch.compile(gm, backend=backend)
with torch.no_grad():
    for _ in range(3): cm(**inp)
    ts = []
    for _ in range(300):
        t0 = time.perf_counter(); cm(**inp); ts.append(time.perf_counter() - t0)
    print(f"{variant} ({os.path.dirname(optopass.__file__)}): {statistics.median(ts) * 1e6:.1f} us per call", flush=True)
    pr = cProfile.Profile(); pr.enable()
    for _ in range(100): cm(**inp)
    pr.disable()
pstats.Stats(pr).sort_stats("tottime").print_stats(6)
