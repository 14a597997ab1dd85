"""GLUE metrics through the ``evaluate`` API, from the metric module this package ships.

``evaluate.load`` of a local script needs no network: it copies ``metric/glue_metric.py`` into
its module cache and imports it (checked with ``HF_HUB_OFFLINE=1`` and sockets blocked).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import evaluate
import numpy as np
import torch

from optopass.tools.errors import DataError
from optopass.tools.glue.tasks import GlueTask, get_task

METRIC_SCRIPT = Path(__file__).with_name("metric") / "glue_metric.py"


def load_glue_metric(task: str) -> evaluate.EvaluationModule:
    """Loads the official metric of a GLUE task as an ``evaluate`` metric, offline.

    Args:
        task: hub config name of the task (``cola``, ``sst2``, ...).

    Returns:
        A metric whose ``compute(predictions=..., references=...)`` returns the task's scores,
        e.g. ``{"accuracy": ..., "f1": ...}`` for ``mrpc``.

    Raises:
        DataError: ``task`` is not a GLUE task.
    """
    get_task(task)
    # keep_in_memory: no cache files or file locks under ~/.cache for each compute() call.
    return evaluate.load(str(METRIC_SCRIPT), task, keep_in_memory=True)


def predictions_from_logits(task: str, logits_or_preds: Any) -> np.ndarray:
    """Turns model outputs into what the task's metric compares with the labels.

    Args:
        task: hub config name of the task.
        logits_or_preds: ``(n, num_labels)`` logits (argmax is taken), ``(n,)`` class ids, or
            for STS-B ``(n, 1)`` or ``(n,)`` scores. A tensor, array or nested list.

    Returns:
        A 1-D array: int64 class ids, or float32 scores for STS-B.

    Raises:
        DataError: the shape does not fit the task.
    """
    spec = get_task(task)
    values = _to_numpy(logits_or_preds)
    if values.ndim == 2 and values.shape[1] == spec.num_labels:
        values = values[:, 0] if spec.is_regression else values.argmax(axis=-1)
    if values.ndim != 1:
        raise DataError(
            f"{task}: predictions of shape {values.shape} do not fit; expected (n,) or "
            f"(n, {spec.num_labels})"
        )
    return values.astype(np.float32 if spec.is_regression else np.int64)


def compute_glue_metrics(task: str, logits_or_preds: Any, labels: Any) -> dict[str, float]:
    """Scores predictions (or logits) of a GLUE task with its official metric.

    Args:
        task: hub config name of the task.
        logits_or_preds: logits, class ids or scores; see :func:`predictions_from_logits`.
        labels: gold class ids, or gold scores for STS-B.

    Returns:
        The metric dict, e.g. ``{"matthews_correlation": 0.57}`` for ``cola``.

    Raises:
        DataError: the predictions do not fit the task or their count differs from the labels'.
    """
    spec = get_task(task)
    predictions = predictions_from_logits(task, logits_or_preds)
    references = _references(spec, labels)
    if len(predictions) != len(references):
        raise DataError(
            f"{task}: {len(predictions)} predictions but {len(references)} labels; "
            "they must match one to one"
        )
    scores = load_glue_metric(task).compute(predictions=predictions, references=references)
    return {key: float(value) for key, value in scores.items()}


def _references(task: GlueTask, labels: Any) -> np.ndarray:
    """Labels as a 1-D array of the metric's type."""
    values = _to_numpy(labels).reshape(-1)
    return values.astype(np.float32 if task.is_regression else np.int64)


def _to_numpy(values: Any) -> np.ndarray:
    """A tensor (any device or dtype), array or list as a numpy array."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu()
        return (values.float() if values.is_floating_point() else values).numpy()
    return np.asarray(values)
