"""``optopass eval`` and ``optopass finetune``: score and fine-tune GLUE classifiers.

``tools/cli.py`` finds :func:`add_subcommand` and calls it with its subparsers. User errors
(unknown task, missing data folder, a number out of range, a bad config) raise an
``OptopassError``: one line on stderr, exit status 2.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from optopass.tools.checks import check_counts
from optopass.tools.cli_args import (
    DTYPES,
    add_compile_option,
    add_model_options,
    add_output_options,
    command_scope,
    print_result,
)
from optopass.tools.errors import ConfigError, DataError
from optopass.tools.glue.tasks import GLUE_TASKS, GlueTask, get_task

SPLITS = ("validation", "validation_matched", "validation_mismatched")


def add_subcommand(sub) -> None:
    """Adds ``eval`` and ``finetune`` to the ``optopass`` command's subparsers."""
    _add_eval(sub)
    _add_finetune(sub)


def _add_data_args(p: argparse.ArgumentParser) -> None:
    add_model_options(p, cfg_help="optical config YAML; with it the optical transform is scored / trained")
    p.add_argument("--task", required=True, choices=list(GLUE_TASKS), help="GLUE task (hub config name)")
    p.add_argument("--glue-dir", default=None,
                   help="classic glue_data folder (default: $OPTOPASS_GLUE_DIR or the shared folder; else the hub)")
    p.add_argument("--calibrate-batches", type=int, default=32,
                   help="batches (of --calibrate-batch-size sentences) observed by calibration (default 32)")
    p.add_argument("--calibrate-split", default="train", metavar="SPLIT",
                   help="split whose sentences calibrate the ranges: train (default) or one of the task's "
                        "validation splits (for a task with dev files only; the ranges then see the scored sentences)")
    p.add_argument("--calibrate-batch-size", type=int, default=32, help="sentences per calibration batch (default 32)")
    p.add_argument("--max-seq-length", type=int, default=128, help="longest tokenized input (default 128)")
    p.add_argument("--max-eval-samples", type=int, default=None, help="score only the first N validation rows")
    add_compile_option(p)


def _add_eval(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="score a model (and its optical transform) on a GLUE task",
        description="Score a sequence classifier on the validation split of a GLUE task. With --cfg the model is "
        "also transformed into optical ops, calibrated on --calibrate-batches batches of --calibrate-split (default: "
        "train; ranges frozen) and "
        "scored side by side. A folder written by optopass.save is scored as 'optical', its base weights without "
        "the optical ops as 'original'.",
    )
    _add_data_args(p)
    p.add_argument("--split", choices=SPLITS, default=None,
                   help="evaluation split (default: the task's first: validation, or validation_matched for mnli)")
    p.add_argument("--batch-size", type=int, default=32, help="evaluation batch size (default 32)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    p.add_argument("--dtype", choices=DTYPES, default="fp32", help="evaluation precision (autocast; default fp32)")
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration subset (default 0)")
    add_output_options(p)
    p.set_defaults(func=_run_eval)


def _add_finetune(sub) -> None:
    p = sub.add_parser(
        "finetune",
        help="fine-tune a model, or its optical transform (--cfg), on a GLUE task",
        description="Fine-tune with the Hugging Face Trainer on the training split of a GLUE task and write a folder "
        "that 'optopass eval --model DIR' and optopass.load accept. With --cfg the model (best: one already "
        "fine-tuned on the task) is transformed, calibrated, its ranges frozen (--ft-stats) and fine-tuned through "
        "the optical ops with straight-through gradients. A folder written by optopass.save is fine-tuned as it is. "
        "Runs under torchrun --nproc_per_node=N unchanged.",
    )
    _add_data_args(p)
    add_output_options(p, out_required=True,
                       out_help="output folder (replaced when training completes; checkpoints in OUT/checkpoints)")
    p.add_argument("--learning-rate", type=float, default=None,
                   help="peak learning rate (default: 1e-5 for an optical model, 2e-5 for a plain one)")
    p.add_argument("--num-train-epochs", type=float, default=3.0, help="epochs (default 3)")
    p.add_argument("--max-steps", type=int, default=-1, help="total steps; overrides --num-train-epochs (default -1: off)")
    p.add_argument("--per-device-train-batch-size", type=int, default=32, help="training batch per device (default 32)")
    p.add_argument("--per-device-eval-batch-size", type=int, default=64, help="evaluation batch per device (default 64)")
    p.add_argument("--seed", type=int, default=42, help="training seed (default 42)")
    precision = p.add_mutually_exclusive_group()
    precision.add_argument("--bf16", action="store_true", help="bfloat16 mixed precision")
    precision.add_argument("--fp16", action="store_true", help="float16 mixed precision (CUDA)")
    p.add_argument("--max-train-samples", type=int, default=None, help="train on a fixed random subset of N rows")
    p.add_argument("--warmup-ratio", type=float, default=0.1, help="share of steps with linear warmup (default 0.1)")
    p.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay (default 0.01)")
    p.add_argument("--max-grad-norm", type=float, default=1.0, help="gradient clipping norm (default 1.0; 0: off)")
    p.add_argument("--eval-strategy", choices=("epoch", "steps", "no"), default="epoch",
                   help="when to evaluate and checkpoint (default epoch)")
    p.add_argument("--eval-steps", type=int, default=None, help="interval for --eval-strategy steps")
    p.add_argument("--save-total-limit", type=int, default=2, help="checkpoints kept (default 2, the best always)")
    p.add_argument("--ft-stats", choices=("frozen", "auto"), default="frozen",
                   help="optical models: 'frozen' keeps the calibrated ranges (default), 'auto' updates them in training")
    p.add_argument("--resume", action="store_true", help="resume from the last checkpoint in OUT/checkpoints")
    p.add_argument("--no-load-best", dest="load_best_model_at_end", action="store_false",
                   help="keep the last weights instead of the best checkpoint's")
    p.set_defaults(func=_run_finetune)


# ------------------------------------------------------------------------------------------------
# eval


def _run_eval(args) -> int:
    with command_scope(args) as progress:
        result = _eval_from_args(args, progress)
    print_result(args, result, format_eval)
    return 0


def _eval_from_args(args, progress: bool) -> dict[str, Any]:
    return run_eval(
        model=args.model, task=args.task, glue_dir=args.glue_dir, cfg=args.cfg,
        calibrate_batches=args.calibrate_batches, calibrate_batch_size=args.calibrate_batch_size,
        calibrate_split=args.calibrate_split, split=args.split,
        batch_size=args.batch_size, max_eval_samples=args.max_eval_samples, max_seq_length=args.max_seq_length,
        device=args.device, dtype=args.dtype, seed=args.seed, progress=progress, compile=args.compile,
    )


def run_eval(*, model: str, task: str, glue_dir: str | None = None, cfg: str | None = None,
             calibrate_batches: int = 32, calibrate_batch_size: int = 32, calibrate_split: str = "train",
             split: str | None = None, batch_size: int = 32, max_eval_samples: int | None = None,
             max_seq_length: int = 128, device: str | None = None, dtype: str = "fp32", seed: int = 0,
             progress: bool = False, compile: bool | None = None) -> dict[str, Any]:
    """Scores ``model`` (and, with ``cfg``, its calibrated optical transform, calibrated on
    ``calibrate_split``) on ``task``; ``progress`` shows the evaluation and calibration bars;
    ``compile``: evaluate under ``torch.compile`` (None: on a GPU).

    Returns:
        ``{"task": ..., "n_examples": ..., "original": {metric: value}, "optical": {...},
        "speed": {"original": {"compiled", "compile_seconds", "samples_per_second"}, ...}}``;
        ``optical`` only with ``cfg`` or for a folder written by ``optopass.save``.
    """
    from optopass import load_config
    from optopass.tools.glue import pipeline
    from optopass.tools.io import is_saved_transform
    from optopass.tools.models import load_classifier

    spec = get_task(task)
    check_counts(as_flags=True, calibrate_batches=calibrate_batches, calibrate_batch_size=calibrate_batch_size,
                 batch_size=batch_size, max_seq_length=max_seq_length, max_eval_samples=max_eval_samples)
    check_calibrate_split(spec, calibrate_split)
    split = split or spec.validation_splits[0]
    saved = is_saved_transform(model)
    if saved and cfg is not None:
        raise ConfigError(f"--cfg: {model} is already an optical model (written by optopass.save); drop --cfg")
    config = load_config(cfg) if cfg is not None else None  # validated before the slow model load
    glue_dir = resolve_glue_dir(glue_dir)
    check_data(task, [split], glue_dir)
    if config is not None:
        check_calibration_data(spec, calibrate_split, glue_dir)

    opts = dict(glue_dir=glue_dir, split=split, batch_size=batch_size, max_seq_length=max_seq_length,
                max_eval_samples=max_eval_samples, device=device, dtype=dtype, progress=progress, compile=compile)
    result: dict[str, Any] = {"task": task, "speed": {}}

    def score(row: str, scored_model) -> None:
        evaluated = pipeline.evaluate(scored_model, task, tokenizer, **opts)
        result.update({"n_examples": evaluated["n_examples"], row: evaluated["metrics"]})
        result["speed"][row] = pipeline.eval_speed(evaluated)

    if saved:
        gm, tokenizer = pipeline.load_model(model, task)
        base, _ = load_classifier(str(Path(model) / "base"))
        score("original", base)
        score("optical", gm)
        return result
    hf_model, tokenizer = pipeline.load_model(model, task)
    score("original", hf_model)
    if config is not None:
        gm, _ = pipeline.transform(hf_model, task, config, calibrate_batches, tokenizer=tokenizer, glue_dir=glue_dir,
                                   calibrate_batch_size=calibrate_batch_size, calibrate_split=calibrate_split,
                                   max_seq_length=max_seq_length, device=device, seed=seed, progress=progress)
        score("optical", gm)
    return result


def format_eval(result: dict[str, Any]) -> str:
    """The human-readable table of ``optopass eval``."""
    rows = [name for name in ("original", "optical") if name in result]
    metrics = list(result["original"])
    lines = [f"task: {result['task']} ({result['n_examples']} examples)", ""]
    lines.append(f"{'':<10}" + "".join(f"{name:>22}" for name in metrics))
    for row in rows:
        lines.append(f"{row:<10}" + "".join(f"{result[row][name]:>22.4f}" for name in metrics))
    speeds = result.get("speed", {})
    if speeds:
        lines.append("")
        lines += [f"{row:<10}{format_speed(speeds[row])}" for row in rows if row in speeds]
    return "\n".join(lines)


def format_speed(speed: dict[str, Any]) -> str:
    """``compiled in 12.3 s, then 5279 samples/s`` (the compile time apart from the throughput)."""
    rate = speed.get("samples_per_second")
    rate_text = f"{rate:.0f} samples/s" if rate is not None else "no timed samples"
    if not speed.get("compiled"):
        return f"eager: {rate_text}" + (f" (warm-up {speed['compile_seconds']:.1f} s apart)"
                                         if speed.get("compile_seconds") else "")
    return f"compiled in {speed['compile_seconds']:.1f} s, then {rate_text}"


# ------------------------------------------------------------------------------------------------
# finetune


def _run_finetune(args) -> int:
    with command_scope(args) as progress:
        result = _finetune_from_args(args, progress)
    if int(os.environ.get("RANK", "0")) == 0:
        print_result(args, result, format_finetune)
    return 0


def _finetune_from_args(args, progress: bool) -> dict[str, Any]:
    return run_finetune(
        model=args.model, task=args.task, out=args.out, glue_dir=args.glue_dir, cfg=args.cfg,
        calibrate_batches=args.calibrate_batches, calibrate_batch_size=args.calibrate_batch_size,
        calibrate_split=args.calibrate_split, ft_stats=args.ft_stats, resume=args.resume, progress=progress,
        learning_rate=args.learning_rate, num_train_epochs=args.num_train_epochs, max_steps=args.max_steps,
        per_device_train_batch_size=args.per_device_train_batch_size,
        per_device_eval_batch_size=args.per_device_eval_batch_size, seed=args.seed, bf16=args.bf16, fp16=args.fp16,
        max_seq_length=args.max_seq_length, max_train_samples=args.max_train_samples,
        max_eval_samples=args.max_eval_samples, warmup_ratio=args.warmup_ratio, weight_decay=args.weight_decay,
        max_grad_norm=args.max_grad_norm, eval_strategy=args.eval_strategy, eval_steps=args.eval_steps,
        save_total_limit=args.save_total_limit, load_best_model_at_end=args.load_best_model_at_end,
        compile=args.compile,
    )


def run_finetune(*, model: str, task: str, out: str, glue_dir: str | None = None, cfg: str | None = None,
                 calibrate_batches: int = 32, calibrate_batch_size: int = 32, calibrate_split: str = "train",
                 ft_stats: str = "frozen", resume: bool = False, seed: int = 42, max_seq_length: int = 128,
                 progress: bool = False, **train_kwargs: Any) -> dict[str, Any]:
    """Fine-tunes ``model`` (its calibrated optical transform with ``cfg``, calibrated on
    ``calibrate_split``) and writes ``out``; ``progress`` shows the bars of calibration and training.

    Returns:
        ``{"task", "output_dir", "optical", "metrics", "global_step", "best_checkpoint",
        "learning_rate", "ft_stats", "speed"}``; ``speed``: the training steps' compile
        seconds and throughput (``compile`` in ``train_kwargs``: None compiles on a GPU).
    """
    from optopass import load_config
    from optopass.tools.glue import pipeline
    from optopass.tools.glue.trainer import check_options, finetune
    from optopass.tools.io import check_output_folder, is_saved_transform

    spec = get_task(task)
    check_counts(as_flags=True, calibrate_batches=calibrate_batches, calibrate_batch_size=calibrate_batch_size)
    check_options(as_flags=True, max_seq_length=max_seq_length, ft_stats=ft_stats, **train_kwargs)
    check_calibrate_split(spec, calibrate_split)
    check_output_folder(out, "--out")
    saved = is_saved_transform(model)
    if saved and cfg is not None:
        raise ConfigError(f"--cfg: {model} is already an optical model (written by optopass.save); drop --cfg")
    config = load_config(cfg) if cfg is not None else None
    glue_dir = resolve_glue_dir(glue_dir)
    check_data(task, ["train", spec.validation_splits[0]], glue_dir)
    if config is not None:
        check_calibration_data(spec, calibrate_split, glue_dir)

    loaded, tokenizer = pipeline.load_model(model, task)
    if config is not None:
        loaded, _ = pipeline.transform(loaded, task, config, calibrate_batches, tokenizer=tokenizer,
                                       glue_dir=glue_dir, calibrate_batch_size=calibrate_batch_size,
                                       calibrate_split=calibrate_split, max_seq_length=max_seq_length, seed=seed,
                                       progress=progress)
    trained = finetune(loaded, task, tokenizer, glue_dir=glue_dir, output_dir=out, seed=seed,
                       max_seq_length=max_seq_length, ft_stats=ft_stats, resume_from_checkpoint=resume or None,
                       progress=progress, **train_kwargs)
    best = trained.best_checkpoint
    return {
        "task": task,
        "output_dir": str(trained.output_dir),
        "optical": trained.settings["optical"],
        "metrics": trained.metrics,
        "global_step": trained.settings["global_step"],
        "best_checkpoint": Path(best).name if best else None,
        "learning_rate": trained.settings["learning_rate"],
        "ft_stats": trained.settings["ft_stats"],
        "speed": trained.speed,
    }


def format_finetune(result: dict[str, Any]) -> str:
    """The human-readable summary of ``optopass finetune``."""
    kind = "optical" if result["optical"] else "plain"
    lines = [f"task: {result['task']}   model: {kind}   steps: {result['global_step']}   "
             f"learning rate: {result['learning_rate']:g}" + (f"   ranges: {result['ft_stats']}" if result["optical"] else "")]
    scores = {k: v for k, v in result["metrics"].items() if k not in ("runtime", "samples_per_second", "steps_per_second", "epoch")}
    lines.append("validation: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))
    if result.get("speed"):
        lines.append("training: " + format_speed(result["speed"]))
    if result["best_checkpoint"]:
        lines.append(f"best checkpoint: {result['best_checkpoint']}")
    lines.append(f"saved to {result['output_dir']}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# shared checks


def resolve_glue_dir(glue_dir: str | os.PathLike | None) -> Path | None:
    """``--glue-dir`` as given, else the default local folder (None: the hub)."""
    from optopass.tools.glue.data import default_glue_dir

    return Path(glue_dir) if glue_dir is not None else default_glue_dir()


def check_data(task: str, splits: list[str], glue_dir: Path | None) -> None:
    """Fails early, before any model is loaded, when a needed local GLUE file is missing."""
    from optopass.tools.glue.data import glue_file

    if glue_dir is None:
        return
    spec = get_task(task)
    for split in splits:
        glue_file(spec, split, glue_dir)


def check_calibrate_split(spec: GlueTask, split: str) -> None:
    """``--calibrate-split`` must be a labelled split of the task: train or a validation split."""
    allowed = ("train", *spec.validation_splits)
    if split not in allowed:
        raise ConfigError(f"--calibrate-split: {spec.name} has no split {split!r}; allowed: {', '.join(allowed)}")


def check_calibration_data(spec: GlueTask, split: str, glue_dir: Path | None) -> None:
    """Like :func:`check_data` for the calibration split; a missing file names the option
    that picks another split."""
    try:
        check_data(spec.name, [split], glue_dir)
    except DataError as err:
        others = ", ".join(s for s in ("train", *spec.validation_splits) if s != split)
        raise DataError(f"{err}; calibration reads it: calibrate on another split with "
                        f"--calibrate-split ({others})") from None
