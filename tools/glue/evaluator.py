"""Score any HF-style sequence classifier on a GLUE dev split.

The model is only called, never inspected: ``model(input_ids=..., attention_mask=...,
[token_type_ids=...])`` must return logits, an object with ``.logits``, or a tuple whose first
item is the logits. A ``transformers`` model, a captured ``torch.fx.GraphModule`` and a plain
function all qualify.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import datasets
import torch
from tqdm.auto import tqdm

from optopass.tools.checks import check_counts
from optopass.tools.errors import ConfigError, DataError
from optopass.tools.glue.data import load_glue
from optopass.tools.glue.metrics import compute_glue_metrics
from optopass.tools.glue.tasks import get_task

# dtype option -> autocast dtype (None: run as is, in the model's own precision)
AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


def tokenize_glue(
    dataset: datasets.Dataset, task: str, tokenizer: Any, max_seq_length: int = 128
) -> datasets.Dataset:
    """Tokenizes a GLUE split: one text, or a pair, per example, truncated, not padded.

    Args:
        dataset: a split from :func:`~optopass.tools.glue.data.load_glue` (or the hub).
        task: hub config name of the task; it names the text columns.
        tokenizer: a Hugging Face tokenizer.
        max_seq_length: longest sequence kept, special tokens included.

    Returns:
        A dataset with the tokenizer's outputs (``input_ids``, ``attention_mask``, and
        ``token_type_ids`` when the tokenizer makes them) and ``label``; other columns dropped.

    Raises:
        DataError: the dataset lacks one of the task's text columns.
    """
    text_columns = get_task(task).text_columns
    missing = [name for name in text_columns if name not in dataset.column_names]
    if missing:
        found = ", ".join(dataset.column_names)
        raise DataError(f"{task}: dataset has no column {missing[0]!r}; found: {found}")

    def encode(batch: dict[str, list]) -> dict[str, list]:
        texts = [batch[name] for name in text_columns]
        return tokenizer(*texts, truncation=True, max_length=max_seq_length)

    dropped = [name for name in dataset.column_names if name != "label"]
    return dataset.map(encode, batched=True, remove_columns=dropped)


def pad_batch(
    features: Mapping[str, list[list[int]]], pad_token_id: int, padding_side: str = "right"
) -> dict[str, torch.Tensor]:
    """Pads token columns to the batch's longest row, like ``DataCollatorWithPadding``.

    Args:
        features: column -> rows of token-level values (``input_ids``, ``attention_mask``,
            ``token_type_ids``, ...).
        pad_token_id: value padding ``input_ids``; other columns pad with 0.
        padding_side: ``right`` or ``left``, as the tokenizer's ``padding_side``.

    Returns:
        column -> ``(batch, longest)`` int64 tensor.
    """
    longest = max(len(row) for rows in features.values() for row in rows)
    padded = {}
    for name, rows in features.items():
        value = pad_token_id if name == "input_ids" else 0
        fill = [[value] * (longest - len(row)) for row in rows]
        if padding_side == "left":
            rows = [pad + row for pad, row in zip(fill, rows)]
        else:
            rows = [row + pad for row, pad in zip(rows, fill)]
        padded[name] = torch.tensor(rows, dtype=torch.long)
    return padded


def evaluate_glue(
    model: Callable[..., Any],
    task: str,
    tokenizer: Any,
    *,
    glue_dir: str | os.PathLike | None = None,
    split: str | None = None,
    batch_size: int = 32,
    max_seq_length: int = 128,
    device: str | torch.device | None = None,
    dtype: str | None = None,
    limit: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Scores a sequence classifier on a GLUE evaluation split.

    Args:
        model: any callable taking keyword tensors ``input_ids``, ``attention_mask`` and, when
            the tokenizer makes them, ``token_type_ids``; it returns logits, an output with
            ``.logits``, or a tuple starting with the logits. An ``nn.Module`` is put in eval
            mode for the run (and back after).
        task: hub config name of the task (``sst2``, ``mnli``, ...).
        tokenizer: the Hugging Face tokenizer matching the model.
        glue_dir: a classic ``glue_data`` folder; None loads the split from the hub.
        split: the split to score; defaults to the task's first validation split
            (``validation``, or ``validation_matched`` for MNLI).
        batch_size: examples per forward call.
        max_seq_length: longest tokenized input; longer inputs are truncated.
        device: where inputs go; an ``nn.Module`` model is moved there in place. Defaults to
            the device of the model's first parameter or buffer, else CPU.
        dtype: ``fp32`` (default, the model's own precision), or ``bf16``/``fp16`` to run
            under ``torch.autocast`` on that device.
        limit: score only the first ``limit`` examples.
        progress: show a tqdm progress bar.

    Returns:
        ``{"task": task, "split": split, "n_examples": n, "metrics": {name: value}}``.

    Raises:
        DataError: the task, split or data cannot be loaded.
        ConfigError: ``dtype``, ``batch_size``, ``max_seq_length`` or ``limit`` is invalid.
    """
    autocast_dtype = _autocast_dtype(dtype)
    check_counts(batch_size=batch_size, max_seq_length=max_seq_length, limit=limit)
    split = split or get_task(task).validation_splits[0]
    dataset = load_glue(task, split, glue_dir)
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    encoded = tokenize_glue(dataset, task, tokenizer, max_seq_length)
    run_device = _place_model(model, device)

    with _eval_mode(model):
        logits = _predict(model, encoded, tokenizer, batch_size, run_device, autocast_dtype,
                          progress=progress, desc=f"{task}/{split}")
    metrics = compute_glue_metrics(task, logits, encoded["label"][:])
    return {"task": task, "split": split, "n_examples": len(encoded), "metrics": metrics}


def _predict(
    model: Callable[..., Any],
    encoded: datasets.Dataset,
    tokenizer: Any,
    batch_size: int,
    device: torch.device,
    autocast_dtype: torch.dtype | None,
    *,
    progress: bool,
    desc: str,
) -> torch.Tensor:
    """Runs the model over every batch; returns the concatenated float32 logits on CPU."""
    outputs = []
    with tqdm(total=len(encoded), desc=desc, unit="ex", disable=not progress) as bar:
        for inputs in _batches(encoded, tokenizer, batch_size):
            inputs = {name: tensor.to(device) for name, tensor in inputs.items()}
            with torch.no_grad(), _autocast(device, autocast_dtype):
                logits = _logits_of(model(**inputs))
            outputs.append(logits.detach().float().cpu())
            bar.update(len(inputs["input_ids"]))
    return torch.cat(outputs)


def _batches(
    encoded: datasets.Dataset, tokenizer: Any, batch_size: int
) -> Iterator[dict[str, torch.Tensor]]:
    """Padded model inputs, batch by batch; only the columns the tokenizer produced."""
    inputs = encoded.select_columns([name for name in encoded.column_names if name != "label"])
    pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    padding_side = getattr(tokenizer, "padding_side", "right")
    for start in range(0, len(encoded), batch_size):
        yield pad_batch(inputs[start : start + batch_size], pad_token_id, padding_side)


def _logits_of(output: Any) -> torch.Tensor:
    """The logits in a model's output: the tensor itself, ``.logits``, ``["logits"]`` or ``[0]``."""
    if isinstance(output, torch.Tensor):
        return output
    if hasattr(output, "logits"):
        return output.logits
    if isinstance(output, Mapping):
        return output["logits"]
    return output[0]


def _place_model(model: Callable[..., Any], device: str | torch.device | None) -> torch.device:
    """Chooses the run device, moving an ``nn.Module`` there when ``device`` is given."""
    if device is not None:
        device = torch.device(device)
        if isinstance(model, torch.nn.Module):
            model.to(device)
        return device
    return _device_of(model)


def _device_of(model: Callable[..., Any]) -> torch.device:
    """The device of a module's first parameter or buffer; CPU for anything else."""
    if isinstance(model, torch.nn.Module):
        first = next(itertools.chain(model.parameters(), model.buffers()), None)
        if first is not None:
            return first.device
    return torch.device("cpu")


@contextlib.contextmanager
def _eval_mode(model: Callable[..., Any]) -> Iterator[None]:
    """Puts an ``nn.Module`` in eval mode for the block, then restores its mode."""
    if not isinstance(model, torch.nn.Module):
        yield
        return
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to ``dtype`` on ``device``'s type, or nothing for fp32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _autocast_dtype(dtype: str | None) -> torch.dtype | None:
    """Validates the ``dtype`` option."""
    if dtype is None:
        return None
    if dtype not in AUTOCAST_DTYPES:
        allowed = ", ".join(AUTOCAST_DTYPES)
        raise ConfigError(f"dtype: unknown value {dtype!r}; allowed: {allowed}")
    return AUTOCAST_DTYPES[dtype]
