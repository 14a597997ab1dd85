"""examples/ptq_study.py end to end on a tiny model and real RTE rows (CPU): every output file,
scores in range, one sensitivity row per optical site."""

import csv
import importlib.util
from pathlib import Path

import pytest

from optopass.tools.glue.data import default_glue_dir

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "ptq_study.py"


def _module():
    spec = importlib.util.spec_from_file_location("ptq_study_example", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _tiny_rte_run(make_tiny_classifier, tmp_path, split: str) -> tuple[Path, Path, Path]:
    """(GLUE folder, a glue_eval-style runs folder holding a tiny RTE original, out folder);
    skips without the shared RTE `split`."""
    glue = default_glue_dir()
    if glue is None or not (glue / "RTE" / f"{split}.tsv").is_file():
        pytest.skip("no ../shared/glue/RTE")
    runs = tmp_path / "runs"
    make_tiny_classifier(runs / "models" / "rte" / "seed1" / "original")
    return glue, runs, tmp_path / "out"


def test_ptq_study_writes_every_table_and_figure(make_tiny_classifier, tmp_path):
    glue, runs, out = _tiny_rte_run(make_tiny_classifier, tmp_path, "dev")
    code = _module().main(["--runs", str(runs), "--tasks", "rte", "--glue-dir", str(glue), "--out", str(out),
                           "--variants", "minmax (reference)", "mse", "--levels", "16", "256",
                           "--sensitivity-task", "rte", "--calibrate-batches", "1", "--batch-size", "16",
                           "--max-eval-samples", "24", "--ft-levels-tasks", "rte", "--ft-max-train-samples", "16"])
    assert code == 0
    for name in ("ptq_variants.csv", "ptq_variants.md", "qlevels_ptq.csv", "qlevels_ptq.png", "site_sensitivity.csv",
                 "site_sensitivity.png", "qlevels_ft.csv", "qlevels_ft.png"):
        assert (out / name).stat().st_size > 0, name
    variants = _rows(out / "ptq_variants.csv")
    assert [r["variant"] for r in variants] == ["original", "minmax (reference)", "mse"]
    assert all(0.0 <= float(r["score"]) <= 1.0 for r in variants)
    assert [int(r["q_levels"]) for r in _rows(out / "qlevels_ptq.csv")] == [16, 256]
    ft = _rows(out / "qlevels_ft.csv")
    assert [int(r["q_levels"]) for r in ft] == [16, 256] and all(0 <= float(r["ft_score"]) <= 1 for r in ft)
    sites = _rows(out / "site_sensitivity.csv")
    # 2 layers x (q, k, v, attention out, intermediate, output) fc sites + 2 attention sites (qk, pv each)
    assert len(sites) - 2 >= 2 * 6
    assert sites[0]["site"] == "<original>" and sites[1]["site"] == "<all optical>"


def test_merge_combines_the_tables_of_several_runs(tmp_path):
    parts = []
    for k, task in enumerate(["rte", "mrpc"]):
        part = tmp_path / f"gpu{k}"
        part.mkdir()
        (part / "ptq_variants.csv").write_text(
            f"task,seed,variant,score,relative\n{task},1,original,0.8,1.0\n{task},1,mse,0.76,0.95\n")
        (part / "qlevels_ptq.csv").write_text(f"task,seed,q_levels,score\n{task},1,16,0.5\n{task},1,256,0.76\n")
        parts.append(str(part))
    out = tmp_path / "merged"
    assert _module().main(["--merge", *parts, "--out", str(out), "--tasks", "mrpc", "rte"]) == 0
    assert len(_rows(out / "ptq_variants.csv")) == 4 and len(_rows(out / "qlevels_ptq.csv")) == 4
    table = (out / "ptq_variants.md").read_text()
    assert "| mse | 0.760 | 0.760 | 95.0% (min 95.0%) |" in table
    assert (out / "qlevels_ptq.png").stat().st_size > 0


def test_sqnr_sensitivity_compares_the_reference_ranges_with_the_default(make_tiny_classifier, tmp_path):
    glue, runs, out = _tiny_rte_run(make_tiny_classifier, tmp_path, "train")
    assert _module().main(["--runs", str(runs), "--tasks", "rte", "--glue-dir", str(glue), "--out", str(out),
                           "--skip", "variants", "levels", "--sensitivity-task", "rte", "--sensitivity-method", "sqnr",
                           "--calibrate-batches", "1", "--sqnr-batches", "1"]) == 0
    rows = _rows(out / "site_sqnr.csv")
    assert list(rows[0]) == ["site", "sqnr_db minmax (reference)", "sqnr_db mse"]
    assert len(rows) == 2 * 6 + 1 + 2 * 2
    worst = [float(r["sqnr_db minmax (reference)"]) for r in rows]
    assert worst == sorted(worst) and (out / "site_sqnr.png").stat().st_size > 0
