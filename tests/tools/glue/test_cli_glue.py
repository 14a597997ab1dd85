"""``optopass eval`` and ``optopass finetune`` on tiny models and real GLUE data."""

import json
import sys

import pytest

import optopass
from optopass.tools.cli import EXIT_USER_ERROR, main
from optopass.tools.io import is_saved_transform


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def bar_lines(err: str) -> list[str]:
    """The progress bars a run drew on stderr (tqdm draws 'NN%|' and 'it/s]')."""
    return [line for line in err.splitlines() if "%|" in line or "it/s]" in line]


def json_out(out: str) -> dict:
    """stdout of a --json run: one JSON document and nothing else (the Trainer's logs go to stderr)."""
    return json.loads(out)


def test_finetune_optical_writes_a_folder_that_eval_and_load_accept(capsys, tiny_bert_dir, real_glue_dir, tmp_path):
    out_dir = tmp_path / "ft"
    code, out, err = run(capsys, "finetune", "--model", tiny_bert_dir, "--task", "sst2", "--glue-dir", real_glue_dir,
                         "--cfg", optopass.tools.config.DEFAULT_CONFIG_PATH, "--calibrate-batches", 1,
                         "--calibrate-batch-size", 8, "--out", out_dir, "--max-steps", 2,
                         "--per-device-train-batch-size", 8, "--max-train-samples", 32, "--max-eval-samples", 16,
                         "--json")
    assert code == 0, err
    assert not bar_lines(err)  # stderr is no terminal: no bars (datasets, calibration, Trainer, shard writing)
    result = json_out(out)
    assert result["optical"] is True and result["ft_stats"] == "frozen" and result["learning_rate"] == 1e-5
    assert result["global_step"] == 2 and 0 <= result["metrics"]["accuracy"] <= 1
    assert is_saved_transform(out_dir)

    code, out, err = run(capsys, "eval", "--model", out_dir, "--task", "sst2", "--glue-dir", real_glue_dir,
                         "--max-eval-samples", 16, "--batch-size", 8, "--json")
    assert code == 0, err
    assert not bar_lines(err)  # nor transformers' weight loading
    scores = json_out(out)
    assert set(scores) == {"task", "n_examples", "original", "optical", "speed"}
    assert scores["task"] == "sst2" and scores["n_examples"] == 16
    assert set(scores["original"]) == set(scores["optical"]) == {"accuracy"}


def test_eval_json_with_cfg_scores_both_side_by_side(capsys, tiny_bert_dir, real_glue_dir):
    code, out, err = run(capsys, "eval", "--model", tiny_bert_dir, "--task", "mrpc", "--glue-dir", real_glue_dir,
                         "--cfg", optopass.tools.config.DEFAULT_CONFIG_PATH, "--calibrate-batches", 1,
                         "--calibrate-batch-size", 8, "--max-eval-samples", 16, "--json")
    assert code == 0, err
    scores = json_out(out)
    assert set(scores) == {"task", "n_examples", "original", "optical", "speed"}
    assert set(scores["optical"]) == {"accuracy", "f1"}

    code, out, err = run(capsys, "eval", "--model", tiny_bert_dir, "--task", "mrpc", "--glue-dir", real_glue_dir,
                         "--max-eval-samples", 8)
    assert code == 0, err
    assert "original" in out and "optical" not in out and "accuracy" in out


def test_eval_without_cfg_prints_no_optical_key(capsys, tiny_bert_dir, real_glue_dir):
    code, out, err = run(capsys, "eval", "--model", tiny_bert_dir, "--task", "sst2", "--glue-dir", real_glue_dir,
                         "--max-eval-samples", 8, "--json")
    assert code == 0, err
    assert set(json_out(out)) == {"task", "n_examples", "original", "speed"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["eval", "--task", "sst2", "--glue-dir", "{missing}"], "GLUE data folder not found"),
        (["eval", "--task", "sst2", "--glue-dir", "{glue}", "--split", "validation_matched"], "validation_matched"),
        (["eval", "--task", "sst2", "--glue-dir", "{glue}", "--batch-size", "0"], "--batch-size: must be an integer >= 1"),
        (["eval", "--task", "sst2", "--glue-dir", "{glue}", "--calibrate-batches", "-1"], "--calibrate-batches"),
        (["eval", "--task", "sst2", "--glue-dir", "{glue}", "--cfg", "{missing}.yaml"], "missing"),
        (["eval", "--task", "sst2", "--glue-dir", "{glue}", "--model", "{missing}"], "does not exist"),
        (["finetune", "--task", "sst2", "--out", "{out}", "--learning-rate", "-1"], "--learning-rate: must be a number > 0"),
        (["finetune", "--task", "sst2", "--out", "{out}", "--warmup-ratio", "2"], "--warmup-ratio"),
        (["finetune", "--task", "sst2", "--out", "{out}", "--max-steps", "0"], "--max-steps"),
        (["finetune", "--task", "stsb", "--out", "{out}", "--glue-dir", "{missing}"], "GLUE data folder not found"),
        (["eval", "--task", "stsb", "--glue-dir", "{glue}", "--model", "{tiny}"], "its classification head has another size"),
    ],
)
def test_user_errors_print_one_line_and_exit_2(capsys, tmp_path, real_glue_dir, tiny_bert_dir, argv, message):
    fill = {"missing": str(tmp_path / "missing"), "glue": str(real_glue_dir), "out": str(tmp_path / "out"),
            "tiny": str(tiny_bert_dir)}
    code, out, err = run(capsys, *[a.format(**fill) for a in argv])
    assert code == EXIT_USER_ERROR
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err
    assert lines[0].startswith(f"optopass {argv[0]}: error: ")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["eval", "finetune"])
def test_unknown_task_is_an_argparse_choice_error(capsys, command):
    with pytest.raises(SystemExit) as info:
        main([command, "--task", "sst-2", "--out", "x"])
    assert info.value.code == EXIT_USER_ERROR
    assert "invalid choice: 'sst-2'" in capsys.readouterr().err


@pytest.mark.parametrize("out", ["taken", "taken/below"])
def test_finetune_out_that_is_a_file_is_one_line_exit_2_and_nothing_written(capsys, tmp_path, real_glue_dir,
                                                                           tiny_bert_dir, out):
    (tmp_path / "taken").write_text("a file of mine")
    code, _, err = run(capsys, "finetune", "--model", tiny_bert_dir, "--task", "sst2", "--glue-dir", real_glue_dir,
                       "--out", tmp_path / out, "--max-steps", 1)
    assert code == EXIT_USER_ERROR
    assert err.startswith("optopass finetune: error: --out: ") and err.count("\n") == 1
    assert "an existing file, not a folder" in err
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]
    assert (tmp_path / "taken").read_text() == "a file of mine"


@pytest.fixture
def dev_only_qnli(tmp_path, real_glue_dir):
    """A glue_data folder whose QNLI has its dev file only (as the shared folder has)."""
    source = real_glue_dir / "QNLI" / "dev.tsv"
    if not source.is_file():
        pytest.skip("no QNLI dev file in the shared GLUE folder")
    (tmp_path / "glue" / "QNLI").mkdir(parents=True)
    (tmp_path / "glue" / "QNLI" / "dev.tsv").symlink_to(source)
    return tmp_path / "glue"


def test_eval_without_a_train_split_names_calibrate_split(capsys, tiny_bert_dir, dev_only_qnli):
    argv = ["eval", "--model", tiny_bert_dir, "--task", "qnli", "--glue-dir", dev_only_qnli,
            "--cfg", optopass.tools.config.DEFAULT_CONFIG_PATH]
    code, _, err = run(capsys, *argv)
    assert code == EXIT_USER_ERROR and err.count("\n") == 1
    assert "train.tsv: file not found" in err and "--calibrate-split (validation)" in err

    code, _, err = run(capsys, *argv, "--calibrate-split", "test")
    assert code == EXIT_USER_ERROR
    assert "--calibrate-split: qnli has no split 'test'; allowed: train, validation" in err

    code, out, err = run(capsys, *argv, "--calibrate-split", "validation", "--calibrate-batches", 1,
                         "--calibrate-batch-size", 8, "--max-eval-samples", 8, "--json")
    assert code == 0, err
    assert set(json_out(out)) == {"task", "n_examples", "original", "optical", "speed"}


def test_progress_bars_only_on_a_terminal_or_when_asked(capsys, monkeypatch, tiny_bert_dir, real_glue_dir):
    """Bars (datasets' tokenizing map, the evaluation's own) follow --progress / --no-progress,
    else whether stderr is a terminal; the libraries' switches are put back after the command."""
    from datasets.utils import are_progress_bars_disabled
    from transformers.utils.logging import is_progress_bar_enabled

    before = (are_progress_bars_disabled(), is_progress_bar_enabled())
    argv = ["eval", "--model", tiny_bert_dir, "--task", "sst2", "--glue-dir", real_glue_dir, "--max-eval-samples", 4]
    drawn = {}
    for name, extra in [("asked", ["--progress"]), ("refused", ["--no-progress"]), ("default", [])]:
        code, _, err = run(capsys, *argv, *extra)
        assert code == 0, err
        drawn[name] = " ".join(bar_lines(err))
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    code, _, err = run(capsys, *argv)
    drawn["terminal"] = " ".join(bar_lines(err))
    assert "Map" in drawn["asked"] and "sst2/validation" in drawn["asked"]
    assert "Map" in drawn["terminal"] and "sst2/validation" in drawn["terminal"]
    assert drawn["refused"] == drawn["default"] == ""
    assert (are_progress_bars_disabled(), is_progress_bar_enabled()) == before
