"""The GLUE tasks as data: hub columns and labels, metrics, and the classic ``glue_data`` layout.

Each task is one frozen :class:`GlueTask` record in :data:`GLUE_TASKS`. Column names, label
names and label ids follow the Hugging Face ``nyu-mll/glue`` dataset, so data read from local
``glue_data/<TASK>/*.tsv`` files and data loaded from the hub look the same.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass

from optopass.tools.errors import DataError

HUB_DATASET = "nyu-mll/glue"

# Where a value sits in a row: a position (negative counts from the end) or a header name.
ColumnRef = int | str


@dataclass(frozen=True)
class TsvLayout:
    """How one task's files look in the classic ``glue_data/<folder>/`` tree.

    Attributes:
        folder: folder name under ``glue_data`` (``SST-2``, ``MNLI``, ...).
        files: ``(split, file name)`` pairs for the splits that carry labels.
        has_header: whether the first line holds column names.
        text_columns: where each hub text column is read from, in the task's column order.
        label_column: where the label is read from.
        num_columns: columns per row of a file without a header; a file with a header must
            have as many columns in every row as in its header.
        quoting: the ``csv`` quoting mode. Every GLUE file is read with ``csv.QUOTE_NONE``,
            as the hub's builder does: quotes are text (MRPC, STS-B and QNLI have unbalanced
            ones) and no field spans lines.
    """

    folder: str
    files: tuple[tuple[str, str], ...]
    has_header: bool
    text_columns: tuple[ColumnRef, ...]
    label_column: ColumnRef
    num_columns: int | None = None
    quoting: int = csv.QUOTE_NONE

    def file_name(self, split: str) -> str | None:
        """Returns the file name holding ``split``, or None when the layout has no such split."""
        return dict(self.files).get(split)

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits that can be read from local files."""
        return tuple(split for split, _ in self.files)


@dataclass(frozen=True)
class GlueTask:
    """One GLUE task, named as its ``nyu-mll/glue`` config.

    Attributes:
        name: hub config name (``cola``, ``sst2``, ...).
        text_columns: the hub's text columns, in order.
        label_names: class names in hub id order; empty for the regression task STS-B.
        validation_splits: hub names of the labelled evaluation splits; the first is the default.
        metrics: keys the official metric returns, the headline metric first.
        layout: where the task lives in the classic ``glue_data`` tree.
    """

    name: str
    text_columns: tuple[str, ...]
    label_names: tuple[str, ...]
    validation_splits: tuple[str, ...]
    metrics: tuple[str, ...]
    layout: TsvLayout

    @property
    def is_regression(self) -> bool:
        """True for STS-B, whose label is a float score."""
        return not self.label_names

    @property
    def num_labels(self) -> int:
        """Size of the classifier head: the number of classes, or 1 for regression."""
        return len(self.label_names) or 1

    @property
    def headline_metric(self) -> str:
        """The metric usually reported for this task."""
        return self.metrics[0]

    @property
    def hub_splits(self) -> tuple[str, ...]:
        """Every split of the hub config; each validation split has a matching test split."""
        tests = tuple(s.replace("validation", "test") for s in self.validation_splits)
        return ("train", *self.validation_splits, *tests)


def _headed(folder: str, text: tuple[ColumnRef, ...], label: ColumnRef) -> TsvLayout:
    """A layout with a header line, ``train.tsv`` and ``dev.tsv``."""
    files = (("train", "train.tsv"), ("validation", "dev.tsv"))
    return TsvLayout(folder, files, has_header=True, text_columns=text, label_column=label)


_VALIDATION = ("validation",)
_ACCURACY = ("accuracy",)
_NLI2 = ("entailment", "not_entailment")

# GlueTask(name, text columns, label names in hub id order, validation splits, metrics, layout)
TASKS: tuple[GlueTask, ...] = (
    GlueTask(
        "cola", ("sentence",), ("unacceptable", "acceptable"), _VALIDATION,
        ("matthews_correlation",),
        # No header; columns: source, label, original label (often empty), sentence.
        TsvLayout("CoLA", (("train", "train.tsv"), ("validation", "dev.tsv")),
                  has_header=False, text_columns=(3,), label_column=1, num_columns=4),
    ),
    GlueTask(
        "sst2", ("sentence",), ("negative", "positive"), _VALIDATION, _ACCURACY,
        _headed("SST-2", ("sentence",), "label"),
    ),
    GlueTask(
        "mrpc", ("sentence1", "sentence2"), ("not_equivalent", "equivalent"), _VALIDATION,
        ("accuracy", "f1"),
        # Header "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String"; the BOM is dropped on read.
        _headed("MRPC", ("#1 String", "#2 String"), "Quality"),
    ),
    GlueTask(
        "stsb", ("sentence1", "sentence2"), (), _VALIDATION, ("spearmanr", "pearson"),
        _headed("STS-B", ("sentence1", "sentence2"), "score"),
    ),
    GlueTask(
        "qqp", ("question1", "question2"), ("not_duplicate", "duplicate"), _VALIDATION,
        ("accuracy", "f1"),
        _headed("QQP", ("question1", "question2"), "is_duplicate"),
    ),
    GlueTask(
        "mnli", ("premise", "hypothesis"), ("entailment", "neutral", "contradiction"),
        ("validation_matched", "validation_mismatched"), _ACCURACY,
        # train.tsv has 12 columns and the dev files 16; gold_label is the last in both.
        TsvLayout("MNLI",
                  (("train", "train.tsv"), ("validation_matched", "dev_matched.tsv"),
                   ("validation_mismatched", "dev_mismatched.tsv")),
                  has_header=True, text_columns=("sentence1", "sentence2"), label_column=-1),
    ),
    GlueTask(
        "qnli", ("question", "sentence"), _NLI2, _VALIDATION, _ACCURACY,
        _headed("QNLI", ("question", "sentence"), "label"),
    ),
    GlueTask(
        "rte", ("sentence1", "sentence2"), _NLI2, _VALIDATION, _ACCURACY,
        _headed("RTE", ("sentence1", "sentence2"), "label"),
    ),
    GlueTask(
        "wnli", ("sentence1", "sentence2"), ("not_entailment", "entailment"), _VALIDATION,
        _ACCURACY,
        _headed("WNLI", ("sentence1", "sentence2"), "label"),
    ),
)

GLUE_TASKS: dict[str, GlueTask] = {task.name: task for task in TASKS}


def get_task(name: str) -> GlueTask:
    """Looks up a GLUE task by its hub config name.

    Args:
        name: ``cola``, ``sst2``, ``mrpc``, ``stsb``, ``qqp``, ``mnli``, ``qnli``, ``rte`` or
            ``wnli``.

    Returns:
        The task's record.

    Raises:
        DataError: the name is not a GLUE task.
    """
    try:
        return GLUE_TASKS[name]
    except KeyError:
        allowed = ", ".join(GLUE_TASKS)
        raise DataError(f"unknown GLUE task {name!r}; allowed: {allowed}") from None
