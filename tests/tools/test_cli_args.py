"""The option groups the subcommands share, and the frame they run in."""

import argparse
import json
import sys

import pytest

from optopass.tools.cli_args import add_model_options, add_output_options, command_scope, print_result, show_progress


def _parser(**output) -> argparse.ArgumentParser:
    """A subcommand built as a new one (say ``optopass energy``) would be."""
    parser = argparse.ArgumentParser(prog="optopass energy")
    add_model_options(parser)
    add_output_options(parser, **output)
    return parser


def test_groups_give_model_cfg_json_progress_and_out():
    args = _parser(out_help="where to write").parse_args(["--cfg", "c.yaml", "--json", "--no-progress", "--out", "d"])
    assert (args.model, args.cfg, args.json, args.progress, args.out) == ("minilm", "c.yaml", True, False, "d")
    args = _parser().parse_args([])
    assert (args.cfg, args.json, args.progress) == (None, False, None) and not hasattr(args, "out")
    help_text = _parser().format_help()
    assert "model:" in help_text and "output:" in help_text and "--no-progress" in help_text


@pytest.mark.parametrize(("argv", "terminal", "shown"), [
    ([], True, True), ([], False, False), (["--progress"], False, True), (["--no-progress"], True, False)])
def test_progress_as_asked_else_on_a_terminal(monkeypatch, argv, terminal, shown):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal)
    assert show_progress(_parser().parse_args(argv)) is shown


def test_with_json_stdout_holds_the_document_only(capsys):
    args = _parser().parse_args(["--json", "--no-progress"])
    with command_scope(args) as progress:
        print("a log line")
    print_result(args, {"score": 1.0}, lambda result: "as a table")
    out, err = capsys.readouterr()
    assert progress is False and json.loads(out) == {"score": 1.0} and err == "a log line\n"
    print_result(_parser().parse_args([]), {"score": 1.0}, lambda result: "as a table")
    assert capsys.readouterr().out == "as a table\n"
