"""The ``optopass`` command line.

User errors (bad config, missing path, bad data) print one line and exit with status 2;
a traceback means a bug.
"""

from __future__ import annotations

import argparse
import sys

from .cli_args import add_model_options, add_output_options, command_scope, print_result
from .errors import OptopassError

EXIT_USER_ERROR = 2


def _add_transform(sub) -> None:
    p = sub.add_parser(
        "transform",
        help="rewrite a model into optical ops, calibrate it, and report what changed",
        description="Load a model as a sequence classifier, apply the optical pass, calibrate it on a few "
        "sentences, print what was rewritten and the output fidelity (SQNR of logits against the original), "
        "and optionally save the transformed model.",
    )
    add_model_options(p, model_help="hub name, local folder, or 'minilm' for the bundled MiniLM-L6 encoder (default)")
    p.add_argument("--num-labels", type=int, default=None, help="outputs of the classification head (a head is created if missing)")
    p.add_argument("--calibrate-data", default=None, help="text file, one sentence per line (default: built-in sample sentences)")
    p.add_argument("--calibrate-batches", type=int, default=4, help="number of calibration batches (default 4)")
    p.add_argument("--batch-size", type=int, default=8, help="calibration batch size (default 8)")
    p.add_argument("--attn-implementation", choices=["sdpa", "eager"], default="sdpa")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the weights a checkpoint lacks, such as a new classification head (default 0)")
    add_output_options(p, out_help="save the transformed, calibrated model to this folder (created or replaced)")
    p.set_defaults(func=_run_transform)


def _run_transform(args) -> int:
    from .transform_cmd import format_transform, run_transform

    with command_scope(args) as progress:
        result = run_transform(
            model=args.model, cfg=args.cfg, num_labels=args.num_labels, out=args.out,
            calibrate_data=args.calibrate_data, calibrate_batches=args.calibrate_batches,
            batch_size=args.batch_size, attn_implementation=args.attn_implementation, seed=args.seed,
            progress=progress,
        )
    print_result(args, result, format_transform)
    return 0


SUBCOMMANDS = [_add_transform]


def _optional_subcommands() -> list:
    """Subcommands living in their own modules (eval, finetune, bench)."""
    found = []
    for module_name in ("glue.cli", "bench", "energy_cmd"):
        try:
            module = __import__(f"optopass.tools.{module_name}", fromlist=["add_subcommand"])
        except ImportError:
            continue
        adder = getattr(module, "add_subcommand", None)
        if adder is not None:
            found.append(adder)
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="optopass",
        description="Simulate optical hardware on Hugging Face encoders: capture the model as a torch.fx graph, "
        "rewrite its linear layers and attention matmuls into optical ops, calibrate, evaluate, fine-tune, benchmark.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS + _optional_subcommands():
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``optopass`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except OptopassError as err:
        print(f"optopass {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
