"""Progress bars of a command: by default only on a terminal; off, all of them, on request.

The bars come from several libraries, each with its own switch: ``datasets`` (map and filter),
``transformers`` (weight loading, shard writing; its switch also turns off ``huggingface_hub``'s
downloads), ``huggingface_hub``, and the ``tqdm`` bars of optopass itself (evaluation,
calibration, the Trainer), which take a ``progress`` argument.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Iterator


def default_progress() -> bool:
    """Bars by default only when stderr is a terminal (not in a log file or a pipe)."""
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


@contextlib.contextmanager
def progress_bars(enabled: bool) -> Iterator[None]:
    """Within the block, the libraries' bars are off unless `enabled`; their settings are
    restored after. `enabled` leaves the libraries' own settings (and their environment
    variables) as they are."""
    if enabled:
        yield
        return
    import datasets.utils as datasets_tqdm
    import huggingface_hub.utils as hub_tqdm
    from transformers.utils import logging as hf_logging

    # the hub's switch keeps its state per group of bars; that whole table is put back after
    hub_states = importlib.import_module("huggingface_hub.utils.tqdm").progress_bar_states
    saved_hub_states = dict(hub_states)
    datasets_were_off = datasets_tqdm.are_progress_bars_disabled()
    transformers_were_on = hf_logging.is_progress_bar_enabled()
    if not datasets_were_off:
        datasets_tqdm.disable_progress_bars()
    if transformers_were_on:
        hf_logging.disable_progress_bar()
    if not hub_tqdm.are_progress_bars_disabled():
        hub_tqdm.disable_progress_bars()
    try:
        yield
    finally:
        if not datasets_were_off:
            datasets_tqdm.enable_progress_bars()
        if transformers_were_on:
            hf_logging.enable_progress_bar()
        hub_states.clear()
        hub_states.update(saved_hub_states)
