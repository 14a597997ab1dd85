"""Fine-tune a sequence classifier on a GLUE task with the Hugging Face ``Trainer``.

One code path serves a plain ``transformers`` model and an optical ``OpticalGraphModule``
(made by ``apply_optical_pass``): mixed precision (``bf16``/``fp16``), gradient clipping,
linear warmup, evaluation every epoch (or N steps), ``load_best_model_at_end`` by the task's
headline metric, checkpoints with ``save_total_limit``, and resume. It runs unchanged under
``torchrun --nproc_per_node=N``: the Trainer wraps the model in DDP (``find_unused_parameters``
off, buffers broadcast from rank 0 before each forward, so the optical sites' range statistics
and dither counters stay identical on every rank).

What is different for an optical model:

* its forward takes only its captured inputs, so ``remove_unused_columns`` is off, the collator
  keeps only the model's input names and ``labels``, and ``label_names=["labels"]`` is set (the
  Trainer cannot find ``labels`` in the graph's signature);
* every checkpoint also holds the files of ``optopass.save`` (``optopass.load(checkpoint)``
  restores it); the Trainer itself resumes and loads the best model from ``model.safetensors``,
  the whole ``state_dict`` (weights and optical buffers);
* the range statistics follow ``ft_stats``:

  ``frozen`` (default): the calibrated ranges stay fixed during fine-tuning, so the output range
  of every optical site stays what calibration measured, and the weights learn to live inside
  it (straight-through gradients through every quantizer);
  ``auto``: ranges keep updating (EMA) on every training forward, never in eval.

Recipe (the defaults): start from the task-fine-tuned original, apply the optical pass, calibrate
on training batches, freeze the ranges, then fine-tune with learning rate
:data:`DEFAULT_OPTICAL_LEARNING_RATE` (1e-5), 10% warmup, gradient clipping at 1.0 and
``load_best_model_at_end`` by the task metric. A plain model fine-tunes with
:data:`DEFAULT_LEARNING_RATE` (2e-5; 2e-5..5e-5 are the usual GLUE values, up to 1e-4 for
MiniLM-sized encoders).

Why the reference study's optical STS-B fine-tune collapsed (Spearman 0.033 from 0.909): its
learning rate, 1e-3. Measured on an H100 with MiniLM-L6 on the full STS-B (original fine-tuned
3 epochs at 5e-5: Spearman 0.853; post-training transform: 0.526), one epoch of fine-tuning,
Spearman on the dev set every 45 steps:

=====================================  ==========================================
optical, lr 1e-3, ranges frozen        0.010, then NaN: constant predictions
optical, lr 1e-3, ranges auto          -0.024, NaN, -0.013, NaN
plain original, lr 1e-3                0.213, 0.097, 0.137, 0.070
optical, lr 2e-5, ranges auto          0.386, 0.412, 0.428, 0.447
optical, lr 1e-5, ranges frozen        0.546, 0.508, 0.505, 0.512 (best kept: 0.546)
=====================================  ==========================================

At 1e-3 AdamW wipes the pretrained encoder within a hundred steps, optical or not; the MSE
regression head then settles on the mean score, and the pooler's tanh saturates, so every
prediction is the same number (Spearman undefined, reported as NaN or ~0). Classification tasks
hide the same damage behind the majority-class accuracy. With ranges updating (``auto``) the
calibrated ranges are re-estimated from the first batches, which costs accuracy at first.
A fresh regression head also starts at the mean label in ``pipeline.train_original``.

The final model is written to ``output_dir`` through a temporary folder renamed into place:
``optopass.save`` for an optical model, ``save_pretrained`` (model and tokenizer) for a plain one.
Checkpoints live in ``output_dir/checkpoints`` and move along with it.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import Trainer, TrainingArguments

from optopass.tools.checks import check_values, integer, is_int, number, one_of, option_name
from optopass.tools.compiling import inductor_patches
from optopass.tools.errors import ConfigError, DataError
from optopass.tools.glue.data import load_glue
from optopass.tools.glue.evaluator import DEFAULT_PAD_TO_MULTIPLE_OF, pad_batch, resolve_compile, tokenize_glue
from optopass.tools.glue.metrics import compute_glue_metrics
from optopass.tools.glue.tasks import get_task
from optopass.tools.glue.timing import StepTimer

DEFAULT_LEARNING_RATE = 2e-5
DEFAULT_OPTICAL_LEARNING_RATE = 1e-5
FT_STATS_MODES = ("frozen", "auto")
EVAL_STRATEGIES = ("epoch", "steps", "no")
CHECKPOINTS = "checkpoints"
RESULTS_FILE = "finetune_results.json"
# Seed of the shuffle that picks `max_train_samples` rows: fixed, so every training seed sees
# the same subset and seeds differ only in initialisation and order.
SUBSET_SEED = 0


@dataclass
class FinetuneResult:
    """What :func:`finetune` did.

    Attributes:
        model: the trained model (the best checkpoint's weights when ``load_best_model_at_end``).
        metrics: the Trainer's evaluation of ``model`` on the validation split, without the
            ``eval_`` prefix (e.g. ``{"spearmanr": 0.85, "pearson": 0.86, "loss": 0.6, ...}``).
        output_dir: where the final model was written.
        best_checkpoint: the checkpoint ``load_best_model_at_end`` restored, or None.
        train_metrics: the Trainer's training summary (``train_loss``, ``train_runtime``, ...).
        log_history: the Trainer's log records (losses, learning rates, evaluations).
        settings: the resolved hyperparameters (learning rate, stats mode, ...).
        speed: ``{"compiled", "compile_seconds", "samples_per_second"}`` of the training steps:
            the seconds of the steps that compiled, and the throughput of the others.
    """

    model: nn.Module
    metrics: dict[str, float]
    output_dir: Path
    best_checkpoint: str | None = None
    train_metrics: dict[str, float] = field(default_factory=dict)
    log_history: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    speed: dict[str, Any] = field(default_factory=dict)


def is_optical(model: nn.Module) -> bool:
    """Whether ``model`` was made by ``apply_optical_pass`` (or ``optopass.load``)."""
    return getattr(model, "optical_record", None) is not None and hasattr(model, "capture_info")


def default_learning_rate(model: nn.Module) -> float:
    """1e-5 for an optical model, 2e-5 for a plain one (see the module docstring)."""
    return DEFAULT_OPTICAL_LEARNING_RATE if is_optical(model) else DEFAULT_LEARNING_RATE


def model_input_names(model: nn.Module, tokenizer: Any) -> tuple[str, ...]:
    """The keyword inputs to feed ``model``: a capture's inputs, else the tokenizer's outputs
    that the model's ``forward`` accepts."""
    if is_optical(model):
        return tuple(model.capture_info.input_names)
    accepted = inspect.signature(model.forward).parameters
    names = getattr(tokenizer, "model_input_names", None) or ("input_ids", "attention_mask", "token_type_ids")
    return tuple(name for name in names if name in accepted)


class GlueCollator:
    """Pads a list of tokenized GLUE rows into a batch of the model's inputs and ``labels``.

    Padding is :func:`~optopass.tools.glue.evaluator.pad_batch` with the tokenizer's pad id and
    side, as in ``evaluate_glue``: lengths up to a multiple of `pad_to_multiple_of` (a few
    buckets, so that a compiled model meets a few shapes), never past `max_length`; columns the
    model does not take are dropped.
    """

    def __init__(self, tokenizer: Any, input_names: Sequence[str], regression: bool, *,
                 pad_to_multiple_of: int | None = DEFAULT_PAD_TO_MULTIPLE_OF, max_length: int | None = None):
        self.input_names = tuple(input_names)
        self.pad_to_multiple_of = pad_to_multiple_of
        self.max_length = max_length
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.padding_side = getattr(tokenizer, "padding_side", "right")
        self.label_dtype = torch.float32 if regression else torch.long

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        names = [name for name in self.input_names if name in rows[0]]
        batch = pad_batch({name: [row[name] for row in rows] for name in names}, self.pad_token_id, self.padding_side,
                          pad_to_multiple_of=self.pad_to_multiple_of, max_length=self.max_length)
        labels = [row["labels"] if "labels" in row else row["label"] for row in rows]
        batch["labels"] = torch.tensor(labels, dtype=self.label_dtype)
        return batch


def glue_split(task: str, split: str, tokenizer: Any, *, glue_dir, max_seq_length: int, max_samples: int | None,
               shuffle_seed: int | None = None):
    """A tokenized split, cut to ``max_samples`` rows (a fixed-seed shuffled subset when
    ``shuffle_seed`` is given, else the first rows)."""
    dataset = load_glue(task, split, glue_dir)
    if max_samples is not None and max_samples < len(dataset):
        if shuffle_seed is not None:
            dataset = dataset.shuffle(seed=shuffle_seed)
        dataset = dataset.select(range(max_samples))
    return tokenize_glue(dataset, task, tokenizer, max_seq_length)


def glue_compute_metrics(task: str):
    """``compute_metrics`` for the Trainer: the task's official metrics from its logits."""

    def compute(eval_pred) -> dict[str, float]:
        predictions = eval_pred.predictions
        if isinstance(predictions, (tuple, list)):
            predictions = predictions[0]
        return compute_glue_metrics(task, predictions, eval_pred.label_ids)

    return compute


def finetune(
    model: nn.Module,
    task: str,
    tokenizer: Any,
    *,
    glue_dir: str | os.PathLike | None,
    output_dir: str | os.PathLike,
    learning_rate: float | None = None,
    num_train_epochs: float = 3.0,
    max_steps: int = -1,
    per_device_train_batch_size: int = 32,
    per_device_eval_batch_size: int = 64,
    seed: int = 42,
    bf16: bool = False,
    fp16: bool = False,
    max_seq_length: int = 128,
    warmup_ratio: float = 0.1,
    weight_decay: float = 0.01,
    max_grad_norm: float = 1.0,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    eval_strategy: str = "epoch",
    eval_steps: int | None = None,
    load_best_model_at_end: bool = True,
    resume_from_checkpoint: str | bool | None = None,
    save_total_limit: int = 2,
    keep_checkpoints: bool = True,
    ft_stats: str = "frozen",
    logging_steps: int = 50,
    dataloader_num_workers: int = 0,
    progress: bool = True,
    use_cpu: bool = False,
    callbacks: Sequence[Any] | None = None,
    final_eval: bool = True,
    trainer_overrides: Mapping[str, Any] | None = None,
    compile: bool | None = None,
    pad_to_multiple_of: int | None = DEFAULT_PAD_TO_MULTIPLE_OF,
) -> FinetuneResult:
    """Fine-tunes ``model`` on the training split of a GLUE task and writes it to ``output_dir``.

    Args:
        model: a ``transformers`` sequence classifier, or an optical model from
            ``apply_optical_pass`` / ``optopass.load`` (calibrated first when ``ft_stats`` is
            ``frozen``). Trained in place.
        task: hub config name of the task (``sst2``, ``stsb``, ...).
        tokenizer: the model's tokenizer.
        glue_dir: a classic ``glue_data`` folder; None loads GLUE from the hub.
        output_dir: where the final model goes (replaced when complete); checkpoints are kept
            in ``output_dir/checkpoints``.
        learning_rate: peak AdamW learning rate; None: 1e-5 for an optical model, 2e-5 else.
        num_train_epochs: epochs (ignored when ``max_steps`` > 0).
        max_steps: total optimizer steps; -1 trains ``num_train_epochs``.
        per_device_train_batch_size: training batch per device.
        per_device_eval_batch_size: evaluation batch per device.
        seed: seed of initialisation, data order and dropout.
        bf16: mixed precision in bfloat16 (CUDA, or CPU autocast).
        fp16: mixed precision in float16 with loss scaling (CUDA only).
        max_seq_length: longest tokenized input; longer ones are truncated.
        warmup_ratio: share of the steps with linear warmup, in [0, 1).
        weight_decay: AdamW weight decay (not on biases and LayerNorm weights).
        max_grad_norm: gradient clipping norm; 0 turns clipping off.
        max_train_samples: train on a fixed random subset of this many rows.
        max_eval_samples: evaluate on the first this many validation rows.
        eval_strategy: ``epoch``, ``steps`` (every ``eval_steps``) or ``no``.
        eval_steps: evaluation and checkpoint interval for ``eval_strategy="steps"``.
        load_best_model_at_end: restore the checkpoint with the best headline metric.
        resume_from_checkpoint: True resumes from the last checkpoint in
            ``output_dir/checkpoints``; a path resumes from that checkpoint.
        save_total_limit: checkpoints kept (the best one is always kept).
        keep_checkpoints: keep ``output_dir/checkpoints`` after a successful run; False
            deletes them once the final model is written (saves disk in sweeps).
        ft_stats: optical models only: ``frozen`` keeps the calibrated ranges, ``auto`` lets
            them update in training mode.
        logging_steps: loss logging interval.
        dataloader_num_workers: data loading worker processes.
        progress: show the Trainer's progress bars.
        use_cpu: train on the CPU even when CUDA is available.
        callbacks: extra ``transformers.TrainerCallback`` objects.
        final_eval: evaluate the final model with the Trainer (skipped when ``eval_strategy``
            is ``no``); the result is :attr:`FinetuneResult.metrics`.
        trainer_overrides: further ``TrainingArguments`` fields, set last.
        compile: train through ``torch.compile`` (the Trainer's ``torch_compile``: Inductor,
            default mode; checkpoints and the final model hold the uncompiled module's weights,
            so ``optopass.save``/``load`` and resuming work as without it); None: on for a
            CUDA device, off elsewhere (``resolve_training_compile``).
        pad_to_multiple_of: pad each batch's length up to a multiple of this many tokens
            (capped at ``max_seq_length``); None: to the batch's longest row.

    Returns:
        A :class:`FinetuneResult`.

    Raises:
        ConfigError: an option is out of range, or an optical model to be trained with frozen
            statistics was never calibrated.
        DataError: the task or its data cannot be loaded.
    """
    spec = get_task(task)
    optical = is_optical(model)
    learning_rate = default_learning_rate(model) if learning_rate is None else learning_rate
    check_options(
        learning_rate=learning_rate, num_train_epochs=num_train_epochs, max_steps=max_steps,
        per_device_train_batch_size=per_device_train_batch_size, per_device_eval_batch_size=per_device_eval_batch_size,
        max_seq_length=max_seq_length, warmup_ratio=warmup_ratio, weight_decay=weight_decay,
        max_grad_norm=max_grad_norm, max_train_samples=max_train_samples, max_eval_samples=max_eval_samples,
        eval_strategy=eval_strategy, eval_steps=eval_steps, save_total_limit=save_total_limit, ft_stats=ft_stats,
        bf16=bf16, fp16=fp16, use_cpu=use_cpu, logging_steps=logging_steps, pad_to_multiple_of=pad_to_multiple_of,
    )
    use_cpu = use_cpu or not torch.cuda.is_available()  # the Trainer's bf16 check asks for it on CPU
    device = "cpu" if use_cpu else "cuda"
    compiled = resolve_training_compile(compile, device, model)
    output_dir = Path(output_dir)
    checkpoint_dir = output_dir / CHECKPOINTS
    resume = _resolve_resume(resume_from_checkpoint, checkpoint_dir)
    if optical:
        _prepare_optical(model, ft_stats)
    _set_problem_type(model, spec.is_regression)

    train_set = glue_split(task, "train", tokenizer, glue_dir=glue_dir, max_seq_length=max_seq_length,
                           max_samples=max_train_samples, shuffle_seed=SUBSET_SEED)
    eval_set = glue_split(task, spec.validation_splits[0], tokenizer, glue_dir=glue_dir,
                          max_seq_length=max_seq_length, max_samples=max_eval_samples)
    evaluating = eval_strategy != "no"
    args = _training_arguments(
        checkpoint_dir, spec.headline_metric, learning_rate=learning_rate, num_train_epochs=num_train_epochs,
        max_steps=max_steps, per_device_train_batch_size=per_device_train_batch_size,
        per_device_eval_batch_size=per_device_eval_batch_size, seed=seed, bf16=bf16, fp16=fp16,
        warmup_ratio=warmup_ratio, weight_decay=weight_decay, max_grad_norm=max_grad_norm,
        eval_strategy=eval_strategy, eval_steps=eval_steps,
        load_best_model_at_end=load_best_model_at_end and evaluating, save_total_limit=save_total_limit,
        logging_steps=logging_steps, dataloader_num_workers=dataloader_num_workers, progress=progress,
        use_cpu=use_cpu, torch_compile=compiled, overrides=trainer_overrides,
    )
    step_timer = StepTimer(compiled, device)
    trainer_cls = OpticalTrainer if optical else GlueTrainer
    trainer = trainer_cls(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_set if evaluating else None,
        data_collator=GlueCollator(tokenizer, model_input_names(model, tokenizer), spec.is_regression,
                                   pad_to_multiple_of=pad_to_multiple_of, max_length=max_seq_length),
        processing_class=tokenizer,
        compute_metrics=glue_compute_metrics(task),
        callbacks=[*(callbacks or []), step_timer],
    )
    # the Trainer compiles the model inside these calls
    with inductor_patches(optical=optical):
        train_output = trainer.train(resume_from_checkpoint=resume)
        model = drop_autocast_wrapper(trainer.accelerator.unwrap_model(trainer.model))
        metrics = trainer.evaluate(eval_set) if evaluating and final_eval else {}
    metrics = {key.removeprefix("eval_"): value for key, value in metrics.items()}
    settings = {
        "task": task, "optical": optical, "learning_rate": learning_rate, "ft_stats": ft_stats if optical else None,
        "num_train_epochs": num_train_epochs, "max_steps": max_steps, "global_step": trainer.state.global_step,
        "per_device_train_batch_size": per_device_train_batch_size, "seed": seed, "bf16": bf16, "fp16": fp16,
        "warmup_ratio": warmup_ratio, "weight_decay": weight_decay, "max_grad_norm": max_grad_norm,
        "max_seq_length": max_seq_length, "max_train_samples": max_train_samples, "train_rows": len(train_set),
        "max_eval_samples": max_eval_samples, "eval_rows": len(eval_set), "compiled": compiled,
        "pad_to_multiple_of": pad_to_multiple_of,
    }
    result = FinetuneResult(
        model=model, metrics=metrics, output_dir=output_dir, best_checkpoint=trainer.state.best_model_checkpoint,
        train_metrics=dict(train_output.metrics), log_history=list(trainer.state.log_history), settings=settings,
        speed={"compiled": compiled, **step_timer.throughput.summary()},
    )
    if trainer.args.should_save:
        write_final_model(model, tokenizer, output_dir, result)
        if not keep_checkpoints:
            shutil.rmtree(output_dir / CHECKPOINTS, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    return result


def resolve_training_compile(compile: bool | None, device: torch.device | str, model: nn.Module) -> bool:
    """Whether ``finetune`` trains through torch.compile: as given; None (auto): on a CUDA device.

    ``compile=True`` for a model whose SqueezeLight sites compute the ring array as torch ops
    (``kernel = "unfused"``) on a CUDA device warns: compiled on one H200 (torch 2.11), that
    path's gradients disagreed with eager in every element (``test_ring_kernels_compile_as_one_operator``,
    before the sites took their kernels under torch.compile); the ring kernels, one operator in
    the graph, agree. The auto choice keeps such a model eager."""
    if compile is None:
        return resolve_compile(None, device) and not _rings_as_torch_ops(model)
    if compile and torch.device(device).type == "cuda" and _rings_as_torch_ops(model):
        warnings.warn("compiling SqueezeLight's ring array as torch ops (kernel 'unfused') for training: its compiled "
                      "gradients disagreed with eager on a GPU", stacklevel=3)
    return bool(compile)


def _has_optical_sites(model: nn.Module) -> bool:
    """Whether `model` holds an optical site (a transformed model)."""
    from optopass.passes.optical.sites import optical_sites

    return next(optical_sites(model), None) is not None


def _rings_as_torch_ops(model: nn.Module) -> bool:
    """Whether a SqueezeLight site of `model` computes its ring array as torch ops (kernel 'unfused')."""
    from optopass.passes.optical.sites import optical_sites
    from optopass.passes.optical.squeezelight import SqueezeLightLinearSite

    return any(isinstance(site, SqueezeLightLinearSite) and site.kernel == "unfused"
               for _, site in optical_sites(model))


def _set_problem_type(model: nn.Module, regression: bool) -> None:
    """Sets a Hugging Face classifier's ``config.problem_type`` as its first forward would.

    The model's forward sets it when it is None; under torch.compile that write fails the guard
    on it, and the second step compiles the model again."""
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "problem_type") and config.problem_type is None:
        config.problem_type = "regression" if regression else "single_label_classification"


class GlueTrainer(Trainer):
    """The HF ``Trainer`` whose compiled model (``torch_compile``) meets every batch shape with
    one graph.

    Batches come in a few padded lengths (``GlueCollator``) and a shorter last batch. Left to
    itself, torch.compile traces the first batch's shape as static and, at the first other shape,
    traces the model again with dynamic sizes: two compiles of the training step (and two of the
    evaluation) where one serves every shape. On a transformed model one compile of the training
    step takes minutes on a GPU host (``docs/speed.md``), so the inputs' batch and length
    dimensions are marked dynamic from the first batch. (``torch.compile(dynamic=True)`` makes
    every tensor dynamic, the optical sites' buffers included, and compiled slower in a trial on
    the CPU.)
    """

    def _prepare_inputs(self, inputs):
        inputs = super()._prepare_inputs(inputs)
        if self.args.torch_compile:
            for value in inputs.values():
                if isinstance(value, torch.Tensor):
                    for dim in range(min(value.dim(), 2)):  # (batch, length)
                        torch._dynamo.maybe_mark_dynamic(value, dim)
        return inputs


class OpticalTrainer(GlueTrainer):
    """The HF ``Trainer`` for an optical model: each checkpoint also holds ``optopass.save``'s
    files, so that ``optopass.load(checkpoint)`` restores it."""

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if state_dict is None:
            state_dict = self.model.state_dict()
        # safetensors refuses non-contiguous tensors; buffers of a capture can be views.
        state_dict = {key: value.contiguous() for key, value in state_dict.items()}
        super()._save(output_dir, state_dict=state_dict)
        if self.args.should_save:
            save_transform_into(self.accelerator.unwrap_model(self.model), output_dir, self.processing_class)


def drop_autocast_wrapper(model: nn.Module) -> nn.Module:
    """Gives ``model`` its class's ``forward`` back.

    For mixed precision, accelerate replaces ``model.forward`` by an autocast wrapper (an
    instance attribute, the original kept as ``_original_forward``). Left in place, a later
    ``apply_optical_pass`` traces the whole model inside an autocast region, where the rewrite
    finds no linear layer. accelerate's own ``unwrap_model(keep_fp32_wrapper=False)`` also peels
    the ``transformers`` decorators off ``forward``; dropping the instance attributes does not.
    """
    if "_original_forward" in model.__dict__:
        model.__dict__.pop("forward", None)
        model.__dict__.pop("_original_forward", None)
    return model


def save_transform_into(gm: nn.Module, directory: str | os.PathLike, tokenizer: Any = None) -> None:
    """Writes ``optopass.save``'s files into an existing folder, beside what it holds."""
    from optopass import save

    directory = Path(directory)
    with tempfile.TemporaryDirectory(prefix=".optopass-", dir=directory) as scratch:
        saved = save(gm, Path(scratch) / "transform", tokenizer=tokenizer)
        for entry in saved.iterdir():
            target = directory / entry.name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            entry.rename(target)


def write_final_model(model: nn.Module, tokenizer: Any, output_dir: str | os.PathLike,
                      result: FinetuneResult | None = None) -> Path:
    """Writes the trained model to ``output_dir`` through a temporary folder renamed into place.

    An optical model is written with ``optopass.save``, a plain one with ``save_pretrained``
    (model and tokenizer). The ``checkpoints`` folder of the run, and the results of
    ``result``, move into the new folder.
    """
    from optopass import save

    output_dir = Path(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=output_dir.parent))
    staged = scratch / "model"
    try:
        if is_optical(model):
            save(model, staged, tokenizer=tokenizer)
        else:
            model.save_pretrained(staged)
            if tokenizer is not None:
                tokenizer.save_pretrained(staged)
        if result is not None:
            (staged / RESULTS_FILE).write_text(json.dumps(_results_record(result), indent=2, default=str))
        checkpoints = output_dir / CHECKPOINTS
        if checkpoints.is_dir():
            checkpoints.rename(staged / CHECKPOINTS)
        if output_dir.exists():
            output_dir.rename(scratch / "previous")
        staged.rename(output_dir)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return output_dir


def _results_record(result: FinetuneResult) -> dict[str, Any]:
    best = result.best_checkpoint
    return {
        "metrics": result.metrics,
        "train": result.train_metrics,
        "speed": result.speed,
        "settings": result.settings,
        "best_checkpoint": Path(best).name if best else None,
        "log_history": result.log_history,
    }


def read_results(directory: str | os.PathLike) -> dict[str, Any] | None:
    """The ``finetune_results.json`` that :func:`finetune` wrote into ``directory``, or None."""
    path = Path(directory) / RESULTS_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def _prepare_optical(model: nn.Module, ft_stats: str) -> None:
    """Sets the statistics mode for fine-tuning; frozen ranges must have been calibrated."""
    from optopass.passes.optical.calibrate import set_stats_mode

    if ft_stats == "frozen" and not is_calibrated(model):
        raise ConfigError(
            "ft_stats: 'frozen' needs a calibrated optical model; run optopass.calibrate(model, batches) "
            "first, or use ft_stats='auto'"
        )
    if not _has_optical_sites(model):
        raise ConfigError("the optical model has no optical site; nothing to fine-tune through the optical ops")
    set_stats_mode(model, ft_stats)


def is_calibrated(model: nn.Module) -> bool:
    """Whether every optical site of ``model`` has observed all of its ranges (no NaN left in
    any site's ``stats()``)."""
    from optopass.passes.optical.sites import optical_sites

    for _, site in optical_sites(model):
        stats = site.stats() if hasattr(site, "stats") else {}
        values = torch.tensor(_flatten(list(stats.values())), dtype=torch.float64)
        if bool(torch.isnan(values).any()):
            return False
    return True


def _flatten(values) -> list[float]:
    if isinstance(values, (list, tuple)):
        return [v for item in values for v in _flatten(item)]
    return [float(values)]


def _training_arguments(checkpoint_dir: Path, headline: str, *, warmup_ratio, eval_strategy, eval_steps, progress,
                        use_cpu, overrides, **same_named):
    """The run's ``TrainingArguments``: the `same_named` options (``learning_rate``, ``seed``,
    ``bf16``, ``save_total_limit``, ...) are fields of the same name; the rest are set here."""
    values = dict(
        same_named,
        output_dir=str(checkpoint_dir),
        warmup_steps=warmup_ratio,  # a float in [0, 1) is a share of the total steps
        lr_scheduler_type="linear",
        eval_strategy=eval_strategy,
        save_strategy=eval_strategy,  # checkpoints when evaluating, so that the best one can be kept
        eval_steps=eval_steps,
        save_steps=eval_steps,
        metric_for_best_model=headline,
        greater_is_better=True,
        report_to="none",
        remove_unused_columns=False,
        label_names=["labels"],
        ddp_find_unused_parameters=False,
        dataloader_pin_memory=torch.cuda.is_available() and not use_cpu,
        disable_tqdm=not progress,
        use_cpu=use_cpu,
    )
    values.update(overrides or {})
    return TrainingArguments(**values)


def _resolve_resume(resume: str | bool | None, checkpoint_dir: Path) -> str | None:
    """True -> the last checkpoint in ``checkpoint_dir``; a path must exist."""
    from transformers.trainer_utils import get_last_checkpoint

    if resume is None or resume is False:
        return None
    if resume is True:
        last = get_last_checkpoint(str(checkpoint_dir)) if checkpoint_dir.is_dir() else None
        if last is None:
            raise DataError(f"{checkpoint_dir}: no checkpoint to resume from (it holds no checkpoint-N folder)")
        return last
    if not Path(resume).is_dir():
        raise DataError(f"{resume}: checkpoint folder to resume from not found")
    return str(resume)


# option -> (test, what is allowed)
_OPTION_RULES = {
    "learning_rate": number(above=0, optional=True),  # None: the model's default
    "num_train_epochs": number(above=0),
    "max_steps": (lambda v: is_int(v) and (v == -1 or v >= 1), "-1 (train num_train_epochs) or an integer >= 1"),
    **dict.fromkeys(("per_device_train_batch_size", "per_device_eval_batch_size", "max_seq_length",
                     "save_total_limit", "logging_steps"), integer(1)),
    **dict.fromkeys(("max_train_samples", "max_eval_samples", "eval_steps", "pad_to_multiple_of"),
                    integer(1, optional=True)),
    "warmup_ratio": number(at_least=0, below=1),
    **dict.fromkeys(("weight_decay", "max_grad_norm"), number(at_least=0)),
    "eval_strategy": one_of(EVAL_STRATEGIES),
    "ft_stats": one_of(FT_STATS_MODES),
}


def check_options(*, as_flags: bool = False, **options: Any) -> None:
    """Checks the :func:`finetune` options that are given (``learning_rate=None`` means the
    default and passes).

    Args:
        as_flags: name the options as the command line's flags (``--max-steps``).
        **options: option name -> value.

    Raises:
        ConfigError: one line naming the first option out of range and what is allowed.
    """
    check_values(options, _OPTION_RULES, as_flags=as_flags)
    name = functools.partial(option_name, as_flag=as_flags)
    if options.get("eval_strategy") == "steps" and options.get("eval_steps") is None:
        raise ConfigError(f"{name('eval_steps')}: required with {name('eval_strategy')} steps")
    if options.get("bf16") and options.get("fp16"):
        raise ConfigError(f"{name('bf16')} and {name('fp16')}: choose one mixed precision, not both")
    if options.get("fp16") and (options.get("use_cpu") or not torch.cuda.is_available()):
        raise ConfigError(f"{name('fp16')}: needs a CUDA device; use {name('bf16')} on the CPU")
