"""The GLUE study in one command: original, random baseline, post-training optical transform,
transform-aware fine-tuning (and SqueezeLight when its config is present), per task and seed.

Flow for every task and seed:

1. fine-tune the pretrained model on the task (``original``: the 100% row);
2. ``random``: the pretrained encoder with a fresh, untrained classification head;
3. ``ot_ptq``: the fine-tuned original transformed with ``--cfg``, calibrated on
   ``--calibrate-batches`` training batches (ranges frozen), evaluated;
4. ``ot_ft``: that optical model fine-tuned through the optical ops (ranges frozen, learning
   rate ``--optical-learning-rates``, 10% warmup, clipping at 1.0);
5. ``squeezelight_ptq`` / ``squeezelight_ft``: steps 3-4 with ``--squeezelight-cfg``, when that
   file exists and loads (else the SqueezeLight rows say "not available").

Outputs in ``--out``:

``tables.md`` / ``tables.csv``   the study's two tables (post-training transform; fine-tuning):
                                 rows Original / Random / Optical Transformer / SqueezeLight,
                                 one column per task plus the average, mean ± std over seeds
``tables.png``                   the same as bar charts
``glue_<model>.csv``             long format, columns ``setting,seed,task,metric,score``
``site_report.csv``              per-site report (``optopass.report``) of each calibrated model
``run.json``                     the arguments, which rows were not available, seconds per stage
``units/<task>-<seed>.json``     each finished (task, seed) unit's scores, written as it finishes:
                                 ``--resume`` keeps them and runs only the units left
``models/<task>/seed<k>/...``    the fine-tuned models (``original``, ``ot_ft``, ...)

Examples::

    # the five tasks, MiniLM, one seed, on a GPU
    python examples/glue_eval.py --bf16 --seeds 1

    # a learning-rate sweep: one rate per task, three seeds (mean ± std)
    python examples/glue_eval.py --tasks stsb mrpc cola --learning-rates 1e-3 2e-5 1e-5 --seeds 1 2 3

    # score the models of an earlier run again, without training
    python examples/glue_eval.py --eval-only runs/glue_eval --out runs/glue_eval_again

    # a run stopped part-way (a worker failed, the machine was taken back): run the units left
    python examples/glue_eval.py --bf16 --seeds 1 2 3 --resume

    # baseline comparison: the same run without the optical config
    python examples/glue_eval.py --no-optical --out runs/glue_baseline

    # a quick CPU smoke run
    python examples/glue_eval.py --tasks rte --max-train-samples 64 --max-eval-samples 64 --epochs 1 \\
        --calibrate-batches 2 --batch-size 16

On a GPU every stage evaluates and trains compiled (``--no-compile``: eager); each stage's
compile time is printed once, apart from its throughput, and kept in ``run.json``. A graph
compiled before (the fine-tuned optical model's evaluation after the post-training model's, the
same graph with new weights) comes from Inductor's on-disk cache, on by default.

User errors (unknown task, missing data, bad numbers) print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from optopass.tools.errors import ConfigError, OptopassError
from optopass.tools.glue import pipeline
from optopass.tools.glue.cli import format_speed
from optopass.tools.glue.data import default_glue_dir
from optopass.tools.glue.tasks import GLUE_TASKS, get_task

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TASKS = ("sst2", "mrpc", "cola", "stsb", "rte")
DEFAULT_CFG = REPO_ROOT / "transform_cfg.yaml"
DEFAULT_SQUEEZELIGHT_CFG = REPO_ROOT / "examples" / "squeezelight_cfg.yaml"
DEFAULT_LEARNING_RATE = 5e-5  # MiniLM-sized encoders; 2e-5 for base-sized ones
DEFAULT_OPTICAL_LEARNING_RATE = 1e-5
CSV_HEADER = ("setting", "seed", "task", "metric", "score")
EXIT_USER_ERROR = 2

# (row label, setting of the post-training table, setting of the fine-tuning table, technology)
TABLE_ROWS = (
    ("Original", "original", "original", None),
    ("Random", "random", "random", None),
    ("Optical Transformer", "ot_ptq", "ot_ft", "optical_transformer"),
    ("SqueezeLight", "squeezelight_ptq", "squeezelight_ft", "squeezelight"),
)
TABLES = (("ptq", "Table 1: post-training optical transform", 1), ("ft", "Table 2: transform-aware fine-tuning", 2))
NOT_AVAILABLE, NOT_RUN = "not available", "not run"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="glue_eval.py",
        description="Run the GLUE study (original / random / optical PTQ / optical fine-tuning) and write its tables.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS), choices=list(GLUE_TASKS), help="GLUE tasks")
    p.add_argument("--model", default="minilm", help="pretrained model: 'minilm', a hub name (roberta-base), or a folder")
    p.add_argument("--glue-dir", default=None, help="glue_data folder (default: default_glue_dir(); none: the hub)")
    p.add_argument("--out", default="runs/glue_eval", help="output folder")
    p.add_argument("--seeds", nargs="+", type=int, default=[1], help="training seeds (mean ± std over them)")
    p.add_argument("--learning-rates", nargs="+", type=float, default=[DEFAULT_LEARNING_RATE],
                   help="learning rate of the original's fine-tuning: one for all tasks, or one per task")
    p.add_argument("--optical-learning-rates", nargs="+", type=float, default=[DEFAULT_OPTICAL_LEARNING_RATE],
                   help="learning rate of the optical fine-tuning: one for all tasks, or one per task")
    p.add_argument("--epochs", nargs="+", type=float, default=[3.0],
                   help="epochs of the original's fine-tuning: one for all tasks, or one per task")
    p.add_argument("--optical-epochs", nargs="+", type=float, default=None,
                   help="epochs of the optical fine-tuning: one for all tasks, or one per task (default: --epochs)")
    p.add_argument("--max-steps", type=int, default=-1, help="steps of each fine-tuning; overrides the epochs (-1: off)")
    p.add_argument("--max-train-samples", type=int, default=None, help="cap of training rows per task (quick runs)")
    p.add_argument("--optical-max-train-samples", type=int, default=None,
                   help="cap of training rows of the optical fine-tunings (default: --max-train-samples); an "
                   "optical step costs 3-5x a plain one (Optical Transformer) or more (SqueezeLight)")
    p.add_argument("--max-eval-samples", type=int, default=None, help="cap of validation rows per task")
    p.add_argument("--max-seq-length", type=int, default=128, help="longest tokenized input")
    p.add_argument("--calibrate-batches", type=int, default=32,
                   help="training batches (of --batch-size sentences) observed by calibration")
    p.add_argument("--cfg", default=str(DEFAULT_CFG), help="Optical Transformer config")
    p.add_argument("--squeezelight-cfg", default=str(DEFAULT_SQUEEZELIGHT_CFG),
                   help="SqueezeLight config (rows 'not available' when missing or invalid)")
    p.add_argument("--ft-stats", choices=("frozen", "auto"), default="frozen",
                   help="range statistics during optical fine-tuning")
    p.add_argument("--eval-only", default=None, metavar="DIR",
                   help="no training: score the models of an earlier run's --out (or one model folder)")
    p.add_argument("--no-optical", action="store_true", help="baseline comparison: only the original and random rows")
    p.add_argument("--bf16", action="store_true", help="bfloat16 mixed precision (training and evaluation)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="train and evaluate under torch.compile (evaluation in CUDA graphs, one graph per length "
                        "bucket); each stage's compile time is printed apart from its throughput and kept in "
                        "run.json (default: on a GPU, off on the CPU)")
    p.add_argument("--batch-size", type=int, default=32, help="training and calibration batch size (evaluation: 2x)")
    p.add_argument("--keep-checkpoints", action="store_true", help="keep the Trainer checkpoints of every run")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--gpus", type=int, default=1,
                   help="run the (task, seed) units on this many GPUs at once, one worker process per GPU "
                        "taking units from a shared queue, longest first (logs in OUT/parts/); the tables "
                        "merge them")
    p.add_argument("--workers-per-gpu", type=int, default=1,
                   help="worker processes sharing each GPU (a small encoder's steps leave a GPU mostly idle)")
    p.add_argument("--resume", action="store_true",
                   help="keep the (task, seed) units an earlier run with the same options finished in --out "
                        "(OUT/units/) and run only the others")
    p.add_argument("--worker-queue", default=None, help=argparse.SUPPRESS)  # a --gpus worker: the units' queue folder
    return p.parse_args(argv)


# ------------------------------------------------------------------------------------------------
# options


def per_task(values: list[float], tasks: list[str], flag: str) -> dict[str, float]:
    """One value for all tasks, or one per task in ``--tasks`` order."""
    if len(values) == 1:
        return {task: values[0] for task in tasks}
    if len(values) != len(tasks):
        raise ConfigError(f"{flag}: give one value or one per task ({len(tasks)}), got {len(values)}")
    return dict(zip(tasks, values))


def model_short_name(model: str) -> str:
    """``minilm`` -> ``minilm``; ``roberta-base`` -> ``roberta-base``; a path -> its last part."""
    name = Path(model.rstrip("/")).name or model
    return re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-") or "model"


def load_optional_config(path: str | None):
    """(config, None) when ``path`` loads, else (None, why not)."""
    from optopass import load_config

    if not path or not Path(path).is_file():
        return None, f"{path}: no such file"
    try:
        return load_config(path), None
    except OptopassError as err:
        return None, str(err)


def check_options(args: argparse.Namespace) -> None:
    """Numbers in range and data present, before anything slow runs."""
    from optopass.tools.glue.trainer import check_options as check_training

    for flag in ("batch_size", "calibrate_batches", "max_seq_length"):
        value = getattr(args, flag)
        if value < 1:
            raise ConfigError(f"--{flag.replace('_', '-')}: must be an integer >= 1, got {value}")
    for flag in ("max_train_samples", "optical_max_train_samples", "max_eval_samples"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ConfigError(f"--{flag.replace('_', '-')}: must be an integer >= 1, got {value}")
    for flag in ("learning_rates", "optical_learning_rates"):
        for value in getattr(args, flag):
            if not value > 0:
                raise ConfigError(f"--{flag.replace('_', '-')}: must be numbers > 0, got {value}")
    try:
        for epochs in args.epochs + (args.optical_epochs or []):
            check_training(num_train_epochs=epochs, max_steps=args.max_steps)
    except ConfigError as err:
        raise ConfigError(f"--{str(err).replace('num_train_epochs', 'epochs').replace('_', '-')}") from None
    if len(set(args.tasks)) != len(args.tasks) or len(set(args.seeds)) != len(args.seeds):
        raise ConfigError("--tasks and --seeds: each value at most once")
    if args.gpus < 1:
        raise ConfigError(f"--gpus: must be an integer >= 1, got {args.gpus}")
    if args.workers_per_gpu < 1:
        raise ConfigError(f"--workers-per-gpu: must be an integer >= 1, got {args.workers_per_gpu}")
    per_task(args.epochs, args.tasks, "--epochs")
    if args.optical_epochs is not None:
        per_task(args.optical_epochs, args.tasks, "--optical-epochs")
    if args.gpus > 1:
        import torch

        if torch.cuda.device_count() < args.gpus:
            raise ConfigError(f"--gpus {args.gpus}: this machine has {torch.cuda.device_count()} CUDA device(s)")


# ------------------------------------------------------------------------------------------------
# the run


@dataclass
class Study:
    """Everything scored: setting -> task -> seed -> metric dict; plus the rows' availability."""

    tasks: list[str]
    seeds: list[int]
    scores: dict
    status: dict[str, str]
    site_rows: list[dict[str, Any]]
    timings: list[dict[str, Any]]

    def add(self, stage: pipeline.StageResult, seed: int) -> None:
        self.scores[stage.setting][stage.task][seed] = stage.metrics


def new_study(tasks: list[str], seeds: list[int]) -> Study:
    return Study(tasks, seeds, defaultdict(lambda: defaultdict(dict)), {}, [], [])


def run_study(args: argparse.Namespace) -> Study:
    """Trains and scores every setting of every task and seed (or only scores: --eval-only)."""
    from optopass import load_config

    from optopass.tools.glue.cli import check_data

    glue_dir = Path(args.glue_dir) if args.glue_dir else default_glue_dir()
    for task in args.tasks:  # fail before any training when a file is missing
        check_data(task, ["train", get_task(task).validation_splits[0]], glue_dir)
    study = new_study(list(args.tasks), list(args.seeds))
    technologies = {}
    if args.no_optical:
        study.status.update(optical_transformer=NOT_RUN, squeezelight=NOT_RUN)
    else:
        technologies["optical_transformer"] = load_config(args.cfg)
        squeezelight, why = load_optional_config(args.squeezelight_cfg)
        if squeezelight is None:
            study.status["squeezelight"] = NOT_AVAILABLE
            print(f"glue_eval: SqueezeLight rows not available ({why})", file=sys.stderr)
        else:
            technologies["squeezelight"] = squeezelight
    stages_per_run = 2 + 2 * len(technologies)
    out = Path(args.out)
    parts = [study_to_json(study)]  # the rows' availability, then each unit's scores
    if args.worker_queue:
        units = claim_units(Path(args.worker_queue))
        total = None
    else:
        units = [(t, s) for t in study.tasks for s in study.seeds]
        if args.resume:
            done = finished_units(out, units, args)
            units = [unit for unit in units if unit not in done]
            parts += done.values()
        total = len(units) * stages_per_run
    with tqdm(total=total, desc="glue_eval", unit="stage", disable=args.no_progress) as bar:
        for task, seed in units:
            unit = new_study([task], [seed])
            unit.status.update(study.status)
            run_one(args, unit, task, seed, glue_dir, technologies, out, bar)
            save_unit(out, unit, task, seed, args)
            parts.append(study_to_json(unit))
    return merge_studies(study.tasks, study.seeds, parts)


# ------------------------------------------------------------------------------------------------
# finished units, kept in OUT/units/ (--resume)

# options that change no score: a unit finished under other values of these is still this run's
NOT_RESULTS = {"out", "gpus", "workers_per_gpu", "no_progress", "resume", "worker_queue", "tasks",
               "seeds", "keep_checkpoints"}


def result_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options a unit's scores depend on (what --resume compares); a config file counts by its
    contents, not its path."""
    options = {k: v for k, v in sorted(vars(args).items()) if k not in NOT_RESULTS}
    for key in ("cfg", "squeezelight_cfg"):
        if options.get(key) and Path(options[key]).is_file():
            options[key] = "sha256:" + hashlib.sha256(Path(options[key]).read_bytes()).hexdigest()
    return json.loads(json.dumps(options, default=str))


def unit_path(out: Path, task: str, seed: int) -> Path:
    return out / "units" / f"{task}-{seed}.json"


def save_unit(out: Path, unit: Study, task: str, seed: int, args: argparse.Namespace) -> None:
    """Writes one finished unit (atomically: a unit file is whole or absent)."""
    from optopass.tools.io import write_file_atomically

    text = json.dumps({"options": result_options(args), **study_to_json(unit)}, default=str)
    unit_path(out, task, seed).parent.mkdir(parents=True, exist_ok=True)
    write_file_atomically(unit_path(out, task, seed), lambda tmp: tmp.write_text(text))


def finished_units(out: Path, units: list[tuple[str, int]], args: argparse.Namespace) -> dict[tuple[str, int], dict]:
    """The units of `units` finished in `out` by a run with the same result options; a unit
    finished under other options is an error (mixing them would make one table of two studies)."""
    found = {}
    wanted = result_options(args)
    for task, seed in units:
        path = unit_path(out, task, seed)
        if not path.is_file():
            continue
        part = json.loads(path.read_text())
        if part.get("options") != wanted:
            changed = sorted(k for k in set(wanted) | set(part.get("options", {}))
                             if wanted.get(k) != part.get("options", {}).get(k))
            flags = ", ".join("--" + k.replace("_", "-") for k in changed)
            raise ConfigError(f"--resume: {path} was made with other values of {flags}; "
                              "give the same options, or run without --resume")
        found[(task, seed)] = part
    return found


# ------------------------------------------------------------------------------------------------
# --gpus N: worker processes on each GPU, taking the (task, seed) units from one queue

class WorkerError(RuntimeError):
    """A --gpus worker process exited with an error (its log says why)."""


# training rows of each GLUE task (the order of the queue; a cap lowers them)
TRAIN_ROWS = {"cola": 8551, "sst2": 67349, "mrpc": 3668, "stsb": 5749, "qqp": 363846, "mnli": 392702,
              "qnli": 104743, "rte": 2490, "wnli": 635}


def unit_cost(task: str, cap: int | None, epochs: dict[str, float] | None) -> float:
    return min(TRAIN_ROWS.get(task, 1), cap or 10**9) * (epochs or {}).get(task, 1.0)


def unit_order(tasks: list[str], seeds: list[int], cap: int | None,
               epochs: dict[str, float] | None = None) -> list[tuple[str, int]]:
    """Every (task, seed) unit, the most training rows x epochs first."""
    return sorted(((t, s) for t in tasks for s in seeds), key=lambda u: -unit_cost(u[0], cap, epochs))


def write_queue(folder: Path, units: list[tuple[str, int]]) -> None:
    """One file per unit, named so that listing the folder gives `units`' order."""
    folder.mkdir(parents=True, exist_ok=True)
    for k, (task, seed) in enumerate(units):
        (folder / f"{k:04d}-{task}-{seed}").touch()


def claim_units(folder: Path):
    """Yields the queue's units one at a time, each to exactly one of the workers sharing `folder`:
    a worker claims a unit by renaming its file into ``claimed/`` (atomic; a lost race moves on).
    Workers that finish early take the units left, so the load balances itself."""
    claimed = folder / "claimed"
    claimed.mkdir(exist_ok=True)
    while True:
        names = sorted(p.name for p in folder.iterdir() if p.is_file())
        if not names:
            return
        for name in names:
            try:
                os.rename(folder / name, claimed / name)
            except FileNotFoundError:  # another worker took it
                continue
            _, task, seed = name.split("-")
            yield task, int(seed)
            break


def study_to_json(study: Study) -> dict:
    return {"scores": {setting: {task: {str(seed): m for seed, m in seeds.items()} for task, seeds in tasks.items()}
                       for setting, tasks in study.scores.items()},
            "status": study.status, "site_rows": study.site_rows, "timings": study.timings}


def merge_studies(tasks: list[str], seeds: list[int], parts: list[dict]) -> Study:
    study = new_study(tasks, seeds)
    for part in parts:
        for setting, by_task in part["scores"].items():
            for task, by_seed in by_task.items():
                for seed, metrics in by_seed.items():
                    study.scores[setting][task][int(seed)] = metrics
        study.status.update(part["status"])
        study.site_rows.extend(part["site_rows"])
        study.timings.extend(part["timings"])
    return study


def run_on_gpus(args: argparse.Namespace, argv: list[str]) -> Study:
    """Starts ``--workers-per-gpu`` workers (this script, CUDA_VISIBLE_DEVICES=k) per GPU, which take
    the (task, seed) units from one queue, longest first, until none is left; merges their studies."""
    import subprocess

    out = Path(args.out)
    parts_dir = out / "parts"
    parts_dir.mkdir(parents=True, exist_ok=True)
    units = unit_order(args.tasks, args.seeds, args.max_train_samples, per_task(args.epochs, args.tasks, "--epochs"))
    done = finished_units(out, units, args) if args.resume else {}
    queue = parts_dir / "queue"
    shutil.rmtree(queue, ignore_errors=True)
    write_queue(queue, [unit for unit in units if unit not in done])
    workers = []
    for k in range(min(args.gpus * args.workers_per_gpu, len(units) - len(done))):
        log = open(parts_dir / f"gpu{k}.log", "w")
        cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--gpus", "1", "--workers-per-gpu", "1",
               "--no-progress", "--worker-queue", str(queue)]
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        gpu = k % args.gpus
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": visible.split(",")[gpu] if visible else str(gpu)}
        print(f"glue_eval: worker {k} on GPU {gpu} (log {log.name})", file=sys.stderr)
        workers.append((k, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log))
    failed = []
    for k, proc, log in workers:
        if proc.wait() != 0:
            failed.append(f"worker {k} (exit {proc.returncode}; see {log.name})")
        log.close()
    if failed:
        raise WorkerError("worker failed: " + ", ".join(failed) + "; the units finished are kept in "
                          f"{out / 'units'}: the same command with --resume runs the others")
    return merge_studies(list(args.tasks), list(args.seeds), list(finished_units(out, units, args).values()))


def run_one(args, study: Study, task: str, seed: int, glue_dir, technologies: dict, out: Path, bar) -> None:
    """All settings of one task and seed."""
    progress = not args.no_progress
    lr = per_task(args.learning_rates, args.tasks, "--learning-rates")[task]
    optical_lr = per_task(args.optical_learning_rates, args.tasks, "--optical-learning-rates")[task]
    epochs = per_task(args.epochs, args.tasks, "--epochs")[task]
    optical_epochs = per_task(args.optical_epochs or args.epochs, args.tasks, "--optical-epochs")[task]
    eval_opts = dict(glue_dir=glue_dir, max_seq_length=args.max_seq_length, max_eval_samples=args.max_eval_samples,
                     dtype="bf16" if args.bf16 else None, progress=progress, compile=args.compile)
    train_opts = dict(max_steps=args.max_steps, per_device_train_batch_size=args.batch_size, bf16=args.bf16,
                      max_train_samples=args.max_train_samples, keep_checkpoints=args.keep_checkpoints)
    optical_rows = args.optical_max_train_samples or args.max_train_samples
    models = out / "models" / task / f"seed{seed}"
    prefixes = {"optical_transformer": "ot", "squeezelight": "squeezelight"}

    clock = [time.perf_counter(), None]
    speeds: dict[str, Any] = {}  # the running stage's compile seconds and throughput

    def step(name: str) -> None:
        """Starts timing stage `name` (and closes the previous one)."""
        now = time.perf_counter()
        if clock[1] is not None:
            study.timings.append({"task": task, "seed": seed, "stage": clock[1], "seconds": round(now - clock[0], 2),
                                  **speeds})
        speeds.clear()
        clock[:] = [now, name]
        if name is not None:
            bar.set_postfix_str(f"{task} seed {seed}: {name}")

    def add(stage: pipeline.StageResult) -> None:
        """Adds the stage's scores; prints its compile time and throughput once (run.json keeps them)."""
        study.add(stage, seed)
        found = {key: stage.info[key] for key in ("train_speed", "eval_speed") if key in stage.info}
        speeds.update(found)
        if found:
            parts = [f"{key.removesuffix('_speed')} {format_speed(value)}" for key, value in found.items()]
            print(f"glue_eval: {task} seed {seed} {stage.setting}: " + "; ".join(parts), file=sys.stderr)

    step("original")
    if args.eval_only:
        original, tokenizer = eval_only_original(args.eval_only, task, seed, study, eval_opts, 2 * args.batch_size)
    else:
        stage = pipeline.train_original(task, args.model, output_dir=models / "original", learning_rate=lr, seed=seed,
                                        num_train_epochs=epochs, eval_batch_size=2 * args.batch_size,
                                        **train_opts, **eval_opts)
        original, tokenizer = stage.model, stage.tokenizer
        add(stage)
    bar.update(1)

    step("random")
    add(pipeline.random_baseline(task, args.model, seed=seed, batch_size=2 * args.batch_size, **eval_opts))
    bar.update(1)

    for technology, config in technologies.items():
        prefix = prefixes[technology]
        if original is None:
            bar.update(2)
            continue
        step(f"{prefix}_ptq")
        ptq = pipeline.ptq(original, task, config, args.calibrate_batches, tokenizer=tokenizer,
                           calibrate_batch_size=args.batch_size, batch_size=2 * args.batch_size, seed=seed,
                           setting=f"{prefix}_ptq", **eval_opts)
        add(ptq)
        study.site_rows.extend(site_rows(ptq, seed))
        bar.update(1)
        step(f"{prefix}_ft")
        ft_dir = models / f"{prefix}_ft"
        if args.eval_only:
            found = eval_only_model(args.eval_only, task, seed, f"{prefix}_ft")
            if found is not None:
                gm, ft_tokenizer = pipeline.load_model(str(found), task)
                metrics, n = pipeline.score(gm, task, ft_tokenizer, batch_size=2 * args.batch_size, **eval_opts)
                study.add(pipeline.StageResult(f"{prefix}_ft", task, metrics, n), seed)
        else:
            ft = pipeline.optical_finetune(ptq.model, task, tokenizer=tokenizer, output_dir=ft_dir,
                                           ft_stats=args.ft_stats, learning_rate=optical_lr, seed=seed,
                                           num_train_epochs=optical_epochs,
                                           eval_batch_size=2 * args.batch_size, setting=f"{prefix}_ft",
                                           **{**train_opts, "max_train_samples": optical_rows}, **eval_opts)
            add(ft)
        bar.update(1)
    step(None)


# ------------------------------------------------------------------------------------------------
# --eval-only


def eval_only_model(root: str, task: str, seed: int, setting: str) -> Path | None:
    """``root/models/<task>/seed<k>/<setting>`` of an earlier run, or ``root`` itself when it is
    one model folder (an HF folder as ``original``, an ``optopass.save`` folder as ``ot_ft``)."""
    from optopass.tools.io import is_saved_transform

    root = Path(root)
    candidate = root / "models" / task / f"seed{seed}" / setting
    if candidate.is_dir():
        return candidate
    if (root / "config.json").is_file() and setting == "original":
        return root
    if is_saved_transform(root) and setting == "ot_ft":
        return root
    return None


def eval_only_original(root: str, task: str, seed: int, study: Study, eval_opts: dict, batch_size: int):
    """Scores the original of an earlier run; returns (model, tokenizer), or (None, None)."""
    found = eval_only_model(root, task, seed, "original")
    if found is None:
        print(f"glue_eval: no original model for {task} seed {seed} under {root}", file=sys.stderr)
        return None, None
    model, tokenizer = pipeline.load_model(str(found), task)
    metrics, n = pipeline.score(model, task, tokenizer, batch_size=batch_size, **eval_opts)
    study.add(pipeline.StageResult("original", task, metrics, n), seed)
    return model, tokenizer


# ------------------------------------------------------------------------------------------------
# outputs


def site_rows(stage: pipeline.StageResult, seed: int) -> list[dict[str, Any]]:
    """``optopass.report`` of a calibrated model, one row per site and range."""
    from optopass import report

    rows = []
    for site in report(stage.model):
        base = {"setting": stage.setting, "task": stage.task, "seed": seed, "site": site["site"], "kind": site["kind"],
                "op": site["op"], "technology": site["technology"], "origin": site["origin"],
                "config": json.dumps(site["config"], sort_keys=True)}
        for name, values in (site.get("stats") or {"": []}).items():
            lo, hi = (list(values) + [None, None])[:2] if isinstance(values, (list, tuple)) else (None, None)
            rows.append({**base, "range": name, "min": lo, "max": hi})
    return rows


def headline(task: str) -> str:
    return get_task(task).headline_metric


def long_rows(study: Study) -> list[tuple]:
    """``(setting, seed, task, metric, score)`` for every headline score."""
    rows = []
    for setting in pipeline.SETTINGS:
        for task in study.tasks:
            for seed in study.seeds:
                metrics = study.scores.get(setting, {}).get(task, {}).get(seed)
                if metrics is not None:
                    rows.append((setting, seed, task, headline(task), metrics[headline(task)]))
    return rows


def cell(study: Study, setting: str, task: str | None) -> tuple[float, float, int] | None:
    """(mean, std, n) of the headline score (x100) over seeds; task None: the average column,
    the mean over tasks taken per seed (only seeds with every task scored)."""
    per_seed = []
    for seed in study.seeds:
        tasks = study.tasks if task is None else [task]
        values = [study.scores.get(setting, {}).get(t, {}).get(seed) for t in tasks]
        if all(v is not None for v in values):
            per_seed.append(100 * statistics.fmean(v[headline(t)] for v, t in zip(values, tasks)))
    if not per_seed:
        return None
    std = statistics.stdev(per_seed) if len(per_seed) > 1 else 0.0
    return statistics.fmean(per_seed), std, len(per_seed)


def table(study: Study, which: str) -> list[dict[str, Any]]:
    """Rows of one of the study's tables: label, setting, and per column (task..., average)
    a (mean, std, n) tuple or a status text."""
    rows = []
    for label, ptq_setting, ft_setting, technology in TABLE_ROWS:
        setting = ptq_setting if which == "ptq" else ft_setting
        status = study.status.get(technology) if technology else None
        columns = {}
        for task in [*study.tasks, None]:
            value = cell(study, setting, task) if status is None else None
            columns[task or "average"] = value if value is not None else (status or NOT_AVAILABLE)
        rows.append({"label": label, "setting": setting, "columns": columns})
    return rows


def fmt(value, relative_to=None) -> str:
    if isinstance(value, str):
        return value
    mean, std, n = value
    if relative_to is not None:
        if isinstance(relative_to, str) or relative_to[0] <= 0:
            return "—"  # a share of a score at or below zero means nothing
        return f"{100 * mean / relative_to[0]:.1f}%"
    return f"{mean:.2f} ± {std:.2f}" if n > 1 else f"{mean:.2f}"


def column_title(column: str) -> str:
    return "Average" if column == "average" else get_task(column).layout.folder


def write_markdown(study: Study, path: Path, model: str) -> None:
    seeds = ", ".join(map(str, study.seeds))
    metrics = ", ".join(f"{get_task(t).layout.folder} {headline(t)}" for t in study.tasks)
    lines = [f"# GLUE study: {model} (seeds {seeds})", "",
             f"Validation scores x100 ({metrics}); mean ± std over seeds when more than one.", ""]
    columns = [*study.tasks, "average"]
    for which, title, _ in TABLES:
        rows = table(study, which)
        for relative in (False, True):
            heading = f"## {title}" + (" (relative to Original = 100%)" if relative else "")
            lines += [heading, "", "| | " + " | ".join(column_title(c) for c in columns) + " |",
                      "|---|" + "---:|" * len(columns)]
            original = rows[0]["columns"]
            for row in rows:
                cells = [fmt(row["columns"][c], original[c] if relative else None) for c in columns]
                lines.append(f"| {row['label']} | " + " | ".join(cells) + " |")
            lines.append("")
    path.write_text("\n".join(lines))


def write_tables_csv(study: Study, path: Path) -> None:
    columns = [*study.tasks, "average"]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["table", "row", "setting", "statistic", *columns])
        for which, _, _ in TABLES:
            for row in table(study, which):
                values = [row["columns"][c] for c in columns]
                for index, statistic in enumerate(("mean", "std", "n_seeds")):
                    writer.writerow([which, row["label"], row["setting"], statistic,
                                     *[v if isinstance(v, str) else round(v[index], 4) for v in values]])


def write_chart(study: Study, path: Path, model: str) -> bool:
    """Bar charts of both tables; False (and a note) when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        print("glue_eval: matplotlib is not installed; no chart written", file=sys.stderr)
        return False

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = [*study.tasks, "average"]
    fig, axes = plt.subplots(1, 2, figsize=(6 + 1.6 * len(columns), 4.5), sharey=True)
    for ax, (which, title, _) in zip(axes, TABLES):
        rows = [r for r in table(study, which) if any(not isinstance(v, str) for v in r["columns"].values())]
        width = 0.8 / max(len(rows), 1)
        for i, row in enumerate(rows):
            xs, means, stds = [], [], []
            for j, column in enumerate(columns):
                value = row["columns"][column]
                if not isinstance(value, str):
                    xs.append(j + (i - (len(rows) - 1) / 2) * width)
                    means.append(value[0])
                    stds.append(value[1])
            ax.bar(xs, means, width, yerr=stds, capsize=2, label=row["label"])
        missing = [r["label"] for r in table(study, which) if r not in rows]
        ax.set_title(title + (f"\n({', '.join(missing)}: not available)" if missing else ""), fontsize=9)
        ax.set_xticks(range(len(columns)), [column_title(c) for c in columns])
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("score x100")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"GLUE validation, {model}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def write_outputs(study: Study, out: Path, model: str, run_args: dict | None = None) -> dict[str, Path]:
    """Writes every output file through a temporary folder; returns name -> path."""
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "long_csv": out / f"glue_{model_short_name(model)}.csv",
        "tables_md": out / "tables.md",
        "tables_csv": out / "tables.csv",
        "chart": out / "tables.png",
        "site_report": out / "site_report.csv",
        "run": out / "run.json",
    }
    with tempfile.TemporaryDirectory(prefix=".glue_eval-", dir=out) as scratch:
        staged = {key: Path(scratch) / path.name for key, path in files.items()}
        with open(staged["long_csv"], "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(CSV_HEADER)
            writer.writerows(long_rows(study))
        write_markdown(study, staged["tables_md"], model_short_name(model))
        staged["run"].write_text(json.dumps({"args": run_args, "status": study.status, "timings": study.timings},
                                            indent=2, default=str))
        write_tables_csv(study, staged["tables_csv"])
        if not write_chart(study, staged["chart"], model_short_name(model)):
            del staged["chart"]
        site_columns = ["setting", "task", "seed", "site", "kind", "op", "technology", "origin", "range", "min", "max",
                        "config"]
        with open(staged["site_report"], "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=site_columns)
            writer.writeheader()
            writer.writerows(study.site_rows)
        for key, path in staged.items():
            os.replace(path, files[key])
    return {key: files[key] for key in staged}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    try:
        check_options(args)
        per_task(args.learning_rates, args.tasks, "--learning-rates")
        per_task(args.optical_learning_rates, args.tasks, "--optical-learning-rates")
        if args.eval_only and not Path(args.eval_only).is_dir():
            raise ConfigError(f"--eval-only: {args.eval_only}: folder not found")
        if args.worker_queue:  # a --gpus worker: its units only, the parent writes the tables
            run_study(args)
            return 0
        if not args.resume:
            shutil.rmtree(Path(args.out) / "units", ignore_errors=True)
        study = run_on_gpus(args, argv) if args.gpus * args.workers_per_gpu > 1 else run_study(args)
        files = write_outputs(study, Path(args.out), args.model, vars(args))
    except OptopassError as err:
        print(f"glue_eval.py: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except WorkerError as err:
        print(f"glue_eval.py: error: {err}", file=sys.stderr)
        return 1
    print(Path(files["tables_md"]).read_text())
    print("wrote " + ", ".join(str(p) for p in files.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
