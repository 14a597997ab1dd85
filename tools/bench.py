"""``optopass bench``: time the optical model against the plain one in the same run.

Rows (eval and train): plain eager, plain compiled (GPU), optopass in each mode, and the
reference implementation's layers (mase-triton ``OpticalTransformerLinear`` in place of every
``nn.Linear``; attention left plain, since the reference's hand-written attention is not a
library component), each with its ratio to the plain baseline measured in the same process.
Timing: every model is warmed up (compiled) first, then timed in interleaved rounds (one call
of each model per round, so a drift of the machine's speed reaches all rows alike; the CPU's
default) and/or with ``--timing sequential``, each model's calls in a row as a user's loop makes
them (code and data stay warm in the CPU's caches; on some GPU machines interleaving slowed the
launch-bound plain modes by up to 1.8x); a GPU run does both by default; the median;
CUDA events around each call on the GPU, perf_counter on the CPU. Peak memory (GPU): one step
after warm-up, counting the model's own memory only (``own_peak_mib``: its weights, and what
its warm-up and step allocated, not the rows prepared before it). Saved for backward (train, any
device): the MiB of activations that one step keeps for its backward, the part of training memory
that the model's code decides.

Modes (``--compile-modes``; ``--optical-modes`` narrows the optical rows, each of which costs
minutes of compiling): ``eager``; ``compiled``, ``torch.compile``
(Inductor, default mode); ``cudagraphs``, ``torch.compile(mode="reduce-overhead")``: the same
kernels replayed as CUDA graphs (GPU only), which removes the launch overhead of the many small
kernels around each optical matmul. Eval graphs are compiled with Inductor's ``freezing``
(parameters as constants: the optical weight quantization folds into a constant, and the plain
model gets the same treatment), training graphs without. The optical model's fastest supported
mode, the one the README recommends on a GPU, is ``cudagraphs``; on a CPU, ``compiled``. By
default a GPU run times the plain model in all three modes and the optical one in ``cudagraphs``.

``--modes glue`` times the user's paths instead (``evaluate_glue`` on a GLUE dev set and
Trainer steps, plain against optical, compile time apart): see ``tools/bench_glue.py``.
"""

from __future__ import annotations

import copy
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch._dynamo

from .bench_glue import DEFAULT_GLUE_MODELS, GLUE_MODELS, GlueRow, format_glue_rows, run_glue_bench
from .checks import check_values, integer
from .cli_args import DTYPES, add_model_options, add_output_options, command_scope, print_result
from .compiling import compile_model, triton_compile_log

SHAPES = {
    # name: (hidden, layers, heads, intermediate, vocab)
    "roberta-base": (768, 12, 12, 3072, 50265),
    "small": (256, 4, 4, 1024, 8000),
}


COMPILE_MODES = ("eager", "compiled", "cudagraphs")
# "autotune" (opt-in: long compiles): Inductor's Triton GEMM templates, which can take the
# dither-quantize that follows each optical matmul into their epilogue, under CUDA graphs
_TORCH_COMPILE_MODE = {"compiled": None, "cudagraphs": "reduce-overhead", "autotune": "max-autotune"}


def compiled(model, mode: str):
    """`model` as run in bench mode `mode` (see the module docstring)."""
    return model if mode == "eager" else compile_model(model, mode=_TORCH_COMPILE_MODE[mode])


@dataclass
class Row:
    mode: str  # eval / train
    config: str  # plain / optopass / reference
    plain_mode: str  # eager / compiled: the baseline this row is compared with
    optical_mode: str
    device: str
    dtype: str
    batch: int
    seq: int
    plain_ms: float
    optical_ms: float
    ratio: float
    tokens_per_s: float
    peak_mem_mb: float
    plain_peak_mem_mb: float
    mem_ratio: float
    timing: str = "interleaved"  # interleaved rounds, or each model's calls in a row (sequential)
    # train: MiB that the step keeps for its backward (distinct storages saved by autograd, on
    # any device); eval: NaN
    saved_mb: float = float("nan")
    plain_saved_mb: float = float("nan")
    saved_ratio: float = float("nan")
    # seconds from the model's compile to its first timed call (compiling, warm-up, memory probes):
    # the optical row's and its plain baseline's, reported beside the times, never inside them
    ready_s: float = float("nan")
    plain_ready_s: float = float("nan")


def build_model(shape: str, dtype: torch.dtype, device: str):
    from transformers import RobertaConfig, RobertaForSequenceClassification

    hidden, layers, heads, inter, vocab = SHAPES[shape]
    cfg = RobertaConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                        intermediate_size=inter, vocab_size=vocab, max_position_embeddings=514, num_labels=2,
                        attn_implementation="sdpa")
    torch.manual_seed(0)
    return RobertaForSequenceClassification(cfg).to(device=device, dtype=dtype)


def make_batch(model, batch: int, seq: int, device: str) -> dict:
    ids = torch.randint(5, model.config.vocab_size, (batch, seq), device=device)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.randint(0, 2, (batch,), device=device)}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_call(fn: Callable[[], object], device: str) -> float:
    """Milliseconds of one call of `fn`: CUDA events around it on a GPU, perf_counter on a CPU."""
    if device.startswith("cuda"):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end)
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def _eval_step(model, batch):
    inputs = {k: v for k, v in batch.items() if k != "labels"}

    def step():
        with torch.no_grad():
            return model(**inputs)

    return step


def _train_step(model, batch):
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)

    def step():
        out = model(**batch)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


@dataclass
class _Timed:
    """One model's step, warmed up, with its peak memory and the times of its timed calls."""

    config: str
    run_mode: str
    step: Callable[[], object]
    peak: float
    saved: float = float("nan")
    samples: list = field(default_factory=list)
    ready_s: float = float("nan")  # seconds to compile, warm up and probe memory


def saved_for_backward_mb(step: Callable[[], object]) -> float:
    """MiB of the distinct storages that autograd keeps for the backward during one call of
    `step` (a training step: forward and backward), compiled graphs included (their saved
    activations pass through the same hooks). Counted as the backward takes them back: a
    tensor saved for a graph that the forward then drops (an intermediate that needs no
    gradient) is not kept, and its memory, freed, may come back at another's address."""
    sizes: dict[tuple, int] = {}

    def unpack(t):
        sizes.update([_storage_entry(t)])
        return t

    with torch.autograd.graph.saved_tensors_hooks(lambda t: t, unpack):
        step()
    return sum(sizes.values()) / 2**20


def _storage_entry(t: torch.Tensor) -> tuple[tuple, int]:
    """(key, bytes) of `t`'s storage; tensors sharing a storage share the key."""
    storage = t.untyped_storage()
    return (t.device, storage.data_ptr()), storage.nbytes()


def resident_bytes(module: torch.nn.Module) -> int:
    """Bytes of the distinct storages of `module`'s parameters and buffers."""
    return sum(dict(_storage_entry(t) for t in (*module.parameters(), *module.buffers())).values())


def own_peak_mib(max_allocated: int, baseline: int, model: torch.nn.Module) -> float:
    """MiB at the peak of one model's step counting only that model's memory: the allocator's
    peak `max_allocated`, less `baseline`, what was allocated before the model's warm-up began
    (the rows prepared before it: their optimizer state, CUDA-graph pools, frozen constants),
    plus the model's own parameters and buffers (allocated before it, often shared with the
    plain model, but needed by it). Without this, a row's peak counted the plain rows' memory
    too: the plain training row's AdamW state alone is twice the weights."""
    return (max_allocated - baseline + resident_bytes(model)) / 2**20


def _prepare(config: str, run_mode: str, model, batch, mode: str, device: str, warmup: int,
             setup: Callable[[], None] | None = None) -> _Timed:
    """Warm `model`'s step up (compiling it: eval graphs with Inductor's freezing) and take the
    peak memory of one more step. `setup`, when given, runs before each step (a setting of the
    model that must hold for this row's calls, interleaved with other rows' calls)."""
    import torch._inductor.config as inductor_config

    on_gpu = device.startswith("cuda")
    baseline = torch.cuda.memory_allocated() if on_gpu else 0
    model.train(mode == "train")
    step = (_train_step if mode == "train" else _eval_step)(model, batch)
    if setup is not None:
        bare = step

        def step():
            setup()
            return bare()

    with inductor_config.patch(freezing=mode == "eval"):  # read when the first warm-up call compiles
        for _ in range(max(warmup, 1)):
            step()
    _sync(device)
    peak = float("nan")
    if on_gpu:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        peak = own_peak_mib(torch.cuda.max_memory_allocated(), baseline, model)
    saved = saved_for_backward_mb(step) if mode == "train" else float("nan")
    return _Timed(config, run_mode, step, peak, saved)


TIMINGS = ("interleaved", "sequential")


def default_timings(on_gpu: bool) -> tuple[str, ...]:
    """Both timings on a GPU, where interleaving was measured to slow the launch-bound plain
    modes on some machines (plain compiled 5.4 ms interleaved, 3.0 ms in a row: docs/speed.md):
    each row set is then there to read. Interleaved on a CPU, whose speed drifts from minute to
    minute."""
    return ("sequential", "interleaved") if on_gpu else ("interleaved",)


def _time_sequential(entries: list[_Timed], device: str, iters: int) -> None:
    """`iters` calls of each entry in a row, after one untimed call: a user's loop over one
    model, with its code and data warm in the caches (launch-bound modes are faster so)."""
    for entry in entries:
        entry.step()
        for _ in range(iters):
            entry.samples.append(time_call(entry.step, device))


def _time_interleaved(entries: list[_Timed], device: str, iters: int) -> None:
    """`iters` rounds, each timing one call of every entry in turn: a drift of the machine's
    speed (clocks, other load) then reaches every row alike, not the rows timed last."""
    for _ in range(iters):
        for entry in entries:
            entry.samples.append(time_call(entry.step, device))


def optical_model(plain, cfg, batch, device: str):
    """The optopass model of `plain`, calibrated on the batch (ranges frozen)."""
    import optopass

    gm = optopass.apply_optical_pass(plain, cfg)
    optopass.calibrate(gm, [{k: v for k, v in batch.items() if k != "labels"}])
    return gm


def reference_model(plain):
    """The reference's layers: mase-triton OpticalTransformerLinear for every nn.Linear."""
    from mase_triton.optical_compute.layers import OpticalTransformerLinear

    ref = copy.deepcopy(plain)
    for name, module in list(ref.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, torch.nn.Linear):
                setattr(module, child_name, OpticalTransformerLinear.from_linear(child, q_quantiles=None))
    return ref


def run_bench(device: str | None = None, shape: str | None = None, batch: int | None = None, seq: int = 128,
              dtype: str | None = None, modes=("eval", "train"), compile_modes=None, warmup: int | None = None, iters: int | None = None,
              with_reference: bool = True, cfg=None, log=None, sizes=None,
              attention_kernels=("auto",), optical_modes=None, timings=None, profile_dir=None) -> list[Row]:
    """Time plain vs optical models; see the module docstring. Returns one Row per measurement.

    `warmup` and `iters` default to 5 and 20 on a GPU, 2 and 10 on a CPU (a CPU run then takes
    under a minute). `sizes` is a list of (batch, seq) pairs (default: the one of `batch` and `seq`).
    `log`, when given, is called with a line per measurement as soon as it is taken.
    `attention_kernels`: OTAttention settings to time: ``auto``, ``unfused`` (the composed ops;
    rows labelled ``optopass/unfused-attn``), ``keep`` (the composed ops keeping their
    intermediates for the backward, ``recompute`` off; ``optopass/keep-attn``).
    `compile_modes`: the plain model's modes; `optical_modes` the optical model's (default: the
    same, but only ``cudagraphs`` when a GPU run times that mode).
    `timings`: ``interleaved`` and/or ``sequential`` (see the module docstring); both time the
    same compiled models, one after the other. Default: see ``default_timings``.
    `profile_dir`: a folder (created) that gets one ``torch.profiler`` table per timed model and
    mode after its rows (``write_profile``).
    """
    log = log or (lambda line: None)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    on_gpu = device.startswith("cuda")
    warmup = warmup if warmup is not None else (5 if on_gpu else 2)
    iters = iters if iters is not None else (20 if on_gpu else 10)
    shape = shape or ("roberta-base" if on_gpu else "small")
    batch = batch or (32 if on_gpu else 8)
    sizes = list(sizes or [(batch, seq)])
    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype or ("bf16" if on_gpu else "fp32")]
    timings = tuple(timings or default_timings(on_gpu))
    if compile_modes is None:  # compiling on a CPU takes minutes: opt-in there (--compile)
        compile_modes = list(COMPILE_MODES) if on_gpu else ["eager"]
    if optical_modes is None:
        optical_modes = ["cudagraphs"] if on_gpu and "cudagraphs" in compile_modes else compile_modes
    if not on_gpu:
        compile_modes = [m for m in compile_modes if m not in ("cudagraphs", "autotune")]
        optical_modes = [m for m in optical_modes if m not in ("cudagraphs", "autotune")]
    plain = build_model(shape, torch_dtype, device)
    rows: list[Row] = []
    for batch, seq in sizes:
        torch._dynamo.reset()  # each size compiles for its own static shape
        data = make_batch(plain, batch, seq, device)
        for mode in modes:
            rows += _bench_mode(plain, data, mode, device, torch_dtype, compile_modes, warmup, iters,
                                with_reference, cfg, log, attention_kernels, optical_modes, timings, profile_dir)
    return rows


def _bench_mode(plain, data, mode, device, torch_dtype, compile_modes, warmup, iters, with_reference, cfg, log,
                attention_kernels=("auto",), optical_modes=None, timings=("interleaved",), profile_dir=None):
    from ..passes.optical.optical_transformer import OTAttention

    batch, seq = data["input_ids"].shape
    tag = f"{mode} {batch}x{seq}"

    def attempt(config, run_mode, make, setup=None):
        start = time.perf_counter()
        try:
            entry = _prepare(config, run_mode, make(), data, mode, device, warmup, setup)
        except Exception as err:  # a compiler failure costs this row, not the whole benchmark
            log(f"{tag} {config} {run_mode}: not measured ({type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''})")
            return
        entry.ready_s = time.perf_counter() - start
        entries.append(entry)
        log(f"{tag} {config} {run_mode}: ready after {entry.ready_s:.1f} s (compiling, warm-up)")

    entries: list[_Timed] = []
    for plain_mode in compile_modes:
        attempt("plain", plain_mode, lambda: compiled(plain, plain_mode))
    gm = optical_model(plain, cfg, data, device)
    attentions = [m for m in gm.modules() if isinstance(m, OTAttention)]
    for kernel in attention_kernels:
        def use_kernel(kernel=kernel):
            for attn in attentions:
                attn.kernel = "auto" if kernel == "auto" else "unfused"
                attn.recompute = kernel != "keep"

        for optical_mode in optical_modes or compile_modes:
            attempt("optopass" if kernel == "auto" else f"optopass/{kernel}-attn", optical_mode,
                    lambda optical_mode=optical_mode: compiled(gm, optical_mode), use_kernel)
    if with_reference and mode == "eval":
        def make_reference():
            ref = reference_model(plain)
            ref(**{k: v for k, v in data.items() if k != "labels"})  # initialise its statistics
            return ref

        attempt("reference", "eager", make_reference)
    rows = []
    for timing in timings:
        for entry in entries:
            entry.samples.clear()
        (_time_sequential if timing == "sequential" else _time_interleaved)(entries, device, iters)
        rows += _rows(entries, mode, device, torch_dtype, batch, seq, timing, f"{tag} {timing}" if len(timings) > 1 else tag, log)
    if profile_dir is not None:
        for entry in entries:
            name = f"{mode}_{batch}x{seq}_{entry.config}_{entry.run_mode}".replace("/", "-")
            path = write_profile(entry.step, device, Path(profile_dir) / f"{name}.txt",
                                 f"{tag} {entry.config} {entry.run_mode}, {str(torch_dtype).replace('torch.', '')}")
            log(f"{tag} {entry.config} {entry.run_mode}: profile in {path}")
    return rows


PROFILE_CALLS = 3
PROFILE_ROWS = 40


def write_profile(step: Callable[[], object], device: str, path: Path, title: str, calls: int = PROFILE_CALLS) -> Path:
    """Runs `step` `calls` times under ``torch.profiler`` (memory included) and writes two tables
    to `path`: the ops and kernels by their own time on the device (the CPU's time on a CPU),
    then by the memory they allocate themselves, each op's total over the calls."""
    from torch.profiler import ProfilerActivity, profile

    from .io import write_file_atomically

    on_gpu = device.startswith("cuda")
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if on_gpu else [])]
    _sync(device)
    with profile(activities=activities, profile_memory=True) as prof:
        for _ in range(calls):
            step()
        _sync(device)
    where = "device" if on_gpu else "cpu"
    averages = prof.key_averages()
    text = (f"# optopass bench profile: {title}, {device}, {calls} call{'s' if calls != 1 else ''} (totals over the calls)\n\n"
            f"## by self {where} time\n\n{averages.table(sort_by=f'self_{where}_time_total', row_limit=PROFILE_ROWS)}\n"
            f"## by self {where} memory allocated\n\n"
            f"{averages.table(sort_by=f'self_{where}_memory_usage', row_limit=PROFILE_ROWS)}\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_file_atomically(path, lambda tmp: tmp.write_text(text))


def _rows(entries, mode, device, torch_dtype, batch, seq, timing, tag, log) -> list[Row]:
    """One Row per optical/reference entry and plain baseline, from the entries' samples."""
    baselines = {e.run_mode: e for e in entries if e.config == "plain"}
    rows = []
    for entry in entries:
        ms = statistics.median(entry.samples)
        saved = f", saved for backward {entry.saved:.1f} MiB" if entry.saved == entry.saved else ""
        log(f"{tag} {entry.config} {entry.run_mode}: {ms:.3f} ms, peak {entry.peak:.0f} MB{saved}")
        if entry.config == "plain":
            continue
        for plain_mode, base in baselines.items():
            base_ms, base_peak, peak = statistics.median(base.samples), base.peak, entry.peak
            rows.append(Row(mode, entry.config, plain_mode, entry.run_mode, device, str(torch_dtype).replace("torch.", ""),
                            batch, seq, round(base_ms, 3), round(ms, 3), round(ms / base_ms, 3),
                            round(batch * seq / ms * 1e3, 1), round(peak, 1), round(base_peak, 1),
                            round(peak / base_peak, 3) if base_peak == base_peak and base_peak > 0 else float("nan"),
                            timing, round(entry.saved, 1), round(base.saved, 1),
                            round(entry.saved / base.saved, 3) if base.saved == base.saved and base.saved > 0
                            else float("nan"), round(entry.ready_s, 1), round(base.ready_s, 1)))
    return rows


def format_rows(rows: list[Row]) -> str:
    head = (f"{'mode':<6}{'config':<24}{'optical':<11}{'vs plain':<11}{'plain ms':>10}{'optical ms':>12}{'ratio':>8}"
            f"{'tokens/s':>12}{'peak MB':>10}{'mem ratio':>10}{'saved MiB':>11}{'saved ratio':>12}")
    lines = [f"device {rows[0].device}, {rows[0].dtype}" if rows else "no rows"]
    for i, r in enumerate(rows):
        if i == 0 or (r.batch, r.seq, r.timing) != (rows[i - 1].batch, rows[i - 1].seq, rows[i - 1].timing):
            lines += [f"batch {r.batch} x {r.seq}, {r.timing} timing", head]
        lines.append(f"{r.mode:<6}{r.config:<24}{r.optical_mode:<11}{r.plain_mode:<11}{r.plain_ms:>10.2f}{r.optical_ms:>12.2f}"
                     f"{r.ratio:>8.2f}{r.tokens_per_s:>12.0f}{r.peak_mem_mb:>10.0f}{r.mem_ratio:>10.2f}"
                     f"{r.saved_mb:>11.1f}{r.saved_ratio:>12.2f}")
    return "\n".join(lines)


def add_subcommand(sub) -> None:
    p = sub.add_parser("bench", help="time the optical model against the plain one (eval and train)",
                       description="Benchmark plain vs optical RoBERTa-shaped models (random weights) in one run.")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda when available")
    p.add_argument("--shape", choices=sorted(SHAPES), default=None, help="default: roberta-base on GPU, small on CPU")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--seq", type=int, default=128, help="sequence length (glue: the longest tokenized input; default 128)")
    p.add_argument("--sizes", nargs="+", default=None, metavar="BxL",
                   help="several batch x sequence sizes in one run, e.g. 32x128 8x512 128x128 (overrides --batch/--seq)")
    compiling = p.add_mutually_exclusive_group()
    compiling.add_argument("--compile", action="store_true",
                           help="torch.compile rows on the CPU too (default on the GPU; minutes of compiling on a CPU)")
    compiling.add_argument("--compile-modes", nargs="+", choices=[*COMPILE_MODES, "autotune"], default=None,
                           help=f"the plain model's modes, and the optical model's unless --optical-modes (default on the GPU: {' '.join(COMPILE_MODES)})")
    compiling.add_argument("--no-compile", action="store_true", help="eager rows only (no torch.compile)")
    p.add_argument("--optical-modes", nargs="+", choices=[*COMPILE_MODES, "autotune"], default=None,
                   help="the optical model's modes (default: those of the plain model; on the GPU only cudagraphs, "
                        "the recommended mode: each optical mode costs minutes of compiling)")
    p.add_argument("--dtype", choices=DTYPES, default=None, help="default: bf16 on GPU, fp32 on CPU")
    p.add_argument("--modes", nargs="+", choices=["eval", "train", "glue"], default=["eval", "train"],
                   help="eval / train: one forward / training step on random tokens; glue: evaluate_glue on a GLUE "
                        "dev set and --glue-steps Trainer steps, plain and optical in the same mode (compiled on a "
                        "GPU unless --no-compile; --compile adds compiled rows on the CPU), compile time apart")
    p.add_argument("--iters", type=int, default=None, help="timed rounds (default: 20 on a GPU, 10 on a CPU)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up calls per model (default: 5 on a GPU, 2 on a CPU)")
    p.add_argument("--no-reference", action="store_true", help="skip the reference implementation's layers")
    p.add_argument("--attention-kernels", nargs="+", choices=["auto", "unfused", "keep"], default=["auto"],
                   help="optical attention as the fused kernel where it applies (auto), as composed ops (unfused), "
                        "and/or as composed ops that keep their scores and probabilities for the backward instead of "
                        "recomputing them (keep: OTAttention.recompute off)")
    p.add_argument("--timing", nargs="+", choices=TIMINGS, default=None,
                   help="interleaved rounds (robust to a drifting machine) and/or each model's calls in a row "
                        "(default: both on a GPU, interleaved on a CPU)")
    p.add_argument("--profile", default=None, metavar="DIR",
                   help="after the rows, write a torch.profiler table of each timed model's eval or training step "
                        f"({PROFILE_CALLS} calls: ops and kernels by their own device time and by the memory they "
                        "allocate) to DIR/<mode>_<BxL>_<model>_<mode>.txt; --modes glue: of one more evaluation pass "
                        "per model, DIR/glue_eval_<glue model>_<plain|optical>_<mode>.txt")
    p.add_argument("--triton-compile-log", default=None, metavar="FILE",
                   help="write a line per Triton kernel that Inductor compiles (seconds, kernel, block sizes, source) "
                        "to FILE; Inductor then compiles in this process, one kernel after another")
    glue = p.add_argument_group("glue (--modes glue)")
    glue.add_argument("--glue-models", nargs="+", choices=GLUE_MODELS, default=list(DEFAULT_GLUE_MODELS),
                      help="the bundled MiniLM and/or RoBERTa shapes with random weights (default: minilm roberta-base)")
    glue.add_argument("--glue-dir", default=None,
                      help="classic glue_data folder (default: $OPTOPASS_GLUE_DIR or the shared folder)")
    glue.add_argument("--task", default="sst2", help="GLUE task (default sst2)")
    glue.add_argument("--max-eval-samples", type=int, default=None, help="dev rows scored (default: all)")
    glue.add_argument("--glue-steps", type=int, default=50, help="Trainer steps timed per model (default 50)")
    glue.add_argument("--glue-batch-size", type=int, default=32,
                      help="training batch (default 32); evaluation batches are twice as large")
    glue.add_argument("--glue-eval-passes", type=int, default=5,
                      help="passes over the dev set per evaluation row, with the same compiled model; the row's rate "
                           "is the passes' median (default 5: one pass of SST-2 takes about 20 ms on a GPU)")
    add_model_options(p, model=False)
    add_output_options(p)
    p.set_defaults(func=_run)


def _run(args) -> int:
    from .errors import ConfigError

    if args.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available (allowed here: cpu)")
    check_values({"batch": args.batch, "seq": args.seq, "iters": args.iters, "warmup": args.warmup,
                  "max_eval_samples": args.max_eval_samples, "glue_steps": args.glue_steps,
                  "glue_batch_size": args.glue_batch_size, "glue_eval_passes": args.glue_eval_passes},
                 {**dict.fromkeys(("batch", "seq", "iters", "max_eval_samples", "glue_steps", "glue_batch_size",
                                   "glue_eval_passes"),
                                  integer(1)), "warmup": integer(0)},
                 as_flags=True, unset_passes=True)
    if "glue" in args.modes:
        from .glue.tasks import get_task

        get_task(args.task)  # an unknown task is one line before anything loads
    sizes = None
    if args.sizes:
        sizes = []
        for text in args.sizes:
            parts = text.lower().split("x")
            if len(parts) != 2 or not all(p.isdigit() and int(p) >= 1 for p in parts):
                raise ConfigError(f"--sizes: {text!r} is not BATCHxSEQ with both >= 1 (e.g. 32x128)")
            sizes.append((int(parts[0]), int(parts[1])))
    if args.profile is not None:
        from .io import check_output_folder

        args.profile = check_output_folder(args.profile, "--profile")
    if args.triton_compile_log is not None:
        args.triton_compile_log = _check_log_file(args.triton_compile_log, "--triton-compile-log")
    with command_scope(args), triton_compile_log(args.triton_compile_log):
        rows = _bench_from_args(args, sizes) if set(args.modes) - {"glue"} else []
        glue_rows = _glue_bench_from_args(args) if "glue" in args.modes else []
    tables = ([format_rows(rows)] if rows else []) + ([format_glue_rows(glue_rows)] if glue_rows else [])
    print_result(args, [asdict(r) for r in [*rows, *glue_rows]], lambda _: "\n\n".join(tables))
    return 0


def _check_log_file(path: str, name: str) -> Path:
    """`path` as a Path, when it can be written as a file: not a folder, no file in the way of its
    folder."""
    from .errors import OutputError
    from .io import check_output_folder

    path = Path(path).expanduser()
    if path.is_dir():
        raise OutputError(f"{name}: {path} is a folder; give a file to create or replace")
    check_output_folder(path.parent, name)
    return path


def _glue_bench_from_args(args) -> list[GlueRow]:
    if args.no_compile:
        run_modes = ["eager"]
    elif args.compile:
        run_modes = ["eager", "compiled"]
    elif args.compile_modes:
        run_modes = list(dict.fromkeys("eager" if m == "eager" else "compiled" for m in args.compile_modes))
    else:
        run_modes = None  # compiled on a GPU, eager on the CPU
    return run_glue_bench(device=args.device, dtype=args.dtype, models=tuple(args.glue_models), run_modes=run_modes,
                          task=args.task, glue_dir=args.glue_dir, max_eval_samples=args.max_eval_samples,
                          steps=args.glue_steps, batch_size=args.glue_batch_size, max_seq_length=args.seq,
                          cfg=args.cfg, log=lambda line: print(line, file=sys.stderr, flush=True),
                          eval_passes=args.glue_eval_passes, profile_dir=args.profile)


def _bench_from_args(args, sizes) -> list[Row]:
    return run_bench(args.device, args.shape, args.batch, args.seq, args.dtype,
                     tuple(m for m in args.modes if m != "glue"),
                     compile_modes=["eager"] if args.no_compile else (["eager", "compiled"] if args.compile else args.compile_modes), warmup=args.warmup, iters=args.iters,
                     with_reference=not args.no_reference, cfg=args.cfg, sizes=sizes,
                     attention_kernels=tuple(args.attention_kernels), optical_modes=args.optical_modes,
                     timings=tuple(dict.fromkeys(args.timing)) if args.timing else None, profile_dir=args.profile,
                     log=lambda line: print(line, file=sys.stderr, flush=True))
