"""Score any HF-style sequence classifier on a GLUE dev split.

The model is only called, never inspected: ``model(input_ids=..., attention_mask=...,
[token_type_ids=...])`` must return logits, an object with ``.logits``, or a tuple whose first
item is the logits. A ``transformers`` model, a captured ``torch.fx.GraphModule`` and a plain
function all qualify.

On a GPU the model runs compiled by default: ``torch.compile(mode="reduce-overhead")`` (CUDA
graphs), one static graph per length bucket. Every batch is padded to a multiple of
``pad_to_multiple_of`` tokens (32; never past ``max_seq_length``) in both modes, so that a dev
set compiles a few buckets instead of one graph per batch length, and so that eager and compiled
runs see the same shapes: an optical site's dither is keyed by each element's flat index, so
the same padding gives the same numbers up to float rounding. In compiled mode the last, short
batch is filled up with padding rows (whose logits are dropped), so it reuses its bucket's graph.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import datasets
import torch
from tqdm.auto import tqdm

from optopass.tools.checks import check_counts
from optopass.tools.compiling import compile_model
from optopass.tools.errors import ConfigError, DataError
from optopass.tools.glue.data import load_glue
from optopass.tools.glue.metrics import compute_glue_metrics
from optopass.tools.glue.tasks import get_task
from optopass.tools.glue.timing import StreamTimer, Throughput

# Sequence lengths are padded up to a multiple of this many tokens (a "bucket").
DEFAULT_PAD_TO_MULTIPLE_OF = 32

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


def bucket_length(longest: int, pad_to_multiple_of: int | None, max_length: int | None = None) -> int:
    """`longest` rounded up to a multiple of `pad_to_multiple_of`, but not past `max_length`
    (nor below `longest`); `longest` itself when `pad_to_multiple_of` is None."""
    if not pad_to_multiple_of:
        return longest
    bucket = -(-longest // pad_to_multiple_of) * pad_to_multiple_of
    return max(longest, min(bucket, max_length)) if max_length is not None else bucket


def pad_batch(
    features: Mapping[str, list[list[int]]], pad_token_id: int, padding_side: str = "right", *,
    pad_to_multiple_of: int | None = None, max_length: int | None = None, num_rows: int | None = None,
) -> dict[str, torch.Tensor]:
    """Pads token columns to the batch's longest row, like ``DataCollatorWithPadding``.

    Args:
        features: column -> rows of token-level values (``input_ids``, ``attention_mask``,
            ``token_type_ids``, ...).
        pad_token_id: value padding ``input_ids``; other columns pad with 0.
        padding_side: ``right`` or ``left``, as the tokenizer's ``padding_side``.
        pad_to_multiple_of: pad the length up to a multiple of this (a length bucket).
        max_length: the bucket's length never exceeds this (the tokenizer's truncation length).
        num_rows: append filler rows up to this many rows: one attended padding token, the
            rest masked (a row with nothing attended would give NaN in some attention kernels).

    Returns:
        column -> ``(batch, length)`` int64 tensor.
    """
    longest = max(len(row) for rows in features.values() for row in rows)
    longest = bucket_length(longest, pad_to_multiple_of, max_length)
    if num_rows is not None:
        features = {name: [*rows, *[_filler(name, pad_token_id)] * (num_rows - len(rows))]
                    for name, rows in features.items()}
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


def _filler(column: str, pad_token_id: int) -> list[int]:
    """The one token of a filler row in `column`."""
    return [{"input_ids": pad_token_id, "attention_mask": 1}.get(column, 0)]


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
    compile: bool | None = None,
    pad_to_multiple_of: int | None = DEFAULT_PAD_TO_MULTIPLE_OF,
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
        compile: run the model under ``torch.compile`` (compiled once, reused by every batch;
            ``mode="reduce-overhead"``, CUDA graphs, on a GPU); None: on a CUDA device, off
            elsewhere (on the CPU compiling costs minutes and the eager path is fused already).
        pad_to_multiple_of: pad each batch's length up to a multiple of this many tokens,
            capped at ``max_seq_length``; None: to the batch's longest row.

    Returns:
        ``{"task": task, "split": split, "n_examples": n, "metrics": {name: value},
        "compiled": bool, "compile_seconds": s, "samples_per_second": r}``: the seconds of the
        warm-up batches (those that compiled, and the first of each length bucket when compiled)
        and the throughput of the other batches (see :mod:`~optopass.tools.glue.timing`).

    Raises:
        DataError: the task, split or data cannot be loaded.
        ConfigError: ``dtype``, ``batch_size``, ``max_seq_length``, ``limit`` or
            ``pad_to_multiple_of`` is invalid.
    """
    autocast_dtype = _autocast_dtype(dtype)
    check_counts(batch_size=batch_size, max_seq_length=max_seq_length, limit=limit,
                 pad_to_multiple_of=pad_to_multiple_of)
    split = split or get_task(task).validation_splits[0]
    dataset = load_glue(task, split, glue_dir)
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    encoded = tokenize_glue(dataset, task, tokenizer, max_seq_length)
    run_device = _place_model(model, device)
    compiled = resolve_compile(compile, run_device)
    padding = _Padding(batch_size, pad_to_multiple_of, max_seq_length, fill_rows=compiled)
    speed = Throughput(warmup_calls=(2 if run_device.type == "cuda" else 1) if compiled else 0)

    with _eval_mode(model):
        runner = compile_for_eval(model, run_device) if compiled else model
        logits = _predict(runner, encoded, tokenizer, padding, run_device, autocast_dtype, speed,
                          progress=progress, desc=f"{task}/{split}")
    metrics = compute_glue_metrics(task, logits, encoded["label"][:])
    return {"task": task, "split": split, "n_examples": len(encoded), "metrics": metrics,
            "compiled": compiled, **speed.summary()}


def resolve_compile(compile: bool | None, device: torch.device | str) -> bool:
    """``compile`` as given; None (auto): on for a CUDA device, off elsewhere."""
    return torch.device(device).type == "cuda" if compile is None else bool(compile)


def compile_for_eval(model: Callable[..., Any], device: torch.device) -> Callable[..., Any]:
    """``model`` under ``torch.compile`` for inference: static shapes (one graph per length
    bucket), replayed as CUDA graphs on a GPU (``mode="reduce-overhead"``), without Inductor's
    per-call size checks (tools/compiling.py)."""
    mode = "reduce-overhead" if device.type == "cuda" else None
    return compile_model(model, mode=mode, dynamic=False)


@dataclasses.dataclass(frozen=True)
class _Padding:
    """How batches are made: rows per batch, length bucket and its cap, and whether the last
    batch is filled up to ``batch_size`` rows."""

    batch_size: int
    multiple_of: int | None
    max_length: int
    fill_rows: bool


def _predict(
    model: Callable[..., Any],
    encoded: datasets.Dataset,
    tokenizer: Any,
    padding: _Padding,
    device: torch.device,
    autocast_dtype: torch.dtype | None,
    speed: Throughput,
    *,
    progress: bool,
    desc: str,
) -> torch.Tensor:
    """Runs the model over every batch, timing the batches into `speed`; returns the
    concatenated float32 logits of the real rows on CPU.

    The host does not wait for the GPU between batches (``StreamTimer``): each batch's logits
    are copied on the device (a CUDA-graph replay reuses its output's memory) and brought to
    the CPU once, at the end."""
    outputs = []
    timer = StreamTimer(speed, device)
    buckets = _bucket_count(padding)
    with contextlib.ExitStack() as stack:
        bar = stack.enter_context(tqdm(total=len(encoded), desc=desc, unit="ex", disable=not progress))
        # one graph per bucket (and per autocast setting): allow them all before dynamo gives up
        stack.enter_context(torch._dynamo.config.patch(
            recompile_limit=max(torch._dynamo.config.recompile_limit, buckets + 2)))
        for inputs, n_rows in _batches(encoded, tokenizer, padding):
            inputs = {name: tensor.to(device, non_blocking=True) for name, tensor in inputs.items()}
            call = functools.partial(_logits_on_device, model, inputs, n_rows, device, autocast_dtype)
            outputs.append(timer.call(call, n_rows, tuple(inputs["input_ids"].shape)))
            bar.update(n_rows)
        timer.close()
    return torch.cat(outputs).cpu()


def _logits_on_device(model: Callable[..., Any], inputs: dict[str, torch.Tensor], n_rows: int, device: torch.device,
                      autocast_dtype: torch.dtype | None) -> torch.Tensor:
    """One batch's float32 logits of its `n_rows` real rows, a copy on the device."""
    with torch.no_grad(), _autocast(device, autocast_dtype):
        if device.type == "cuda":
            torch.compiler.cudagraph_mark_step_begin()
        logits = _logits_of(model(**inputs))
    return logits[:n_rows].detach().to(torch.float32, copy=True)


def _bucket_count(padding: _Padding) -> int:
    if not padding.multiple_of:
        return padding.max_length
    return -(-padding.max_length // padding.multiple_of)


def _batches(
    encoded: datasets.Dataset, tokenizer: Any, padding: _Padding
) -> Iterator[tuple[dict[str, torch.Tensor], int]]:
    """(padded model inputs, real rows), batch by batch; only the columns the tokenizer made."""
    inputs = encoded.select_columns([name for name in encoded.column_names if name != "label"])
    pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    padding_side = getattr(tokenizer, "padding_side", "right")
    fill = padding.batch_size if padding.fill_rows else None
    for start in range(0, len(encoded), padding.batch_size):
        rows = inputs[start : start + padding.batch_size]
        n_rows = len(next(iter(rows.values())))
        yield pad_batch(rows, pad_token_id, padding_side, pad_to_multiple_of=padding.multiple_of,
                        max_length=padding.max_length, num_rows=fill), n_rows


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
