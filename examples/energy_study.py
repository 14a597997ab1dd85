"""How many photons per multiply-accumulate does an optical encoder need, and what does an
inference then cost? GLUE score against photons per MAC, and the op-level scaling law.

Two studies, each writing its CSV, table and figure into ``--out``:

**GLUE** (``--tasks``, default SST-2, MRPC, STS-B; ``--seeds``, default 1 2 3). For every task
and seed:

1. fine-tune the pretrained model (``--model``, default the bundled MiniLM-L6) on the task;
2. transform it with ``--cfg`` and calibrate the converters' ranges on the noiseless signal
   (``--calibrate-batches`` training batches); score it without shot noise (``noiseless``);
3. post-training: set ``q_photons_per_mac`` on every optical site to each level of
   ``--photons`` (log-spaced, from well under one photon to about a thousand) and score it;
4. the threshold: per task, the fewest photons per MAC from which every higher level keeps
   the seed-mean score within ``--tolerance`` (1%) of the noiseless optical score;
5. noise-aware fine-tuning at three levels around the threshold (the threshold and the two
   levels below it): the optical model fine-tuned with shot noise on (straight-through
   gradients, ranges frozen), then scored at its level;
6. the energy per inference at the threshold (``optopass.energy``, ``--hardware``), against
   the digital reference processor.

**Scaling** (``--widths``, 64 to 4096): the photons per MAC at which one optical matmul of
width d reaches ``--target-snr-db`` output SNR (signal power over shot-noise power), for
non-negative operands (intensities: the terms of a dot product add up), for zero-mean
signed operands on differential rails (their terms cancel) and for the same operands with
offset encoding over the range [-4, 4] (``q_signed_encoding: offset``), plotted against 1/d.

Outputs: ``energy_glue.csv`` (long: ``stage,task,seed,photons_per_mac,metric,score``),
``energy_tables.md``, ``energy_glue.png``, ``energy_scaling.csv``, ``energy_scaling.png``,
``energy_run.json`` (arguments and seconds per stage).

Examples::

    # the study behind results/energy_minilm/ (one H200; --workers runs units side by side)
    python examples/energy_study.py --glue-dir ../shared/glue --bf16 --workers 3

    # the op-level scaling law alone (CPU, a minute)
    python examples/energy_study.py --scaling-only

    # the tables and figures again from a run's CSV and JSON files
    python examples/energy_study.py --render results/energy_minilm --out results/energy_minilm

User errors print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from optopass.tools.energy_cmd import format_si
from optopass.tools.errors import ConfigError, OptopassError
from optopass.tools.io import write_file_atomically
from optopass.tools.glue.tasks import GLUE_TASKS, get_task

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CFG = REPO_ROOT / "transform_cfg.yaml"
DEFAULT_PHOTONS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)
DEFAULT_WIDTHS = (64, 128, 256, 512, 1024, 2048, 4096)
GLUE_HEADER = ("stage", "task", "seed", "photons_per_mac", "metric", "score")
SCALING_HEADER = ("operands", "width", "photons_per_mac", "snr_db")
EXIT_USER_ERROR = 2


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="energy_study.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=["sst2", "mrpc", "stsb"], choices=list(GLUE_TASKS))
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3], help="fine-tuning seeds of the originals")
    p.add_argument("--model", default="minilm", help="pretrained model: 'minilm', a hub name, or a folder")
    p.add_argument("--glue-dir", default=None, help="glue_data folder (default: ../shared/glue or the hub)")
    p.add_argument("--cfg", default=str(DEFAULT_CFG), help="optical config (its photons keys are set per level)")
    p.add_argument("--hardware", default=None, help="hardware YAML for the energy account (default: built-in)")
    p.add_argument("--out", default="runs/energy_study", help="output folder")
    p.add_argument("--photons", nargs="+", type=float, default=list(DEFAULT_PHOTONS), help="photons per MAC levels")
    p.add_argument("--tolerance", type=float, default=0.01, help="relative score loss allowed at the threshold")
    p.add_argument("--epochs", type=float, default=3.0, help="epochs of the originals' fine-tuning")
    p.add_argument("--max-train-samples", type=int, default=None, help="cap of training rows per task (originals)")
    p.add_argument("--learning-rate", type=float, default=5e-5, help="originals' learning rate")
    p.add_argument("--ft-epochs", type=float, default=1.0, help="epochs of the noise-aware fine-tuning")
    p.add_argument("--ft-max-train-samples", type=int, default=4000, help="training rows of the noise-aware fine-tuning")
    p.add_argument("--ft-learning-rate", type=float, default=1e-5, help="noise-aware fine-tuning learning rate")
    p.add_argument("--max-eval-samples", type=int, default=None, help="cap of validation rows per task")
    p.add_argument("--calibrate-batches", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=32, help="training batch size (evaluation: 2x)")
    p.add_argument("--bf16", action="store_true", help="bfloat16 mixed precision")
    p.add_argument("--workers", type=int, default=1, help="(task, seed) units run side by side (one GPU is shared)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False,
                   help="train and evaluate compiled (off by default: every light level changes the sites, and a "
                        "compiled model would compile again for each)")
    p.add_argument("--seq-len", type=int, default=128, help="sequence length of the energy account")
    p.add_argument("--energy-batch", type=int, default=32, help="sequences per forward pass in the energy account")
    p.add_argument("--widths", nargs="+", type=int, default=list(DEFAULT_WIDTHS), help="scaling-law widths d")
    p.add_argument("--target-snr-db", type=float, default=20.0, help="scaling law: output SNR to reach")
    p.add_argument("--scaling-only", action="store_true", help="only the op-level scaling law")
    p.add_argument("--render", default=None, metavar="DIR",
                   help="write the tables and figures again from a run's CSV and JSON files in DIR (into --out)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def check_args(args) -> None:
    if any(not p > 0 or not math.isfinite(p) for p in args.photons):
        raise ConfigError(f"--photons: every level must be a number > 0, got {args.photons}")
    if not 0 < args.tolerance < 1:
        raise ConfigError(f"--tolerance: must be in (0, 1), got {args.tolerance}")
    if any(w < 2 for w in args.widths):
        raise ConfigError(f"--widths: every width must be >= 2, got {args.widths}")
    for name in ("workers", "calibrate_batches", "batch_size", "seq_len", "energy_batch", "ft_max_train_samples"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')}: must be >= 1, got {getattr(args, name)}")
    args.photons = sorted(set(args.photons))


# ------------------------------------------------------------------------------------------------
# The op-level scaling law


SERIES = ("non-negative", "signed", "signed-offset")  # operands (and their encoding) of the scaling law
OFFSET_CLIP = 4.0  # signed-offset: N(0, 1) operands in the range [-4, 4], so each is shifted by 4


def snr_db(width: int, photons_per_mac: float, operands: str, seed: int = 0, rows: int = 256, cols: int = 128) -> float:
    """Output SNR (signal power over shot-noise power, dB) of one optical matmul of width d:
    ``non-negative`` U[0, 1) operands, or ``signed`` N(0, 1) ones, on differential rails, or
    ``signed-offset`` N(0, 1) ones with offset encoding over the range [-4, 4]."""
    from optopass.passes.optical import quant

    gen = torch.Generator().manual_seed(seed)
    if operands == "non-negative":
        x, w = torch.rand(rows, width, generator=gen), torch.rand(cols, width, generator=gen)
    else:
        x, w = torch.randn(rows, width, generator=gen), torch.randn(cols, width, generator=gen)
    y = x @ w.T
    offset = operands == "signed-offset"
    if offset:
        clip = torch.tensor([-OFFSET_CLIP, OFFSET_CLIP])
        light = quant.offset_light(y, x, w.T, clip, clip)
    else:
        light = x.abs() @ w.abs().T
    s = quant.photons_per_unit(light, photons_per_mac, width)
    noisy = quant.shot_noise(y, light, s, None, torch.tensor(seed + 11), torch.tensor(width), offset)
    signal, noise = y.double().square().mean(), (noisy.double() - y.double()).square().mean()
    return 10 * math.log10(signal.item() / noise.item())


def photons_for_snr(width: int, operands: str, target_db: float, grid: list[float]) -> float:
    """The photons per MAC where the measured SNR crosses `target_db` (log-linear interpolation
    between the two grid levels around it)."""
    points = [(p, snr_db(width, p, operands)) for p in grid]
    for (p0, s0), (p1, s1) in zip(points, points[1:]):
        if s0 <= target_db <= s1:
            t = (target_db - s0) / (s1 - s0) if s1 != s0 else 0.0
            return math.exp(math.log(p0) + t * (math.log(p1) - math.log(p0)))
    return math.nan


def scaling_study(args) -> list[list]:
    grid = [10 ** (e / 4) for e in range(-20, 21)]  # 1e-5 .. 1e5 photons per MAC
    rows = []
    for operands in SERIES:
        for width in args.widths:
            needed = photons_for_snr(width, operands, args.target_snr_db, grid)
            rows.append([operands, width, needed, args.target_snr_db])
    return rows


def fit_slope(rows: list[list], operands: str) -> float:
    """Least-squares slope of log(photons per MAC) against log(1/d)."""
    pts = [(math.log(1 / r[1]), math.log(r[2])) for r in rows if r[0] == operands and math.isfinite(r[2])]
    mx, my = statistics.fmean(p[0] for p in pts), statistics.fmean(p[1] for p in pts)
    return sum((a - mx) * (b - my) for a, b in pts) / sum((a - mx) ** 2 for a, _ in pts)


# ------------------------------------------------------------------------------------------------
# The GLUE study


def set_photons(gm, photons: float | None) -> None:
    """Every Optical Transformer site of `gm` at `photons` per MAC (None: no shot noise)."""
    from optopass.passes.optical.sites import optical_sites

    for _, site in optical_sites(gm):
        if hasattr(site, "photons_per_mac"):
            site.photons_per_mac = photons


def headline(task: str, metrics: dict) -> tuple[str, float]:
    name = get_task(task).headline_metric
    return name, float(metrics[name])


def unit_ptq(args, task: str, seed: int) -> dict:
    """Steps 1-3 for one (task, seed): the original, the noiseless optical model, every level."""
    from optopass.tools.glue import pipeline

    started = time.time()
    folder = Path(args.out) / "models" / task / f"seed{seed}"
    progress = not args.no_progress
    train = dict(num_train_epochs=args.epochs, max_train_samples=args.max_train_samples, bf16=args.bf16,
                 per_device_train_batch_size=args.batch_size)
    original = pipeline.train_original(task, args.model, glue_dir=args.glue_dir, output_dir=folder / "original",
                                       learning_rate=args.learning_rate, seed=seed, eval_batch_size=2 * args.batch_size,
                                       max_eval_samples=args.max_eval_samples, dtype=_dtype(args),
                                       progress=progress, compile=args.compile, **train)
    metric, score = headline(task, original.metrics)
    rows = [["original", task, seed, "", metric, score]]
    gm, tokenizer = pipeline.transform(original.model, task, args.cfg, args.calibrate_batches,
                                       tokenizer=original.tokenizer, glue_dir=args.glue_dir, seed=seed)
    for photons in [None, *args.photons]:
        set_photons(gm, photons)
        metrics, _ = pipeline.score(gm, task, tokenizer, glue_dir=args.glue_dir, batch_size=2 * args.batch_size,
                                    max_eval_samples=args.max_eval_samples, dtype=_dtype(args), progress=False,
                                    compile=args.compile)
        stage = "noiseless" if photons is None else "ptq"
        rows.append([stage, task, seed, "" if photons is None else photons, metric, headline(task, metrics)[1]])
    return {"rows": rows, "seconds": time.time() - started}


def unit_ft(args, task: str, seed: int, photons: float) -> dict:
    """Step 5 for one (task, seed, level): noise-aware fine-tuning of the optical model."""
    from optopass.tools.glue import pipeline

    started = time.time()
    folder = Path(args.out) / "models" / task / f"seed{seed}"
    gm, tokenizer = pipeline.transform(str(folder / "original"), task, args.cfg, args.calibrate_batches,
                                       glue_dir=args.glue_dir, seed=seed)
    set_photons(gm, photons)
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        result = pipeline.optical_finetune(gm, task, tokenizer=tokenizer, glue_dir=args.glue_dir, output_dir=scratch,
                                           learning_rate=args.ft_learning_rate, seed=seed,
                                           eval_batch_size=2 * args.batch_size, max_eval_samples=args.max_eval_samples,
                                           dtype=_dtype(args), progress=not args.no_progress, compile=args.compile,
                                           num_train_epochs=args.ft_epochs,
                                           max_train_samples=args.ft_max_train_samples, bf16=args.bf16,
                                           per_device_train_batch_size=args.batch_size)
    metric, score = headline(task, result.metrics)
    return {"rows": [["noise_aware_ft", task, seed, photons, metric, score]], "seconds": time.time() - started}


def _dtype(args) -> str | None:
    return "bf16" if args.bf16 else None


def run_units(fn, args, units: list[tuple]) -> list[dict]:
    if args.workers == 1 or len(units) == 1:
        return [fn(args, *unit) for unit in units]
    import multiprocessing

    with ProcessPoolExecutor(max_workers=args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(fn, args, *unit) for unit in units]
        return [f.result() for f in futures]


def seed_mean(rows: list[list], stage: str, task: str, photons) -> float:
    return statistics.fmean(r[5] for r in rows if r[0] == stage and r[1] == task and r[3] == photons)


def thresholds(rows: list[list], args) -> dict[str, float | None]:
    """Per task: the fewest photons per MAC from which every higher level keeps the seed-mean
    score within the tolerance of the noiseless optical score (None when no level does)."""
    out = {}
    for task in args.tasks:
        floor = seed_mean(rows, "noiseless", task, "") * (1 - args.tolerance)
        ok = [seed_mean(rows, "ptq", task, p) >= floor for p in args.photons]
        out[task] = None
        for i in range(len(ok) - 1, -1, -1):
            if not ok[i]:
                break
            out[task] = args.photons[i]
    return out


def ft_levels(threshold: float | None, grid: list[float]) -> list[float]:
    """The threshold and the two grid levels under it (fewer where the grid ends)."""
    if threshold is None:
        return grid[-1:]
    i = grid.index(threshold)
    return grid[max(0, i - 2):i + 1]


def energy_at(args, task: str, photons: float) -> dict:
    """The energy account (``optopass.energy``) of the task's optical model at `photons` per MAC:
    per inference, in total and against the digital reference."""
    import optopass
    from optopass.tools.glue import pipeline

    folder = Path(args.out) / "models" / task / f"seed{args.seeds[0]}" / "original"
    model, _ = pipeline.load_model(str(folder), task)
    gm = optopass.apply_optical_pass(model.eval(), optopass.load_config(args.cfg))
    set_photons(gm, photons)
    report = optopass.energy(gm, batch=args.energy_batch, seq_len=args.seq_len, hardware=args.hardware).to_dict()
    return {"photons_per_mac": photons, "batch": args.energy_batch, "seq_len": args.seq_len,
            "total_energy_j": report["totals"]["total_per_inference_j"],
            "by_category_j": report["totals"]["per_inference_j"],
            "digital_reference_energy_j": report["digital_reference"]["per_inference_j"],
            "advantage": report["digital_reference"]["advantage"]}


def glue_study(args) -> tuple[list[list], dict, dict]:
    timings = {}
    units = [(task, seed) for task in args.tasks for seed in args.seeds]
    started = time.time()
    results = run_units(unit_ptq, args, units)
    rows = [r for res in results for r in res["rows"]]
    timings["post_training"] = time.time() - started
    found = thresholds(rows, args)
    ft_units = [(task, seed, p) for task in args.tasks for p in ft_levels(found[task], args.photons) for seed in args.seeds]
    started = time.time()
    rows += [r for res in run_units(unit_ft, args, ft_units) for r in res["rows"]]
    timings["noise_aware_ft"] = time.time() - started
    energy = {task: energy_at(args, task, p) for task, p in found.items() if p is not None}
    return rows, found, {"timings": timings, "energy": energy}


# ------------------------------------------------------------------------------------------------
# Outputs


def write_csv(path: Path, header, rows) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as handle:
            out = csv.writer(handle)
            out.writerow(header)
            out.writerows(rows)

    write_file_atomically(path, write)


def _mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.fmean(values):.1f} ± {100 * std:.1f}"


def glue_tables(rows, found, extra, args) -> str:
    lines = ["## GLUE score against photons per MAC (post-training; x100, mean ± std over seeds)", ""]
    lines.append("| photons / MAC | " + " | ".join(get_task(t).name for t in args.tasks) + " |")
    lines.append("|---:|" + "---:|" * len(args.tasks))

    def cell(stage, task, photons):
        return _mean_std([r[5] for r in rows if r[0] == stage and r[1] == task and r[3] == photons])

    lines.append("| original (digital) | " + " | ".join(cell("original", t, "") for t in args.tasks) + " |")
    lines.append("| noiseless optical | " + " | ".join(cell("noiseless", t, "") for t in args.tasks) + " |")
    for p in args.photons:
        lines.append(f"| {p:g} | " + " | ".join(cell("ptq", t, p) for t in args.tasks) + " |")
    lines += ["", f"## Threshold: the fewest photons per MAC within {100 * args.tolerance:g}% of the noiseless "
              "optical score at every level above", "",
              "| task | photons / MAC | energy / inference (optical machine) | of which light | digital reference | advantage |",
              "|---|---:|---:|---:|---:|---:|"]
    for task in args.tasks:
        p = found[task]
        e = extra["energy"].get(task, {})
        total, digital = e.get("total_energy_j"), e.get("digital_reference_energy_j")
        light = e.get("by_category_j", {}).get("optical")
        lines.append(f"| {get_task(task).name} | {'none' if p is None else f'{p:g}'} | "
                     f"{_joules(total)} | {_joules(light)} | {_joules(digital)} | "
                     f"{'-' if not total or not digital else f'{digital / total:.2f}x'} |")
    lines += ["", "## Noise-aware fine-tuning (x100, mean ± std over seeds)", "",
              "| task | photons / MAC | post-training | noise-aware fine-tuned |", "|---|---:|---:|---:|"]
    for task in args.tasks:
        for p in sorted({r[3] for r in rows if r[0] == "noise_aware_ft" and r[1] == task}):
            lines.append(f"| {get_task(task).name} | {p:g} | {cell('ptq', task, p)} | {cell('noise_aware_ft', task, p)} |")
    return "\n".join(lines) + "\n"


def _joules(value) -> str:
    return "-" if value is None else format_si(value, "J")


def scaling_table(rows, args) -> str:
    lines = [f"## Photons per MAC for {args.target_snr_db:g} dB output SNR of one optical matmul", "",
             "| width d | non-negative operands | signed operands (differential rails) | signed operands (offset "
             f"encoding, range ±{OFFSET_CLIP:g}) |", "|---:|---:|---:|---:|"]
    present = [series for series in SERIES if any(r[0] == series for r in rows)]
    for width in args.widths:
        got = {r[0]: r[2] for r in rows if r[1] == width}
        lines.append(f"| {width} | " + " | ".join(f"{got[series]:.4g}" if series in got else "-" for series in SERIES)
                     + " |")
    slopes = ", ".join(f"{series} {fit_slope(rows, series):.3f}" for series in present)
    lines += ["", f"Least-squares slope of log(photons per MAC) against log(1/d): {slopes} (1 is the 1/d law)."]
    return "\n".join(lines) + "\n"


def plot_glue(rows, found, args, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(args.tasks), figsize=(4.2 * len(args.tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], args.tasks):
        means = [100 * seed_mean(rows, "ptq", task, p) for p in args.photons]
        ax.semilogx(args.photons, means, "o-", label="post-training")
        ax.axhline(100 * seed_mean(rows, "noiseless", task, ""), color="gray", ls="--", label="noiseless optical")
        ft = sorted({r[3] for r in rows if r[0] == "noise_aware_ft" and r[1] == task})
        if ft:
            ax.semilogx(ft, [100 * seed_mean(rows, "noise_aware_ft", task, p) for p in ft], "s", label="noise-aware FT")
        if found[task] is not None:
            ax.axvline(found[task], color="tab:red", lw=0.8, label="threshold")
        ax.set_title(get_task(task).name)
        ax.set_xlabel("photons per MAC")
        ax.set_ylabel(f"{get_task(task).headline_metric} x100")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    write_file_atomically(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)


def plot_scaling(rows, args, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.8))
    labels = {"non-negative": "non-negative operands", "signed": "signed operands, differential rails",
              "signed-offset": "signed operands, offset encoding"}
    for operands, marker in zip(SERIES, "os^"):
        pts = [(1 / r[1], r[2]) for r in rows if r[0] == operands]
        if pts:
            ax.loglog([p[0] for p in pts], [p[1] for p in pts], marker + "-", label=labels[operands])
    ax.set_xlabel("1 / d")
    ax.set_ylabel(f"photons per MAC for {args.target_snr_db:g} dB SNR")
    ax.legend(fontsize=8)
    fig.tight_layout()
    write_file_atomically(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)


def render(args, source: Path, out: Path) -> str:
    """Tables and figures of an earlier run from its ``energy_*.csv`` and ``energy_run.json``."""
    try:
        run = json.loads((source / "energy_run.json").read_text())
        scaling = [[r[0], int(r[1]), float(r[2]), float(r[3])] for r in _read_rows(source / "energy_scaling.csv")]
        glue = [[r[0], r[1], int(r[2]), float(r[3]) if r[3] else "", r[4], float(r[5])]
                for r in _read_rows(source / "energy_glue.csv")]
    except (OSError, ValueError, KeyError, IndexError) as err:
        raise ConfigError(f"--render: {source} does not hold a complete energy study ({err})") from None
    ran = run["args"]
    args.tasks, args.photons, args.widths = ran["tasks"], ran["photons"], ran["widths"]
    args.tolerance, args.target_snr_db = ran["tolerance"], ran["target_snr_db"]
    found = thresholds(glue, args)
    out.mkdir(parents=True, exist_ok=True)
    plot_scaling(scaling, args, out / "energy_scaling.png")
    plot_glue(glue, found, args, out / "energy_glue.png")
    return glue_tables(glue, found, {"energy": run.get("energy", {})}, args) + "\n" + scaling_table(scaling, args)


def _read_rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as handle:
        return list(csv.reader(handle))[1:]


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        check_args(args)
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out: {out} is a file; give a folder")
        if args.render:
            text = render(args, Path(args.render), out)
            write_file_atomically(out / "energy_tables.md", lambda tmp: tmp.write_text(text))
            print(text)
            return 0
        out.mkdir(parents=True, exist_ok=True)
        run = {"args": vars(args), "timings": {}}
        started = time.time()
        scaling = scaling_study(args)
        run["timings"]["scaling"] = time.time() - started
        write_csv(out / "energy_scaling.csv", SCALING_HEADER, scaling)
        plot_scaling(scaling, args, out / "energy_scaling.png")
        text = scaling_table(scaling, args)
        if not args.scaling_only:
            if args.glue_dir is None:
                from optopass.tools.glue.data import default_glue_dir

                args.glue_dir = default_glue_dir()
            rows, found, extra = glue_study(args)
            run["timings"].update(extra["timings"])
            run["thresholds"], run["energy"] = found, extra["energy"]
            write_csv(out / "energy_glue.csv", GLUE_HEADER, rows)
            plot_glue(rows, found, args, out / "energy_glue.png")
            text = glue_tables(rows, found, extra, args) + "\n" + text
        write_file_atomically(out / "energy_tables.md", lambda tmp: tmp.write_text(text))
        run_json = json.dumps(run, indent=2, default=str)
        write_file_atomically(out / "energy_run.json", lambda tmp: tmp.write_text(run_json))
    except OptopassError as err:
        print(f"energy_study.py: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    print(text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
