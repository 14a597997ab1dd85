"""Where the post-training optical transform loses accuracy, and what range estimation wins back.

Takes the task-fine-tuned originals written by ``examples/glue_eval.py`` (``<runs>/models/<task>/
seed<k>/original``) and, per task and seed, scores:

1. range-estimation variants of the default config (256 levels, LUT floor 0.02004, dither on,
   fc + attn): the reference's min/max EMA, 0.1/99.9 percentiles, the per-operand MSE clip
   search, MSE plus per-channel ``fc`` output ranges, and an attribution row without LUT floor
   and dither;
2. a ``q_levels`` sweep (16 ... 256) of one variant;
3. per-site sensitivity on one task: the score with one optical site switched back to the
   original op at a time (the gain shows which sites hurt most);
4. with ``--ft-levels-tasks``, the ``q_levels`` sweep after transform-aware fine-tuning too (the
   default recipe: ranges frozen after calibration, lr 1e-5, ``--ft-epochs`` over at most
   ``--ft-max-train-samples`` rows), on the first seed.

Writes ``ptq_variants.csv/.md``, ``qlevels_ptq.csv/.png``, ``site_sensitivity.csv/.png`` (and
``qlevels_ft.csv/.png``) into ``--out``. Example (after glue_eval.py wrote runs/glue_eval)::

    python examples/ptq_study.py --runs runs/glue_eval --glue-dir ../shared/glue --out results
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from pathlib import Path

import torch

from optopass.tools.glue import pipeline
from optopass.tools.glue.tasks import get_task

BASE = {"q_levels": 256, "q_lut_min": 0.020040, "q_quantiles": None, "q_smooth_factor": 0.9, "q_init_seed": 0, "q_bypass": False}


def _cfg(**extra) -> dict:
    return {"fc": {**BASE, **extra.get("fc", {})}, "attn": {**BASE, **extra.get("attn", {})}}


def _both(**params) -> dict:
    return _cfg(fc=params, attn=params)


VARIANTS = {
    "minmax (reference)": _both(q_range_method="statistic"),
    "percentile 0.1/99.9": _both(q_quantiles=[0.001, 0.999], q_range_method="statistic"),
    "mse": _both(q_range_method="mse"),
    "mse + fc out per-channel": _cfg(fc={"q_range_method": "mse", "q_out_granularity": "channel"}, attn={"q_range_method": "mse"}),
    "minmax, no LUT, no dither": _both(q_lut_min=None, q_dither=False, q_range_method="statistic"),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--runs", default=".", help="output folder of examples/glue_eval.py (holds models/<task>/seed<k>/original)")
    p.add_argument("--tasks", nargs="+", default=["sst2", "mrpc", "cola", "stsb", "rte"])
    p.add_argument("--seeds", nargs="+", type=int, default=[1])
    p.add_argument("--glue-dir", default=None)
    p.add_argument("--out", default="results")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--sweep-variant", default="mse", choices=list(VARIANTS))
    p.add_argument("--levels", nargs="+", type=int, default=[16, 32, 64, 128, 256])
    p.add_argument("--sensitivity-task", default="mrpc")
    p.add_argument("--sensitivity-variant", default="mse", choices=list(VARIANTS))
    p.add_argument("--calibrate-batches", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--dtype", default=None, choices=["fp32", "bf16", "fp16"])
    p.add_argument("--max-eval-samples", type=int, default=None)
    p.add_argument("--ft-levels-tasks", nargs="*", default=[], help="tasks of the fine-tuning q_levels sweep")
    p.add_argument("--ft-max-train-samples", type=int, default=2000)
    p.add_argument("--ft-epochs", type=float, default=1.0)
    p.add_argument("--sensitivity-method", default="bypass", choices=["bypass", "sqnr"],
                   help="bypass: the task score with one site switched back to the original op at a time (one "
                        "evaluation per site); sqnr: each site's output SQNR against the exact op (optopass.tools."
                        "report.site_sqnr) for the reference's min/max ranges and for --sensitivity-variant, on "
                        "--sqnr-batches training batches (cheap: runs on a CPU)")
    p.add_argument("--sqnr-batches", type=int, default=4)
    p.add_argument("--merge", nargs="+", default=None, metavar="DIR",
                   help="no scoring: combine the ptq_variants.csv and qlevels_ptq.csv of several --out folders "
                        "(e.g. one per GPU) into --out")
    p.add_argument("--skip", nargs="*", default=[], choices=["variants", "levels", "sensitivity"],
                   help="parts of the study not to run")
    return p.parse_args(argv)


def original_dir(runs: Path, task: str, seed: int) -> Path:
    path = runs / "models" / task / f"seed{seed}" / "original"
    if not (path / "config.json").is_file():
        sys.exit(f"ptq_study: no fine-tuned original at {path} (run examples/glue_eval.py first)")
    return path


def load_original(runs: Path, task: str, seed: int):
    """(fine-tuned original on the device, in eval mode; its tokenizer)."""
    model, tokenizer = pipeline.load_model(str(original_dir(runs, task, seed)), task)
    return model.to(pipeline.resolve_device(None)).eval(), tokenizer


def at_levels(variant: str, levels: int) -> dict:
    """The config of `variant` with `levels` quantization levels on every kind."""
    return {k: {**v, "q_levels": levels} for k, v in VARIANTS[variant].items()}


def headline(task: str, metrics: dict) -> float:
    return metrics[get_task(task).headline_metric]


def evaluate(model, task, tokenizer, args) -> float:
    metrics, _ = pipeline.score(model, task, tokenizer, glue_dir=args.glue_dir, batch_size=args.batch_size,
                                max_eval_samples=args.max_eval_samples, dtype=args.dtype, progress=False,
                                compile=False)  # a sweep: each configuration would compile anew
    return headline(task, metrics)


def ptq_score(original, tokenizer, task, cfg, args, seed) -> tuple[float, torch.nn.Module]:
    stage = pipeline.ptq(original, task, cfg, args.calibrate_batches, tokenizer=tokenizer, glue_dir=args.glue_dir,
                         batch_size=args.batch_size, max_eval_samples=args.max_eval_samples, dtype=args.dtype,
                         seed=seed, progress=False, compile=False)
    return stage.score, stage.model


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def variants_study(args, runs: Path, out: Path) -> list[list]:
    rows = []
    for task in args.tasks:
        for seed in args.seeds:
            model, tokenizer = load_original(runs, task, seed)
            base = evaluate(model, task, tokenizer, args)
            rows.append([task, seed, "original", base, 1.0])
            for name in args.variants:
                score, _ = ptq_score(model, tokenizer, task, VARIANTS[name], args, seed)
                rows.append([task, seed, name, score, score / base if base else float("nan")])
                print(f"{task} seed {seed} {name:28s} {score:.4f} ({score / base if base else float('nan'):.1%})", flush=True)
    write_csv(out / "ptq_variants.csv", ["task", "seed", "variant", "score", "relative"], rows)
    write_variants_md(args, rows, out / "ptq_variants.md")
    return rows


def write_variants_md(args, rows, path: Path) -> None:
    names = ["original"] + list(args.variants)
    lines = ["| variant | " + " | ".join(args.tasks) + " | average (relative) |", "|---" * (len(args.tasks) + 2) + "|"]
    for name in names:
        cells, rels = [], []
        for task in args.tasks:
            scores = [r[3] for r in rows if r[0] == task and r[2] == name]
            rel = [r[4] for r in rows if r[0] == task and r[2] == name]
            cells.append(f"{statistics.mean(scores):.3f}" + (f" ± {statistics.stdev(scores):.3f}" if len(scores) > 1 else ""))
            rels.append(statistics.mean(rel))
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {statistics.mean(rels):.1%} (min {min(rels):.1%}) |")
    path.write_text("\n".join(lines) + "\n")


def levels_study(args, runs: Path, out: Path) -> None:
    rows = []
    for task in args.tasks:
        seed = args.seeds[0]
        model, tokenizer = load_original(runs, task, seed)
        for levels in args.levels:
            score, _ = ptq_score(model, tokenizer, task, at_levels(args.sweep_variant, levels), args, seed)
            rows.append([task, seed, levels, score])
            print(f"levels {task} {levels} {score:.4f}", flush=True)
    write_csv(out / "qlevels_ptq.csv", ["task", "seed", "q_levels", "score"], rows)
    _plot_levels(rows, args, out / "qlevels_ptq.png")


def ft_levels_study(args, runs: Path, out: Path) -> None:
    """Score vs q_levels after the post-training transform and after fine-tuning, per task."""
    import tempfile

    rows = []
    for task in args.ft_levels_tasks:
        seed = args.seeds[0]
        model, tokenizer = load_original(runs, task, seed)
        for levels in args.levels:
            ptq, gm = ptq_score(model, tokenizer, task, at_levels(args.sweep_variant, levels), args, seed)  # a copy
            with tempfile.TemporaryDirectory() as scratch:
                ft = pipeline.optical_finetune(gm, task, tokenizer=tokenizer, glue_dir=args.glue_dir, output_dir=scratch,
                                               seed=seed, num_train_epochs=args.ft_epochs,
                                               max_train_samples=args.ft_max_train_samples, eval_batch_size=args.batch_size,
                                               per_device_train_batch_size=32, bf16=args.dtype == "bf16",
                                               max_eval_samples=args.max_eval_samples, dtype=args.dtype, progress=False,
                                               compile=False)
            rows.append([task, seed, levels, ptq, ft.score])
            print(f"ft levels {task} {levels} ptq {ptq:.4f} ft {ft.score:.4f}", flush=True)
    write_csv(out / "qlevels_ft.csv", ["task", "seed", "q_levels", "ptq_score", "ft_score"], rows)
    _plot_ft_levels(rows, args, out / "qlevels_ft.png")


def _plot_ft_levels(rows, args, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for i, task in enumerate(args.ft_levels_tasks):
        pts = [r for r in rows if r[0] == task]
        color = f"C{i}"
        ax.plot([r[2] for r in pts], [r[3] for r in pts], marker="o", ls="--", color=color, label=f"{task} post-training")
        ax.plot([r[2] for r in pts], [r[4] for r in pts], marker="s", color=color, label=f"{task} fine-tuned")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("q_levels")
    ax.set_ylabel("headline metric")
    ax.set_title(f"Score vs q_levels, post-training and fine-tuned ({args.sweep_variant})")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _plot_levels(rows, args, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for task in args.tasks:
        pts = [(r[2], r[3]) for r in rows if r[0] == task]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=task)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("q_levels")
    ax.set_ylabel("headline metric (post-training transform)")
    ax.set_title(f"Score vs q_levels ({args.sweep_variant})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def sensitivity_study(args, runs: Path, out: Path) -> None:
    from optopass.passes.optical.sites import optical_sites

    task, seed = args.sensitivity_task, args.seeds[0]
    model, tokenizer = load_original(runs, task, seed)
    base = evaluate(model, task, tokenizer, args)
    full, gm = ptq_score(model, tokenizer, task, VARIANTS[args.sensitivity_variant], args, seed)
    rows = []
    sites = [(name, site) for name, site in optical_sites(gm) if hasattr(site, "enabled")]
    for name, site in sites:
        site.enabled = False
        score = evaluate(gm, task, tokenizer, args)
        site.enabled = True
        rows.append([site.site_name, score, score - full])
        print(f"site {site.site_name:55s} {score:.4f} ({score - full:+.4f})", flush=True)
    write_csv(out / "site_sensitivity.csv", ["site", "score_with_site_bypassed", "gain_over_all_optical"],
              [["<original>", base, base - full], ["<all optical>", full, 0.0]] + rows)
    _plot_sensitivity(rows, task, full, base, args.sensitivity_variant, out / "site_sensitivity.png")


def sqnr_study(args, runs: Path, out: Path) -> None:
    """Per-site output SQNR of the reference's ranges and of --sensitivity-variant, one figure."""
    from optopass.tools.report import site_sqnr

    task, seed = args.sensitivity_task, args.seeds[0]
    model, tokenizer = load_original(runs, task, seed)
    device = next(model.parameters()).device
    variants = list(dict.fromkeys(["minmax (reference)", args.sensitivity_variant]))
    results = {}
    for name in variants:
        gm, _ = pipeline.transform(model, task, VARIANTS[name], args.calibrate_batches, tokenizer=tokenizer,
                                   glue_dir=args.glue_dir, seed=seed)
        batches = pipeline.calibration_batches(task, tokenizer, args.sqnr_batches, input_names=gm.capture_info.input_names,
                                               glue_dir=args.glue_dir, seed=seed + 1000)
        results[name] = {r["site"]: r["sqnr_db"] for r in site_sqnr(gm, [{k: v.to(device) for k, v in b.items()}
                                                                         for b in batches])}
    sites = list(results[variants[0]])
    rows = [[site] + [round(results[v][site], 2) for v in variants] for site in sites]
    rows.sort(key=lambda r: r[1])
    write_csv(out / "site_sqnr.csv", ["site"] + [f"sqnr_db {v}" for v in variants], rows)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, max(4, len(rows) * 0.2)))
    height = 0.8 / len(variants)
    for i, v in enumerate(variants):
        ax.barh([k + i * height for k in range(len(rows))], [r[1 + i] for r in rows], height=height, label=v)
    labels = [r[0].replace("bert.encoder.layer.", "L").replace("roberta.encoder.layer.", "L") for r in rows]
    ax.set_yticks([k + height * (len(variants) - 1) / 2 for k in range(len(rows))], labels, fontsize=6)
    ax.invert_yaxis()
    ax.set_xlabel(f"output SQNR (dB) against the exact op, {task} training sentences (higher is better)")
    ax.set_title("Per-site fidelity of the post-training transform (worst first)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "site_sqnr.png", dpi=120)


def _plot_sensitivity(rows, task, full, base, variant, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, max(4, len(rows) * 0.18)))
    labels = [r[0].replace("bert.encoder.layer.", "L").replace("roberta.encoder.layer.", "L") for r in rows]
    ax.barh(range(len(rows)), [r[2] for r in rows], color=["tab:red" if r[2] > 0 else "tab:gray" for r in rows])
    ax.set_yticks(range(len(rows)), labels, fontsize=6)
    ax.invert_yaxis()
    ax.set_xlabel(f"{task} score gain when this site is the original op (all optical: {full:.3f}, original: {base:.3f})")
    ax.set_title(f"Per-site sensitivity, post-training transform ({variant})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def read_csv(path: Path) -> list[list]:
    with path.open(newline="") as f:
        rows = list(csv.reader(f))[1:]
    return [[float(v) if i >= 3 or (i == 2 and v.isdigit()) else (int(v) if i == 1 else v) for i, v in enumerate(r)]
            for r in rows]


def merge(args, out: Path) -> None:
    """Rebuild the variant table and the levels figure from the CSVs of several runs."""
    variants, levels = [], []
    for folder in map(Path, args.merge):
        if (folder / "ptq_variants.csv").is_file():
            variants += read_csv(folder / "ptq_variants.csv")
        if (folder / "qlevels_ptq.csv").is_file():
            levels += [[r[0], r[1], int(r[2]), r[3]] for r in read_csv(folder / "qlevels_ptq.csv")]
    args.tasks = [t for t in args.tasks if any(r[0] == t for r in variants + levels)]
    args.variants = [v for v in args.variants if any(r[2] == v for r in variants)]
    if variants:
        write_csv(out / "ptq_variants.csv", ["task", "seed", "variant", "score", "relative"], variants)
        write_variants_md(args, variants, out / "ptq_variants.md")
    if levels:
        write_csv(out / "qlevels_ptq.csv", ["task", "seed", "q_levels", "score"], levels)
        _plot_levels(levels, args, out / "qlevels_ptq.png")


def main(argv=None) -> int:
    args = parse_args(argv)
    runs, out = Path(args.runs), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.merge:
        merge(args, out)
        return 0
    if "variants" not in args.skip:
        variants_study(args, runs, out)
    if "levels" not in args.skip:
        levels_study(args, runs, out)
    if args.sensitivity_task in args.tasks and "sensitivity" not in args.skip:
        (sqnr_study if args.sensitivity_method == "sqnr" else sensitivity_study)(args, runs, out)
    if args.ft_levels_tasks:
        ft_levels_study(args, runs, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
