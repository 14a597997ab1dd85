"""examples/glue_eval.py in its quickest mode: a tiny BERT, one task, a handful of real rows."""

import csv
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from optopass.tools.glue.data import default_glue_dir

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "glue_eval.py"


@pytest.fixture(scope="module")
def glue_eval():
    """The example script, imported as a module (its main() takes argv)."""
    spec = importlib.util.spec_from_file_location("glue_eval_example", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def glue_dir() -> Path:
    folder = default_glue_dir()
    if folder is None or not folder.is_dir():
        pytest.skip("no shared GLUE data folder")
    return folder


QUICK = ["--max-train-samples", "16", "--max-eval-samples", "16", "--epochs", "1", "--calibrate-batches", "1",
         "--batch-size", "8", "--no-progress"]


def read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_quick_run_writes_the_study_outputs(glue_eval, tiny_bert_dir, glue_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code = glue_eval.main(["--model", str(tiny_bert_dir), "--tasks", "rte", "--glue-dir", str(glue_dir), "--out", str(out),
                           "--squeezelight-cfg", str(tmp_path / "absent.yaml"), *QUICK])
    assert code == 0, capsys.readouterr().err

    rows = read_csv(out / "glue_tiny-bert.csv")
    assert rows[0] == ["setting", "seed", "task", "metric", "score"]
    assert {tuple(r[:4]) for r in rows[1:]} == {
        (setting, "1", "rte", "accuracy") for setting in ("original", "random", "ot_ptq", "ot_ft")
    }
    assert all(0 <= float(r[4]) <= 1 for r in rows[1:])

    tables = (out / "tables.md").read_text()
    assert "Table 1: post-training optical transform" in tables and "Table 2: transform-aware fine-tuning" in tables
    assert "| SqueezeLight | not available | not available |" in tables
    assert "| Optical Transformer |" in tables and "| RTE | Average |" in tables
    table_rows = read_csv(out / "tables.csv")
    assert table_rows[0] == ["table", "row", "setting", "statistic", "rte", "average"]
    assert (out / "tables.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    sites = read_csv(out / "site_report.csv")
    assert sites[0][:5] == ["setting", "task", "seed", "site", "kind"] and len(sites) > 10
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == {"squeezelight": "not available"}
    assert {t["stage"] for t in run["timings"]} == {"original", "random", "ot_ptq", "ot_ft"}
    models = out / "models" / "rte" / "seed1"
    assert (models / "original" / "config.json").is_file() and (models / "ot_ft" / "optopass.json").is_file()
    assert not (models / "original" / "checkpoints").exists()  # removed unless --keep-checkpoints

    # evaluation only: the same models scored again, nothing trained
    again = tmp_path / "again"
    code = glue_eval.main(["--model", str(tiny_bert_dir), "--tasks", "rte", "--glue-dir", str(glue_dir), "--out", str(again),
                           "--eval-only", str(out), "--squeezelight-cfg", "none", *QUICK])
    assert code == 0, capsys.readouterr().err
    scores = {r[0]: float(r[4]) for r in read_csv(again / "glue_tiny-bert.csv")[1:]}
    first = {r[0]: float(r[4]) for r in rows[1:]}
    assert set(scores) == set(first)
    assert scores["original"] == first["original"] and scores["random"] == first["random"]
    assert not (again / "models").exists()


def test_no_optical_is_the_baseline_comparison(glue_eval, tiny_bert_dir, glue_dir, tmp_path):
    out = tmp_path / "baseline"
    assert glue_eval.main(["--model", str(tiny_bert_dir), "--tasks", "stsb", "--glue-dir", str(glue_dir), "--out", str(out),
                           "--no-optical", *QUICK]) == 0
    rows = read_csv(out / "glue_tiny-bert.csv")
    assert [r[0] for r in rows[1:]] == ["original", "random"] and rows[1][3] == "spearmanr"
    assert "| Optical Transformer | not run | not run |" in (out / "tables.md").read_text()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tasks", "rte", "mrpc", "--learning-rates", "1e-5", "2e-5", "3e-5"], "--learning-rates: give one value or one per task"),
        (["--tasks", "rte", "--optical-learning-rates", "0"], "--optical-learning-rates: must be numbers > 0"),
        (["--tasks", "rte", "--batch-size", "0"], "--batch-size: must be an integer >= 1"),
        (["--tasks", "rte", "--epochs", "0"], "--epochs: must be a number > 0"),
        (["--tasks", "rte", "mrpc", "--epochs", "3", "5", "2"], "--epochs: give one value or one per task (2)"),
        (["--tasks", "rte", "--workers-per-gpu", "0"], "--workers-per-gpu: must be an integer >= 1"),
        (["--tasks", "rte", "--glue-dir", "{missing}"], "GLUE data folder not found"),
        (["--tasks", "rte", "--eval-only", "{missing}"], "--eval-only"),
        (["--tasks", "rte", "--cfg", "{missing}"], "missing"),
    ],
)
def test_user_errors_print_one_line_and_exit_2(glue_eval, tmp_path, capsys, argv, message):
    fill = {"missing": str(tmp_path / "missing")}
    code = glue_eval.main([a.format(**fill) for a in argv] + ["--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and message in err[0] and err[0].startswith("glue_eval.py: error: ")
    assert not (tmp_path / "out").exists()


def test_helpers(glue_eval):
    assert glue_eval.per_task([1e-3, 2e-5, 1e-5], ["stsb", "mrpc", "cola"], "--x") == {
        "stsb": 1e-3, "mrpc": 2e-5, "cola": 1e-5}
    assert glue_eval.per_task([3e-5], ["stsb", "rte"], "--x") == {"stsb": 3e-5, "rte": 3e-5}
    assert glue_eval.model_short_name("minilm") == "minilm"
    assert glue_eval.model_short_name("roberta-base") == "roberta-base"
    assert glue_eval.model_short_name("sentence-transformers/all-MiniLM-L6-v2") == "all-minilm-l6-v2"
    assert glue_eval.model_short_name("/tmp/x/My Model/") == "my-model"


def test_queue_orders_units_longest_first_and_gives_each_to_one_worker(glue_eval, tmp_path):
    epochs = {"sst2": 3.0, "mrpc": 5.0, "cola": 5.0, "stsb": 5.0, "rte": 5.0}
    units = glue_eval.unit_order(list(epochs), [1, 2, 3], None, epochs)
    assert sorted(units) == sorted((t, s) for t in epochs for s in [1, 2, 3])
    assert [t for t, _ in units[:3]] == ["sst2"] * 3 and [t for t, _ in units[-3:]] == ["rte"] * 3
    # a cap of 2000 rows puts CoLA (5 epochs of 2000) ahead of SST-2 (3 epochs of 2000)
    assert glue_eval.unit_order(list(epochs), [1], 2000, epochs)[-1] == ("sst2", 1)
    queue = tmp_path / "queue"
    glue_eval.write_queue(queue, units)
    # three workers interleaved: each takes the next unit left; every unit is taken exactly once, in order
    workers = [glue_eval.claim_units(queue) for _ in range(3)]
    taken, done = [], set()
    while len(done) < 3:
        for k, worker in enumerate(workers):
            if k in done:
                continue
            unit = next(worker, None)
            if unit is None:
                done.add(k)
            else:
                taken.append(unit)
    assert taken == units
    assert not [p for p in queue.iterdir() if p.is_file()] and len(list((queue / "claimed").iterdir())) == 15


def test_gpus_needs_that_many_devices(glue_eval, tmp_path, capsys):
    import torch

    wanted = max(2, torch.cuda.device_count() + 1)
    code = glue_eval.main(["--tasks", "rte", "--gpus", str(wanted), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--gpus" in err[0]


def test_workers_sharing_a_queue_give_the_single_process_tables(glue_eval, tiny_bert_dir, glue_dir, tmp_path):
    """--workers-per-gpu 2 (two worker processes taking units from one queue; on the CPU here) gives
    the same scores as one process running both tasks."""
    common = ["--model", str(tiny_bert_dir), "--tasks", "rte", "stsb", "--glue-dir", str(glue_dir), "--no-optical", *QUICK]
    single = tmp_path / "single"
    assert glue_eval.main([*common, "--out", str(single)]) == 0
    split = tmp_path / "split"
    assert glue_eval.main([*common, "--out", str(split), "--workers-per-gpu", "2"]) == 0
    assert read_csv(split / "glue_tiny-bert.csv") == read_csv(single / "glue_tiny-bert.csv")
    claimed = sorted(p.name for p in (split / "parts" / "queue" / "claimed").iterdir())
    assert sorted(name.split("-", 1)[1] for name in claimed) == ["rte-1", "stsb-1"]  # each unit taken once
    assert sorted(p.name for p in (split / "units").iterdir()) == ["rte-1.json", "stsb-1.json"]

def test_resume_runs_only_the_units_left_and_gives_the_full_run_tables(glue_eval, tiny_bert_dir, glue_dir, tmp_path,
                                                                        monkeypatch, capsys):
    common = ["--model", str(tiny_bert_dir), "--tasks", "rte", "stsb", "--glue-dir", str(glue_dir), "--no-optical",
              *QUICK, "--out", str(tmp_path / "o")]
    assert glue_eval.main(common) == 0
    full = read_csv(tmp_path / "o" / "glue_tiny-bert.csv")
    (tmp_path / "o" / "units" / "stsb-1.json").unlink()  # as if the run had stopped during STS-B
    (tmp_path / "o" / "glue_tiny-bert.csv").unlink()
    ran = []
    real = glue_eval.run_one
    monkeypatch.setattr(glue_eval, "run_one", lambda args, study, task, seed, *rest: (
        ran.append((task, seed)), real(args, study, task, seed, *rest)))
    assert glue_eval.main([*common, "--resume"]) == 0
    assert ran == [("stsb", 1)]
    assert read_csv(tmp_path / "o" / "glue_tiny-bert.csv") == full
    # a unit finished under other options is not mixed in
    capsys.readouterr()
    assert glue_eval.main([*common, "--resume", "--calibrate-batches", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--calibrate-batches" in err[0] and "--resume" in err[0]
    # without --resume every unit runs again
    ran.clear()
    assert glue_eval.main(common) == 0
    assert sorted(ran) == [("rte", 1), ("stsb", 1)]
