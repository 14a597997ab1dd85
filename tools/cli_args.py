"""What the ``optopass`` subcommands share: their common option groups, each added by one
function, and the frame a subcommand runs in.

A subcommand module adds its parser, then the groups it needs::

    p = sub.add_parser("energy", help=...)
    add_model_options(p)                      # --model, --cfg
    add_output_options(p)                     # --json, --progress / --no-progress
    p.set_defaults(func=_run)

and runs its work inside :func:`command_scope`, printing the result after it::

    def _run(args) -> int:
        with command_scope(args) as progress:
            result = run_energy(model=args.model, cfg=args.cfg, progress=progress)
        print_result(args, result, format_energy)
        return 0
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

from .progress import default_progress, progress_bars

MODEL_HELP = ("hub name, local folder, a folder written by optopass.save / optopass finetune, "
              "or 'minilm' (the bundled MiniLM-L6 encoder; default)")
CFG_HELP = "optical config YAML (default: the shipped transform_cfg.yaml)"
DTYPES = ("fp32", "bf16", "fp16")


def add_model_options(parser: argparse.ArgumentParser, *, model: bool = True, model_help: str = MODEL_HELP,
                      cfg_help: str = CFG_HELP) -> argparse._ArgumentGroup:
    """Adds the group ``model``: ``--model`` (unless `model` is False) and ``--cfg``."""
    group = parser.add_argument_group("model")
    if model:
        group.add_argument("--model", default="minilm", help=model_help)
    group.add_argument("--cfg", default=None, help=cfg_help)
    return group


def add_output_options(parser: argparse.ArgumentParser, *, out_help: str | None = None,
                       out_required: bool = False) -> argparse._ArgumentGroup:
    """Adds the group ``output``: ``--out FOLDER`` (when `out_help` is given), ``--json`` and
    ``--progress`` / ``--no-progress``."""
    group = parser.add_argument_group("output")
    if out_help is not None:
        group.add_argument("--out", required=out_required, default=None, metavar="FOLDER", help=out_help)
    group.add_argument("--json", action="store_true",
                       help="print the result as JSON (stdout holds the JSON only; logs go to stderr)")
    group.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                       help="progress bars on stderr: data preparation, model loading and saving, calibration, "
                            "evaluation, training (default: only when stderr is a terminal)")
    return group


def add_compile_option(parser: argparse.ArgumentParser) -> None:
    """Adds ``--compile`` / ``--no-compile`` (``args.compile``: True, False, or None for auto:
    compiled on a GPU, eager on the CPU: ``trainer.resolve_training_compile``)."""
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="run the model under torch.compile (evaluation: CUDA graphs, one graph per length "
                             "bucket of 32 tokens; training: the Trainer's torch_compile); the compile time is "
                             "reported apart from the throughput (default: on a GPU, off on the CPU)")


def show_progress(args: argparse.Namespace) -> bool:
    """``--progress`` / ``--no-progress`` as given, else whether stderr is a terminal."""
    chosen = getattr(args, "progress", None)
    return default_progress() if chosen is None else chosen


@contextlib.contextmanager
def command_scope(args: argparse.Namespace) -> Iterator[bool]:
    """The frame of a subcommand's work; yields whether to show progress bars.

    With ``--json``, whatever the work prints (the Trainer's log lines) goes to stderr, so
    that stdout holds the JSON document only; without progress, every library's bars are off
    until the block ends.
    """
    progress = show_progress(args)
    with contextlib.ExitStack() as stack:
        if getattr(args, "json", False):
            stack.enter_context(contextlib.redirect_stdout(sys.stderr))
        stack.enter_context(progress_bars(progress))
        yield progress


def print_result(args: argparse.Namespace, result: Any, format_text: Callable[[Any], str]) -> None:
    """Prints `result` as JSON with ``--json``, else as `format_text` writes it."""
    print(json.dumps(result, indent=2) if args.json else format_text(result))
