"""``optopass bench --modes glue``: the user's paths timed, plain against optical.

For each model (the bundled MiniLM, ``minilm``; the RoBERTa-base shape with random weights,
``roberta-base``; ``small`` for quick runs) and each run mode (``compiled``: what a GPU user
gets by default; ``eager``: ``--no-compile``, the CPU's default), the same mode for both
models:

* ``eval``: :func:`~optopass.tools.glue.evaluator.evaluate_glue` on the task's dev set
  (``--max-eval-samples`` caps the rows; batches of twice ``--glue-batch-size``, as
  ``examples/glue_eval.py``), ``--glue-eval-passes`` times with the same model: a pass over
  SST-2's 872 rows takes about 20 ms on one H200, of which the warm-up batches of each length
  are set apart, so one pass's rate is a handful of batches; the row takes the median of the
  passes' rates and the first pass's compile time;
* ``train``: :func:`~optopass.tools.glue.trainer.finetune` (the HF Trainer) for
  ``--glue-steps`` optimizer steps of ``--glue-batch-size`` rows, no evaluation.

Each row gives both models' samples per second after compiling (warm-up calls apart: see
:mod:`~optopass.tools.glue.timing`), their ratio plain/optical (how many times longer a sample
takes through the optical model), and each model's compile seconds beside.
The optical model is the plain one transformed with ``--cfg`` and calibrated on two training
batches (ranges frozen); both start every measurement from the same weights. The RoBERTa-shaped
models read the MiniLM tokenizer's ids (without token type ids, as RoBERTa's tokenizer): the
shapes and the work are RoBERTa-base's, the scores mean nothing.
"""

from __future__ import annotations

import contextlib
import copy
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

GLUE_MODELS = ("minilm", "roberta-base", "small")
DEFAULT_GLUE_MODELS = ("minilm", "roberta-base")
RUN_MODES = ("compiled", "eager")
CALIBRATE_BATCHES = 2


@dataclass
class GlueRow:
    mode: str  # always "glue"
    phase: str  # eval / train
    model: str  # minilm / roberta-base / small
    run_mode: str  # compiled / eager, the same for both models
    device: str
    dtype: str
    task: str
    batch: int
    max_seq_length: int
    samples: int  # eval: dev rows scored; train: steps x batch
    plain_samples_per_s: float | None
    optical_samples_per_s: float | None
    ratio: float | None  # plain / optical samples per second
    plain_compile_s: float
    optical_compile_s: float


def glue_bench_model(name: str, task: str) -> tuple[nn.Module, Any]:
    """(fp32 classifier, tokenizer) for ``name``: the bundled MiniLM with a fresh head, or a
    RoBERTa shape of ``bench.SHAPES`` with random weights over the MiniLM tokenizer's ids."""
    from transformers import RobertaConfig, RobertaForSequenceClassification

    from .bench import SHAPES
    from .glue import pipeline
    from .glue.tasks import get_task

    torch.manual_seed(0)
    model, tokenizer = pipeline.load_model("minilm", task, fresh_head=True)
    if name == "minilm":
        return model, tokenizer
    tokenizer = copy.deepcopy(tokenizer)
    tokenizer.model_input_names = ["input_ids", "attention_mask"]  # RoBERTa has no token types
    hidden, layers, heads, inter, vocab = SHAPES[name]
    config = RobertaConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                           intermediate_size=inter, vocab_size=max(vocab, len(tokenizer)), max_position_embeddings=514,
                           num_labels=get_task(task).num_labels, pad_token_id=tokenizer.pad_token_id,
                           attn_implementation="sdpa")
    torch.manual_seed(0)
    return RobertaForSequenceClassification(config), tokenizer


def run_glue_bench(*, device: str | None = None, dtype: str | None = None, models=DEFAULT_GLUE_MODELS,
                   run_modes=None, task: str = "sst2", glue_dir=None, max_eval_samples: int | None = None,
                   steps: int = 50, batch_size: int = 32, max_seq_length: int = 128, cfg=None,
                   log: Callable[[str], None] | None = None, eval_passes: int = 1,
                   profile_dir=None) -> list[GlueRow]:
    """Times evaluation and training, plain against optical, per model and run mode.

    Args:
        device: ``cuda`` or ``cpu`` (default: cuda when available).
        dtype: ``fp32``, ``bf16`` or ``fp16``: autocast in evaluation, mixed precision in
            training (default: bf16 on a GPU, fp32 on the CPU); weights stay float32.
        models: names from :data:`GLUE_MODELS`.
        run_modes: ``compiled`` and/or ``eager`` (default: compiled on a GPU, eager on the CPU).
        task: GLUE task (hub config name).
        glue_dir: ``glue_data`` folder (default: ``default_glue_dir()``).
        max_eval_samples: dev rows scored (default: all).
        steps: optimizer steps of each training measurement.
        batch_size: training batch; evaluation batches are twice as large.
        max_seq_length: longest tokenized input.
        cfg: optical config (default: the shipped one).
        log: called with a line per measurement.
        eval_passes: passes over the dev set per evaluation row (the median rate of the passes).
        profile_dir: a folder (created) that gets, per evaluation row and model, a
            ``torch.profiler`` table of one more pass (``glue_eval_<model>_<plain|optical>_<mode>.txt``).

    Returns:
        One :class:`GlueRow` per model, run mode and phase.

    Raises:
        DataError: the task's files are missing.
    """
    from .glue.cli import check_data, resolve_glue_dir
    from .glue.tasks import get_task

    log = log or (lambda line: None)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    on_gpu = device.startswith("cuda")
    dtype = dtype or ("bf16" if on_gpu else "fp32")
    run_modes = list(run_modes or (["compiled"] if on_gpu else ["eager"]))
    glue_dir = resolve_glue_dir(glue_dir)
    check_data(task, ["train", get_task(task).validation_splits[0]], glue_dir)
    setup = _Setup(device, dtype, task, glue_dir, max_eval_samples, steps, batch_size, max_seq_length, log,
                   eval_passes, profile_dir)
    rows = []
    for name in models:
        plain, optical, tokenizer = _model_pair(name, cfg, setup)
        for run_mode in run_modes:
            rows += [_measure(phase, name, run_mode, plain, optical, tokenizer, setup) for phase in ("eval", "train")]
    return rows


@dataclass
class _Setup:
    device: str
    dtype: str
    task: str
    glue_dir: Any
    max_eval_samples: int | None
    steps: int
    batch_size: int
    max_seq_length: int
    log: Callable[[str], None]
    eval_passes: int = 1
    profile_dir: Any = None


def _model_pair(name: str, cfg, setup: _Setup) -> tuple[nn.Module, nn.Module, Any]:
    """(plain, calibrated optical copy, tokenizer) on the device."""
    from .glue import pipeline

    plain, tokenizer = glue_bench_model(name, setup.task)
    plain.to(setup.device)
    optical, _ = pipeline.transform(plain, setup.task, cfg, CALIBRATE_BATCHES, tokenizer=tokenizer,
                                    glue_dir=setup.glue_dir, calibrate_batch_size=setup.batch_size,
                                    max_seq_length=setup.max_seq_length, device=setup.device)
    return plain, optical, tokenizer


def _measure(phase: str, name: str, run_mode: str, plain: nn.Module, optical: nn.Module, tokenizer,
             setup: _Setup) -> GlueRow:
    """One row: `phase` of both models in `run_mode`, each from its weights and state before."""
    speeds, samples = {}, 0
    for config, model in (("plain", plain), ("optical", optical)):
        with _state_kept(model):
            speed, samples = (_eval if phase == "eval" else _train)(model, tokenizer, run_mode == "compiled", setup)
            setup.log(f"glue {phase} {name} {run_mode} {config}: {_rate_text(speed)}, "
                      f"compile {speed['compile_seconds']:.1f} s")
            if phase == "eval" and setup.profile_dir is not None:
                _profile_eval(model, tokenizer, run_mode == "compiled", setup, f"{name}_{config}_{run_mode}")
        speeds[config] = speed
    plain_rate, optical_rate = (speeds[c]["samples_per_second"] for c in ("plain", "optical"))
    ratio = round(plain_rate / optical_rate, 3) if plain_rate and optical_rate else None
    return GlueRow("glue", phase, name, run_mode, setup.device, setup.dtype, setup.task,
                   setup.batch_size * (2 if phase == "eval" else 1), setup.max_seq_length, samples, plain_rate,
                   optical_rate, ratio, speeds["plain"]["compile_seconds"], speeds["optical"]["compile_seconds"])


def _rate_text(speed: dict) -> str:
    rate = speed["samples_per_second"]
    return "no samples" if rate is None else f"{rate:.1f} samples/s"


@contextlib.contextmanager
def _state_kept(model: nn.Module):
    """Puts back the weights and buffers (optical counters, ranges) and the training flag."""
    state = {key: value.detach().clone() for key, value in model.state_dict().items()}
    training = model.training
    try:
        yield
    finally:
        model.load_state_dict(state)
        model.train(training)


def _eval(model, tokenizer, compile: bool, setup: _Setup) -> tuple[dict, int]:
    """`setup.eval_passes` evaluations of the dev set with `model` (compiled once: a later pass
    finds the first one's graphs): the median of their rates, the first one's compile time."""
    results = [_evaluate(model, tokenizer, compile, setup) for _ in range(setup.eval_passes)]
    rates = [r["samples_per_second"] for r in results if r["samples_per_second"] is not None]
    rate = statistics.median(rates) if rates else None
    return {"compile_seconds": results[0]["compile_seconds"], "samples_per_second": rate}, results[0]["n_examples"]


def _evaluate(model, tokenizer, compile: bool, setup: _Setup) -> dict:
    """One pass of ``evaluate_glue`` over the dev set, batches twice the training batch."""
    from .glue.evaluator import evaluate_glue

    return evaluate_glue(model, setup.task, tokenizer, glue_dir=setup.glue_dir, batch_size=2 * setup.batch_size,
                         max_seq_length=setup.max_seq_length, device=setup.device, dtype=setup.dtype,
                         limit=setup.max_eval_samples, progress=False, compile=compile)


def _profile_eval(model, tokenizer, compile: bool, setup: _Setup, name: str) -> None:
    """One more evaluation pass under ``torch.profiler`` (the model compiled before: the pass
    finds its graphs), its table written to ``setup.profile_dir``."""
    from pathlib import Path

    from .bench import write_profile

    title = name.replace("_", " ")
    path = write_profile(lambda: _evaluate(model, tokenizer, compile, setup), setup.device,
                         Path(setup.profile_dir) / f"glue_eval_{name}.txt", f"glue eval {title}, {setup.task}, "
                         f"{setup.dtype}", calls=1)
    setup.log(f"glue eval {title}: profile in {path}")


def _train(model, tokenizer, compile: bool, setup: _Setup) -> tuple[dict, int]:
    from .glue.trainer import finetune

    # the Trainer prints its log records on stdout: stdout holds the table (or the JSON) only
    with tempfile.TemporaryDirectory(prefix="optopass-bench-glue-") as scratch, contextlib.redirect_stdout(sys.stderr):
        result = finetune(model, setup.task, tokenizer, glue_dir=setup.glue_dir, output_dir=scratch,
                          max_steps=setup.steps, per_device_train_batch_size=setup.batch_size,
                          max_train_samples=setup.steps * setup.batch_size, max_eval_samples=1,
                          max_seq_length=setup.max_seq_length, eval_strategy="no", final_eval=False,
                          bf16=setup.dtype == "bf16", fp16=setup.dtype == "fp16",
                          use_cpu=not setup.device.startswith("cuda"), logging_steps=max(setup.steps, 1),
                          keep_checkpoints=False, progress=False, compile=compile, seed=0)
    speed = {key: result.speed[key] for key in ("compile_seconds", "samples_per_second")}
    return speed, setup.steps * setup.batch_size


def format_glue_rows(rows: list[GlueRow]) -> str:
    """The rows as a table: samples/s of each model, the ratio, compile seconds beside."""
    if not rows:
        return "no glue rows"
    first = rows[0]
    lines = [f"GLUE {first.task}, device {first.device}, {first.dtype}, max length {first.max_seq_length}",
             f"{'phase':<7}{'model':<14}{'mode':<10}{'batch':>6}{'samples':>9}{'plain/s':>11}{'optical/s':>11}"
             f"{'ratio':>8}{'compile plain s':>17}{'compile optical s':>19}"]
    for r in rows:
        plain = f"{r.plain_samples_per_s:.1f}" if r.plain_samples_per_s is not None else "-"
        optical = f"{r.optical_samples_per_s:.1f}" if r.optical_samples_per_s is not None else "-"
        ratio = f"{r.ratio:.2f}" if r.ratio is not None else "-"
        lines.append(f"{r.phase:<7}{r.model:<14}{r.run_mode:<10}{r.batch:>6}{r.samples:>9}{plain:>11}{optical:>11}"
                     f"{ratio:>8}{r.plain_compile_s:>17.1f}{r.optical_compile_s:>19.1f}")
    return "\n".join(lines)
