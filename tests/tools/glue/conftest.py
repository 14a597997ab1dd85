"""Fixtures of the GLUE tests: the shared real data, and small GLUE files written in tmp_path."""

from collections.abc import Callable
from pathlib import Path

import pytest

from optopass.tools.glue.data import default_glue_dir

WriteGlue = Callable[[str, str, list[str]], Path]


@pytest.fixture
def real_glue_dir() -> Path:
    """The shared ``glue_data`` folder (``$OPTOPASS_GLUE_DIR`` or ``<repo>/../shared/glue``)."""
    glue_dir = default_glue_dir()
    if glue_dir is None or not glue_dir.is_dir():
        pytest.skip("no shared GLUE data folder")
    return glue_dir


@pytest.fixture
def write_glue(tmp_path: Path) -> WriteGlue:
    """Returns ``write(folder, file name, lines) -> glue_dir`` writing one GLUE file.

    Lines are joined with newlines, and the file ends with one, as the GLUE files do.
    """
    glue_dir = tmp_path / "glue_data"

    def write(folder: str, name: str, lines: list[str]) -> Path:
        path = glue_dir / folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes("".join(line + "\n" for line in lines).encode("utf-8"))
        return glue_dir

    return write
