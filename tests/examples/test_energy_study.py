"""examples/energy_study.py in its quickest mode: a tiny BERT, one task, a handful of real rows;
and its op-level scaling law against the closed form."""

import csv
import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

from optopass.tools.glue.data import default_glue_dir

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "energy_study.py"
HARDWARE = {"laser_wall_plug_efficiency": 0.2, "optical_link_efficiency": 0.5, "dac_energy_pj": 1.0}


@pytest.fixture(scope="module")
def study():
    spec = importlib.util.spec_from_file_location("energy_study_example", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_scaling_law_follows_the_closed_form(study):
    """SNR = E[y^2] / E[noise^2], the noise variance of an output being m mean(m) / (p d) for
    m = sum |x||w| at p photons per MAC. Zero-mean Gaussian operands: E[y^2] = d, mean(m) =
    2d/pi, so SNR = p pi^2 / 4 whatever d. U[0, 1) operands: E[y^2] = d^2/16 + 7d/144 and
    mean(m) = d/4, so SNR = p d (1 + 7/(9d)): the photons for a fixed SNR fall as 1/d."""
    p = 2.0
    snr_signed = [study.snr_db(d, p, "signed") for d in (64, 1024)]
    expected = 10 * math.log10(p * math.pi**2 / 4)
    assert snr_signed == pytest.approx([expected, expected], abs=0.3)
    for d in (64, 512):
        assert study.snr_db(d, p, "non-negative") == pytest.approx(10 * math.log10(p * d * (1 + 7 / (9 * d))), abs=0.3)
    # offset encoding, N(0, 1) operands shifted by c = 4: the light L = sum (x + 4)(w + 4) has mean
    # 16 d, so s = p / 16 and the noise variance L / s averages 256 d / p against E[y^2] = d:
    # SNR = p / 256 whatever d: 256 pi^2 / 4 = 632x the photons of differential rails (SNR = p pi^2 / 4)
    for d in (64, 1024):
        assert study.snr_db(d, 100.0, "signed-offset") == pytest.approx(10 * math.log10(100.0 / 256), abs=0.3)


def test_scaling_only_run_writes_table_csv_and_plot(study, tmp_path, capsys):
    out = tmp_path / "scaling"
    assert study.main(["--scaling-only", "--widths", "64", "256", "--out", str(out)]) == 0
    rows = read_csv(out / "energy_scaling.csv")
    assert rows[0] == list(study.SCALING_HEADER)
    nonneg = {int(r[1]): float(r[2]) for r in rows[1:] if r[0] == "non-negative"}
    assert nonneg[64] / nonneg[256] == pytest.approx(4.0, rel=0.1)  # the 1/d law
    offset = {int(r[1]): float(r[2]) for r in rows[1:] if r[0] == "signed-offset"}
    assert offset[64] == pytest.approx(offset[256], rel=0.15) == pytest.approx(100 * 256, rel=0.15)  # flat, p = 100 * 256
    assert (out / "energy_scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Photons per MAC for 20 dB" in (out / "energy_tables.md").read_text()


def test_bad_levels_exit_2_and_write_nothing(study, tmp_path, capsys):
    out = tmp_path / "bad"
    assert study.main(["--photons", "0", "1", "--out", str(out)]) == 2
    assert "--photons" in capsys.readouterr().err and not out.exists()


def test_thresholds_take_the_fewest_photons_that_stay_within_tolerance(study):
    args = study.parse_args(["--tasks", "mrpc", "--photons", "0.1", "1", "10", "100"])
    rows = [["noiseless", "mrpc", 1, "", "accuracy", 0.80]]
    for p, score in ((0.1, 0.5), (1.0, 0.795), (10.0, 0.70), (100.0, 0.80)):
        rows.append(["ptq", "mrpc", 1, p, "accuracy", score])
    assert study.thresholds(rows, args) == {"mrpc": 100.0}  # 1 photon passes, 10 does not
    assert study.ft_levels(100.0, args.photons) == [1.0, 10.0, 100.0]
    assert study.ft_levels(0.1, args.photons) == [0.1]


def test_quick_glue_run_writes_the_study(study, tiny_bert_dir, tmp_path, capsys):
    glue = default_glue_dir()
    if glue is None or not (Path(glue) / "MRPC").is_dir():
        pytest.skip("no shared GLUE data folder")
    hardware = tmp_path / "hw.yaml"
    hardware.write_text("".join(f"{k}: {v}\n" for k, v in HARDWARE.items()))
    out = tmp_path / "run"
    code = study.main(["--model", str(tiny_bert_dir), "--tasks", "mrpc", "--seeds", "1", "--glue-dir", str(glue),
                       "--max-train-samples", "16", "--max-eval-samples", "16", "--epochs", "1",
                       "--photons", "0.1", "1000", "--ft-max-train-samples", "8", "--calibrate-batches", "1",
                       "--batch-size", "8", "--widths", "64", "128", "--energy-batch", "2", "--seq-len", "16",
                       "--hardware", str(hardware), "--no-progress", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    rows = read_csv(out / "energy_glue.csv")
    assert rows[0] == list(study.GLUE_HEADER)
    stages = {(r[0], r[3]) for r in rows[1:]}
    assert {("original", ""), ("noiseless", ""), ("ptq", "0.1"), ("ptq", "1000.0")} <= stages
    assert any(r[0] == "noise_aware_ft" for r in rows[1:])
    assert all(0 <= float(r[5]) <= 1 for r in rows[1:])
    run = json.loads((out / "energy_run.json").read_text())
    threshold = run["thresholds"]["mrpc"]
    if threshold is not None:
        energy = run["energy"]["mrpc"]
        assert energy["total_energy_j"] > 0 and energy["digital_reference_energy_j"] > 0
    tables = (out / "energy_tables.md").read_text()
    assert "GLUE score against photons per MAC" in tables and "Noise-aware fine-tuning" in tables
    assert (out / "energy_glue.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the tables and figures again from the run's files, without computing
    again = tmp_path / "again"
    assert study.main(["--render", str(out), "--out", str(again)]) == 0
    assert (again / "energy_tables.md").read_text() == tables
    assert (again / "energy_glue.png").is_file() and (again / "energy_scaling.png").is_file()
    assert study.main(["--render", str(tmp_path / "nothing"), "--out", str(again)]) == 2
