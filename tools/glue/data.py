"""Load GLUE splits as ``datasets.Dataset``: from the hub, or from a classic ``glue_data`` folder.

Both sources give the hub's columns: the task's text columns, ``label`` (a ``ClassLabel`` with
the hub's ids, or a float score for STS-B) and ``idx`` (the 0-based row number).

The local reader parses the tab-separated files itself, one physical line per row and quoting
off (as the hub's builder reads them), so that any malformed input stops with one
:class:`~optopass.tools.errors.DataError` of the form ``<file>:<line>: <what is wrong>``.
"""

from __future__ import annotations

import csv
import itertools
import math
import os
from collections.abc import Iterator
from pathlib import Path

import datasets

from optopass.tools.errors import DataError
from optopass.tools.glue.tasks import HUB_DATASET, ColumnRef, GlueTask, get_task

GLUE_DIR_ENV = "OPTOPASS_GLUE_DIR"

_REPO_ROOT = Path(__file__).resolve().parents[2]


def default_glue_dir() -> Path | None:
    """Finds a local ``glue_data`` folder.

    Returns:
        ``$OPTOPASS_GLUE_DIR`` when set (whether or not it exists, so that a wrong setting is
        reported instead of ignored), else ``<repo>/../shared/glue`` when that is a folder,
        else None.
    """
    from_env = os.environ.get(GLUE_DIR_ENV)
    if from_env:
        return Path(from_env)
    shared = _REPO_ROOT.parent / "shared" / "glue"
    return shared if shared.is_dir() else None


def glue_features(task: GlueTask) -> datasets.Features:
    """The hub's features for ``task``: text columns, ``label``, ``idx``."""
    features = {name: datasets.Value("string") for name in task.text_columns}
    if task.is_regression:
        features["label"] = datasets.Value("float32")
    else:
        features["label"] = datasets.ClassLabel(names=list(task.label_names))
    features["idx"] = datasets.Value("int32")
    return datasets.Features(features)


def load_glue(task: str, split: str, glue_dir: str | os.PathLike | None = None) -> datasets.Dataset:
    """Loads one split of a GLUE task.

    Args:
        task: hub config name, e.g. ``sst2`` or ``mnli``.
        split: ``train``, ``validation`` (MNLI: ``validation_matched`` or
            ``validation_mismatched``); the hub also serves the unlabelled test splits.
        glue_dir: a classic ``glue_data`` folder (``<glue_dir>/SST-2/dev.tsv``, ...). When None,
            the split is loaded from the Hugging Face hub (``nyu-mll/glue``).

    Returns:
        A dataset with the task's text columns, ``label`` and ``idx``.

    Raises:
        DataError: unknown task or split, a missing folder or file, malformed rows, or a hub
            load that failed.
    """
    spec = get_task(task)
    if glue_dir is None:
        return _load_from_hub(spec, split)
    return _load_from_dir(spec, split, Path(glue_dir))


def _load_from_hub(task: GlueTask, split: str) -> datasets.Dataset:
    """Loads a split of ``nyu-mll/glue``; any failure becomes a DataError."""
    if split not in task.hub_splits:
        allowed = ", ".join(task.hub_splits)
        raise DataError(f"unknown split {split!r} for GLUE task {task.name!r}; allowed: {allowed}")
    try:
        return datasets.load_dataset(HUB_DATASET, task.name, split=split)
    except Exception as exc:  # network, auth, missing cache: all mean "use local files"
        reason = (str(exc).strip().splitlines() or [""])[0]
        raise DataError(
            f"cannot load {HUB_DATASET} config {task.name!r} split {split!r} from the Hugging "
            f"Face hub ({type(exc).__name__}: {reason}); pass --glue-dir with a local glue_data "
            "folder instead"
        ) from exc


def glue_file(task: GlueTask, split: str, glue_dir: Path) -> Path:
    """Returns the existing file that holds ``split`` of ``task`` under ``glue_dir``.

    Raises:
        DataError: the split has no local file, or the folder or file is missing.
    """
    layout = task.layout
    name = layout.file_name(split)
    if name is None:
        allowed = ", ".join(layout.splits)
        raise DataError(
            f"split {split!r} of GLUE task {task.name!r} has no file in glue_data; "
            f"allowed: {allowed}"
        )
    if not glue_dir.is_dir():
        raise DataError(f"{glue_dir}: GLUE data folder not found")
    folder = glue_dir / layout.folder
    if not folder.is_dir():
        raise DataError(f"{folder}: task folder not found; {task.name} expects {layout.folder}/")
    path = folder / name
    if not path.is_file():
        raise DataError(f"{path}: file not found; split {split!r} of {task.name} reads {name}")
    return path


def _load_from_dir(task: GlueTask, split: str, glue_dir: Path) -> datasets.Dataset:
    """Reads a split from the classic ``glue_data`` layout."""
    path = glue_file(task, split, glue_dir)
    columns = read_glue_tsv(path, task)
    return datasets.Dataset.from_dict(columns, features=glue_features(task), split=split)


def read_glue_tsv(path: Path, task: GlueTask) -> dict[str, list]:
    """Parses one GLUE file into hub-named columns.

    Args:
        path: a ``.tsv`` file in ``task``'s layout.
        task: the task whose layout and labels apply.

    Returns:
        ``{text column: [...], "label": [...], "idx": [...]}``; labels are ids (floats for STS-B).

    Raises:
        DataError: ``<path>:<line>: ...`` for an empty file, a missing header column, a row
            with the wrong number of columns, or a label that is not allowed.
    """
    layout = task.layout
    rows = _read_rows(path, layout.quoting)
    header, rows = _split_header(path, layout.has_header, rows)
    width = len(header) if header is not None else layout.num_columns
    text_at = [_position(path, header, width, ref) for ref in layout.text_columns]
    label_at = _position(path, header, width, layout.label_column)
    label_column = f"column {header[label_at]!r}" if header else f"column {label_at + 1}"

    columns: dict[str, list] = {name: [] for name in task.text_columns}
    labels: list = []
    for line, row in rows:
        if len(row) != width:
            found = len(row)
            raise DataError(f"{path}:{line}: expected {width} tab-separated columns, found {found}")
        for name, at in zip(task.text_columns, text_at):
            columns[name].append(row[at])
        labels.append(_parse_label(task, row[label_at], path, line, label_column))
    if not labels:
        raise DataError(f"{path}:2: no data rows after the header")
    columns["label"] = labels
    columns["idx"] = list(range(len(labels)))
    return columns


_Row = tuple[int, list[str]]


def _read_rows(path: Path, quoting: int) -> Iterator[_Row]:
    """Yields ``(1-based line number, fields)`` for every non-blank line of ``path``."""
    reader = csv.reader(_text_lines(path), delimiter="\t", quoting=quoting, strict=True)
    try:
        for row in reader:
            if row:  # a blank line (csv gives []) is skipped, as csv.DictReader does
                yield reader.line_num, row
    except csv.Error as exc:
        raise DataError(f"{path}:{reader.line_num}: cannot parse: {exc}") from exc


def _text_lines(path: Path) -> Iterator[str]:
    """Yields the lines of a UTF-8 file (a leading BOM dropped), each checked on its own."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            yield _decode_line(path, number, raw)


def _decode_line(path: Path, number: int, raw: bytes) -> str:
    """Decodes one line; refuses bad UTF-8 and a carriage return inside the line."""
    try:
        line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}:{number}: not UTF-8 text (byte {exc.start})") from exc
    if "\r" in line.removesuffix("\n").removesuffix("\r"):
        raise DataError(
            f"{path}:{number}: carriage return inside a line; a line ends with \\n or \\r\\n "
            "and holds no other line break"
        )
    return line


def _split_header(
    path: Path, has_header: bool, rows: Iterator[_Row]
) -> tuple[list[str] | None, Iterator[_Row]]:
    """Takes the header line off ``rows`` when the layout has one.

    Returns:
        ``(header or None, the data rows)``.

    Raises:
        DataError: the file has no line at all.
    """
    first = next(rows, None)
    if first is None:
        expected = "a header line and tab-separated rows" if has_header else "tab-separated rows"
        raise DataError(f"{path}:1: empty file; expected {expected}")
    if has_header:
        return first[1], rows
    return None, itertools.chain([first], rows)


def _position(path: Path, header: list[str] | None, width: int, ref: ColumnRef) -> int:
    """Resolves a column reference to a non-negative position in rows of ``width`` columns."""
    if isinstance(ref, int):
        return ref % width
    if header is None or ref not in header:
        found = ", ".join(header or [])
        raise DataError(f"{path}:1: header has no column {ref!r}; found: {found}")
    return header.index(ref)


def _parse_label(task: GlueTask, value: str, path: Path, line: int, column: str) -> int | float:
    """Turns a label field into the hub's value: a class id, or a float score for STS-B.

    Class labels may be written as the class name or as its id, as in the GLUE files.
    """
    if task.is_regression:
        return _parse_score(value, path, line, column)
    if value in task.label_names:
        return task.label_names.index(value)
    ids = [str(i) for i in range(task.num_labels)]
    if value in ids:
        return int(value)
    allowed = ", ".join([*ids, *task.label_names])
    raise DataError(f"{path}:{line}: unknown label {value!r} in {column}; allowed: {allowed}")


def _parse_score(value: str, path: Path, line: int, column: str) -> float:
    """Parses an STS-B similarity score."""
    try:
        score = float(value)
    except ValueError:
        score = math.nan
    if not math.isfinite(score):
        raise DataError(f"{path}:{line}: label {value!r} in {column} is not a finite number")
    return score
