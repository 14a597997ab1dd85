"""The GLUE study as functions: fine-tune the original, a random baseline, the post-training
optical transform, and transform-aware fine-tuning. ``optopass eval`` / ``optopass finetune``
and ``examples/glue_eval.py`` are built on them.

Every stage is scored the same way, with :func:`~optopass.tools.glue.evaluator.evaluate_glue`
on the task's (first) validation split, and returns a :class:`StageResult` whose ``metrics`` is
the metric dict (``{"accuracy": ...}``, ``{"spearmanr": ..., "pearson": ...}``, ...).

Settings (the names of the long-format CSV of the example):

``original``         the pretrained model fine-tuned on the task (the 100% row);
``random``           the pretrained encoder with a freshly initialised, untrained classification
                     head: what a classifier scores before it has seen a single task label;
``ot_ptq``           the fine-tuned original, transformed (Optical Transformer config),
                     calibrated on ``calibrate_batches`` training batches, ranges frozen;
``ot_ft``            ``ot_ptq`` fine-tuned through the optical ops (straight-through gradients);
``squeezelight_ptq`` / ``squeezelight_ft``: the same with a SqueezeLight config.
"""

from __future__ import annotations

import copy
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from optopass.tools.checks import check_counts
from optopass.tools.config import DEFAULT_SKIP
from optopass.tools.errors import ConfigError, ModelLoadError
from optopass.tools.glue.data import load_glue
from optopass.tools.glue.evaluator import evaluate_glue, pad_batch
from optopass.tools.glue.tasks import get_task
from optopass.tools.glue.trainer import (
    DEFAULT_LEARNING_RATE,
    DEFAULT_OPTICAL_LEARNING_RATE,
    finetune,
    glue_split,
    is_optical,
    model_input_names,
)

DEFAULT_CALIBRATE_BATCHES = 32
DEFAULT_CALIBRATE_BATCH_SIZE = 32
SETTINGS = ("original", "random", "ot_ptq", "ot_ft", "squeezelight_ptq", "squeezelight_ft")


@dataclass
class StageResult:
    """One scored stage of the study.

    Attributes:
        setting: one of :data:`SETTINGS` (or a caller's own name).
        task: hub config name of the task.
        metrics: the task's metric dict on the validation split.
        n_examples: validation rows scored.
        model: the scored model (None when not kept).
        tokenizer: its tokenizer.
        output_dir: where the stage wrote its model, if it did.
        info: extra facts (learning rate, calibration batches, training summary, ...).
    """

    setting: str
    task: str
    metrics: dict[str, float]
    n_examples: int
    model: nn.Module | None = field(default=None, repr=False)
    tokenizer: Any = field(default=None, repr=False)
    output_dir: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def score(self) -> float:
        """The task's headline metric."""
        return self.metrics[get_task(self.task).headline_metric]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device`` as given, else this process's CUDA device when available (``LOCAL_RANK``
    under ``torchrun``), else the CPU."""
    if device is not None:
        return torch.device(device)
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


def load_model(name_or_dir: str, task: str, *, fresh_head: bool = False, **kwargs: Any) -> tuple[nn.Module, Any]:
    """(model, tokenizer) for a task: a folder written by ``optopass.save`` is loaded with
    ``optopass.load``; anything else with ``load_classifier`` and the task's head size.

    Args:
        name_or_dir: hub name, folder, ``minilm``, or a folder written by ``optopass.save``.
        task: hub config name of the task; it sets the head size.
        fresh_head: a checkpoint whose head has another size gets a new head (for starting a
            fine-tuning from a model trained on another task); else that is an error.
        **kwargs: passed to ``from_pretrained``.

    Raises:
        ModelLoadError: the model cannot be loaded, or its head does not fit the task.
    """
    from transformers import AutoTokenizer

    from optopass import load
    from optopass.tools.io import is_saved_transform
    from optopass.tools.models import load_classifier

    spec = get_task(task)
    if is_saved_transform(name_or_dir):
        model = load(name_or_dir)
        base = Path(name_or_dir) / "base"
        try:
            tokenizer = AutoTokenizer.from_pretrained(base)
        except (OSError, ValueError) as err:
            raise ModelLoadError(f"{base}: no tokenizer saved with the model ({err})".splitlines()[0]) from None
    else:
        if fresh_head:
            kwargs["ignore_mismatched_sizes"] = True
        model, tokenizer = load_classifier(name_or_dir, num_labels=spec.num_labels, **kwargs)
    labels = getattr(getattr(model, "capture_info", None), "num_labels", None) or model.config.num_labels
    if labels != spec.num_labels:
        raise ModelLoadError(f"{name_or_dir}: the model has {labels} outputs but {task} needs {spec.num_labels}")
    return model, tokenizer


def evaluate(model: nn.Module, task: str, tokenizer: Any, *, glue_dir=None, split: str | None = None,
             batch_size: int = 32, max_seq_length: int = 128, max_eval_samples: int | None = None,
             device: str | torch.device | None = None, dtype: str | None = None, progress: bool = True,
             compile: bool | None = None) -> dict[str, Any]:
    """``evaluate_glue``'s whole result for ``model`` on the task's validation split: metrics,
    ``n_examples``, and ``compiled`` / ``compile_seconds`` / ``samples_per_second``."""
    return evaluate_glue(model, task, tokenizer, glue_dir=glue_dir, split=split, batch_size=batch_size,
                         max_seq_length=max_seq_length, device=resolve_device(device), dtype=dtype,
                         limit=max_eval_samples, progress=progress, compile=compile)


def score(model: nn.Module, task: str, tokenizer: Any, **options: Any) -> tuple[dict[str, float], int]:
    """(metrics, n_examples) of ``model`` on the task's validation split; ``options`` as in
    :func:`evaluate` (``compile``: None compiles on a GPU)."""
    result = evaluate(model, task, tokenizer, **options)
    return result["metrics"], result["n_examples"]


def eval_speed(result: dict[str, Any]) -> dict[str, Any]:
    """The speed part of an :func:`evaluate` result."""
    return {key: result[key] for key in ("compiled", "compile_seconds", "samples_per_second")}


def calibration_batches(task: str, tokenizer: Any, n_batches: int, *, input_names, glue_dir=None,
                        batch_size: int = DEFAULT_CALIBRATE_BATCH_SIZE, max_seq_length: int = 128,
                        seed: int = 0, split: str = "train") -> list[dict[str, torch.Tensor]]:
    """``n_batches`` padded batches of ``split``'s sentences (a shuffled subset fixed by ``seed``)."""
    check_counts(calibrate_batches=n_batches)
    rows = glue_split(task, split, tokenizer, glue_dir=glue_dir, max_seq_length=max_seq_length,
                      max_samples=n_batches * batch_size, shuffle_seed=seed)
    names = [name for name in input_names if name in rows.column_names]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    side = getattr(tokenizer, "padding_side", "right")
    columns = rows.select_columns(names)
    return [pad_batch(columns[start:start + batch_size], pad_id, side) for start in range(0, len(rows), batch_size)]


def train_original(task: str, model_name: str = "minilm", *, glue_dir=None, output_dir: str | os.PathLike,
                   learning_rate: float = DEFAULT_LEARNING_RATE, seed: int = 42, eval_batch_size: int = 64,
                   max_seq_length: int = 128, max_eval_samples: int | None = None,
                   device: str | torch.device | None = None, dtype: str | None = None, progress: bool = True,
                   compile: bool | None = None, **train_kwargs: Any) -> StageResult:
    """Fine-tunes the pretrained ``model_name`` on ``task`` (the ``original`` setting).

    Args:
        task: hub config name of the task.
        model_name: hub name, local folder, or ``minilm``; a head of the task's size is created
            when the checkpoint has none.
        glue_dir: a classic ``glue_data`` folder; None loads GLUE from the hub.
        output_dir: where the fine-tuned model is written (``save_pretrained``).
        learning_rate: peak learning rate (2e-5 default; 2e-5..5e-5 usual for GLUE).
        seed: seed of the head's initialisation and of training.
        eval_batch_size, max_seq_length, max_eval_samples, device, dtype, progress: as in
            :func:`score` (``dtype``: evaluation precision, ``fp32``/``bf16``/``fp16``).
        compile: train and evaluate compiled (None: on a GPU; see ``finetune``, ``evaluate_glue``).
        **train_kwargs: more options of :func:`~optopass.tools.glue.trainer.finetune`
            (``num_train_epochs``, ``max_steps``, ``bf16``, ``max_train_samples``, ...).

    Returns:
        The ``original`` stage, with the trained model.
    """
    from transformers import set_seed

    set_seed(seed)
    model, tokenizer = load_model(model_name, task, fresh_head=True)
    if is_optical(model):
        raise ConfigError(f"{model_name}: already an optical model; train_original takes a plain HF model")
    if get_task(task).is_regression:
        center_regression_head(model, task, glue_dir=glue_dir, max_train_samples=train_kwargs.get("max_train_samples"))
    trained = finetune(model, task, tokenizer, glue_dir=glue_dir, output_dir=output_dir, learning_rate=learning_rate,
                       seed=seed, max_seq_length=max_seq_length, per_device_eval_batch_size=eval_batch_size,
                       max_eval_samples=max_eval_samples, progress=progress, final_eval=False, compile=compile,
                       **train_kwargs)
    result = evaluate(trained.model, task, tokenizer, glue_dir=glue_dir, batch_size=eval_batch_size,
                      max_seq_length=max_seq_length, max_eval_samples=max_eval_samples, device=device,
                      dtype=dtype, progress=progress, compile=compile)
    return StageResult("original", task, result["metrics"], result["n_examples"], trained.model, tokenizer,
                       trained.output_dir,
                       info={"settings": trained.settings, "train": trained.train_metrics,
                             "log_history": trained.log_history, "train_speed": trained.speed,
                             "eval_speed": eval_speed(result)})


def center_regression_head(model: nn.Module, task: str, *, glue_dir=None, max_train_samples: int | None = None) -> float:
    """Sets the output bias of a regression head to the mean training label; returns it.

    A fresh head outputs ~0 while STS-B scores lie in [0, 5] (mean ~2.7), so the first MSE
    gradients mostly move every prediction up by the same amount, pushing hard on the encoder
    for no ranking gain. Starting at the mean leaves the loss with the label variance only, and
    the gradients with what correlates with the score. Spearman/Pearson do not depend on it.
    """
    from optopass.tools.glue.trainer import SUBSET_SEED

    data = load_glue(task, "train", glue_dir)
    if max_train_samples is not None and max_train_samples < len(data):
        data = data.shuffle(seed=SUBSET_SEED).select(range(max_train_samples))
    mean = float(statistics.fmean(data["label"]))
    output = _head_output_layer(model)
    with torch.no_grad():
        output.bias.fill_(mean)
    return mean


def _head_output_layer(model: nn.Module) -> nn.Linear:
    """The last ``nn.Linear`` of the classification head (the one that makes the logits)."""
    for name in ("classifier", "score"):
        head = getattr(model, name, None)
        if head is None:
            continue
        layers = [m for m in head.modules() if isinstance(m, nn.Linear)]
        if layers and layers[-1].bias is not None:
            return layers[-1]
    raise ConfigError(f"{type(model).__name__}: no classification head with a bias found")


def random_baseline(task: str, model_name: str = "minilm", *, glue_dir=None, seed: int = 0,
                    batch_size: int = 64, max_seq_length: int = 128, max_eval_samples: int | None = None,
                    device: str | torch.device | None = None, dtype: str | None = None,
                    progress: bool = True, compile: bool | None = None) -> StageResult:
    """The ``random`` setting: the pretrained encoder with a freshly initialised (seeded)
    classification head, evaluated without any training.

    Whatever head the checkpoint holds is re-initialised as ``transformers`` initialises a new
    one (normal weights with the config's ``initializer_range``, zero biases), so the score is
    that of a classifier that has seen no task label: near chance for classification (or the
    majority-class rate when the random head happens to favour one class), near 0 Matthews and
    Spearman correlation for CoLA and STS-B.
    """
    from transformers import set_seed

    set_seed(seed)
    model, tokenizer = load_model(model_name, task, fresh_head=True)
    if is_optical(model):
        raise ConfigError(f"{model_name}: random_baseline takes a plain HF model, not an optical one")
    reset_head(model, seed)
    result = evaluate(model, task, tokenizer, glue_dir=glue_dir, batch_size=batch_size,
                      max_seq_length=max_seq_length, max_eval_samples=max_eval_samples, device=device,
                      dtype=dtype, progress=progress, compile=compile)
    return StageResult("random", task, result["metrics"], result["n_examples"], model, tokenizer,
                       info={"seed": seed, "eval_speed": eval_speed(result)})


def reset_head(model: nn.Module, seed: int) -> int:
    """Re-initialises every ``nn.Linear`` of the classification head (``classifier``,
    ``pre_classifier``) from ``seed``; returns how many were reset."""
    std = getattr(getattr(model, "config", None), "initializer_range", 0.02)
    generator = torch.Generator().manual_seed(seed)
    count = 0
    for name in DEFAULT_SKIP:
        head = getattr(model, name, None)
        if head is None:
            continue
        for module in head.modules():
            if isinstance(module, nn.Linear):
                with torch.no_grad():
                    weight = torch.randn(module.weight.shape, generator=generator) * std
                    module.weight.copy_(weight)
                    if module.bias is not None:
                        module.bias.zero_()
                count += 1
    if count == 0:
        raise ConfigError(f"{type(model).__name__}: no classification head ({', '.join(DEFAULT_SKIP)}) to reset")
    return count


def transform(original: nn.Module | str, task: str, cfg=None, calibrate_batches: int = DEFAULT_CALIBRATE_BATCHES, *,
              tokenizer: Any = None, glue_dir=None, calibrate_batch_size: int = DEFAULT_CALIBRATE_BATCH_SIZE,
              calibrate_split: str = "train", max_seq_length: int = 128, device: str | torch.device | None = None,
              seed: int = 0, progress: bool = False) -> tuple[nn.Module, Any]:
    """(optical model, tokenizer): a copy of ``original`` transformed with ``cfg`` and
    calibrated on ``calibrate_batches`` batches of ``calibrate_split``, ranges frozen. ``original`` (a model
    or a folder) is left untouched: the optical model gets its own copy of the weights."""
    from optopass import apply_optical_pass, calibrate, load_config

    config = load_config(cfg)
    if isinstance(original, (str, os.PathLike)):
        model, loaded_tokenizer = load_model(str(original), task)
        tokenizer = tokenizer or loaded_tokenizer
    else:
        model = copy.deepcopy(original)
    if tokenizer is None:
        raise ConfigError("transform: give the tokenizer of an in-memory model")
    if is_optical(model):
        raise ConfigError("transform: the model is already optical; give the plain (original) model")
    model.to(resolve_device(device)).eval()
    gm = apply_optical_pass(model, config)
    batches = calibration_batches(task, tokenizer, calibrate_batches, input_names=gm.capture_info.input_names,
                                  glue_dir=glue_dir, batch_size=calibrate_batch_size,
                                  max_seq_length=max_seq_length, seed=seed, split=calibrate_split)
    calibrate(gm, batches, progress=progress)
    return gm, tokenizer


def ptq(original: nn.Module | str, task: str, cfg=None, calibrate_batches: int = DEFAULT_CALIBRATE_BATCHES, *,
        tokenizer: Any = None, glue_dir=None, calibrate_batch_size: int = DEFAULT_CALIBRATE_BATCH_SIZE,
        batch_size: int = 64, max_seq_length: int = 128, max_eval_samples: int | None = None,
        device: str | torch.device | None = None, dtype: str | None = None, seed: int = 0,
        setting: str = "ot_ptq", progress: bool = True, compile: bool | None = None) -> StageResult:
    """Post-training transform: ``apply_optical_pass`` + calibrate on N training batches +
    freeze + evaluate.

    Args:
        original: the task-fine-tuned model (in memory, with ``tokenizer``) or its folder.
        task: hub config name of the task.
        cfg: optical config (path, mapping or ``OpticalConfig``); None: ``transform_cfg.yaml``.
        calibrate_batches: training batches observed by calibration (default 32, of
            ``calibrate_batch_size`` = 32 sentences: 1024 sentences, a shuffled subset fixed by
            ``seed``).
        setting: the name of the stage in the result (``ot_ptq``, ``squeezelight_ptq``).
        compile: evaluate compiled (None: on a GPU).

    Returns:
        The stage, with the calibrated optical model.
    """
    gm, tokenizer = transform(original, task, cfg, calibrate_batches, tokenizer=tokenizer, glue_dir=glue_dir,
                              calibrate_batch_size=calibrate_batch_size, max_seq_length=max_seq_length,
                              device=device, seed=seed)
    result = evaluate(gm, task, tokenizer, glue_dir=glue_dir, batch_size=batch_size, max_seq_length=max_seq_length,
                      max_eval_samples=max_eval_samples, device=device, dtype=dtype, progress=progress, compile=compile)
    return StageResult(setting, task, result["metrics"], result["n_examples"], gm, tokenizer,
                       info={"calibrate_batches": calibrate_batches, "calibrate_batch_size": calibrate_batch_size,
                             "eval_speed": eval_speed(result)})


def optical_finetune(original: nn.Module | str, task: str, cfg=None, *, tokenizer: Any = None, glue_dir=None,
                     output_dir: str | os.PathLike, calibrate_batches: int = DEFAULT_CALIBRATE_BATCHES,
                     calibrate_batch_size: int = DEFAULT_CALIBRATE_BATCH_SIZE, ft_stats: str = "frozen",
                     learning_rate: float = DEFAULT_OPTICAL_LEARNING_RATE, seed: int = 42,
                     eval_batch_size: int = 64, max_seq_length: int = 128, max_eval_samples: int | None = None,
                     device: str | torch.device | None = None, dtype: str | None = None, setting: str = "ot_ft",
                     progress: bool = True, compile: bool | None = None, **train_kwargs: Any) -> StageResult:
    """Transform-aware fine-tuning with the default recipe (see ``trainer.py``).

    Args:
        original: an optical model that is already calibrated (e.g. ``ptq(...).model``; it is
            trained in place), or the task-fine-tuned plain model / its folder, which is first
            transformed with ``cfg`` and calibrated on ``calibrate_batches`` training batches.
        task: hub config name of the task.
        cfg: optical config, for a plain ``original``.
        ft_stats: ``frozen`` (default: calibrated ranges stay fixed) or ``auto`` (ranges
            follow the training batches).
        learning_rate: 1e-5 default; the reference study's STS-B collapse came with 1e-3.
        output_dir: where the fine-tuned optical model is written (``optopass.save``).
        compile: train and evaluate compiled (None: on a GPU).
        **train_kwargs: more options of :func:`~optopass.tools.glue.trainer.finetune`.

    Returns:
        The stage, with the fine-tuned optical model.
    """
    if isinstance(original, nn.Module) and is_optical(original):
        gm = original
        if tokenizer is None:
            raise ConfigError("optical_finetune: give the tokenizer of an in-memory model")
    else:
        gm, tokenizer = transform(original, task, cfg, calibrate_batches, tokenizer=tokenizer, glue_dir=glue_dir,
                                  calibrate_batch_size=calibrate_batch_size, max_seq_length=max_seq_length,
                                  device=device, seed=seed)
    trained = finetune(gm, task, tokenizer, glue_dir=glue_dir, output_dir=output_dir, learning_rate=learning_rate,
                       seed=seed, ft_stats=ft_stats, max_seq_length=max_seq_length,
                       per_device_eval_batch_size=eval_batch_size, max_eval_samples=max_eval_samples,
                       progress=progress, final_eval=False, compile=compile, **train_kwargs)
    result = evaluate(trained.model, task, tokenizer, glue_dir=glue_dir, batch_size=eval_batch_size,
                      max_seq_length=max_seq_length, max_eval_samples=max_eval_samples, device=device,
                      dtype=dtype, progress=progress, compile=compile)
    return StageResult(setting, task, result["metrics"], result["n_examples"], trained.model, tokenizer,
                       trained.output_dir,
                       info={"settings": trained.settings, "train": trained.train_metrics,
                             "log_history": trained.log_history, "train_speed": trained.speed,
                             "eval_speed": eval_speed(result)})


__all__ = [
    "DEFAULT_CALIBRATE_BATCHES", "SETTINGS", "StageResult", "calibration_batches", "evaluate", "load_model", "model_input_names",
    "optical_finetune", "ptq", "random_baseline", "reset_head", "resolve_device", "score", "train_original",
    "transform",
]
