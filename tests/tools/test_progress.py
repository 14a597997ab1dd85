"""Progress bars: every library's switch off inside ``progress_bars(False)``, put back after."""

import sys

import datasets
import pytest
from datasets.utils import are_progress_bars_disabled
from huggingface_hub.utils import are_progress_bars_disabled as hub_bars_disabled
from huggingface_hub.utils import tqdm as hub_tqdm
from transformers.utils import logging as hf_logging

from optopass.tools.progress import default_progress, progress_bars


def _draw_bars() -> None:
    datasets.Dataset.from_dict({"x": [1, 2, 3]}).map(lambda row: row)  # datasets' map bar
    for _ in hf_logging.tqdm(range(2), desc="Writing model shards"):  # transformers' bars
        pass
    for _ in hub_tqdm(range(2), desc="hub"):
        pass


def _states() -> tuple[bool, bool, bool]:
    return are_progress_bars_disabled(), hf_logging.is_progress_bar_enabled(), hub_bars_disabled()


def test_no_progress_silences_every_library_and_puts_their_switches_back(capsys):
    before = _states()
    with progress_bars(False):
        _draw_bars()
    assert capsys.readouterr().err == ""
    assert _states() == before
    with progress_bars(True):
        _draw_bars()
    err = capsys.readouterr().err
    assert "Map" in err and "Writing model shards" in err and "hub" in err


def test_switches_are_put_back_after_an_error():
    before = _states()
    with pytest.raises(RuntimeError), progress_bars(False):
        raise RuntimeError("boom")
    assert _states() == before


@pytest.mark.parametrize("terminal", [True, False])
def test_bars_by_default_only_on_a_terminal(monkeypatch, terminal):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal)
    assert default_progress() is terminal
