"""The per-site report of a transformed model."""

from __future__ import annotations

import math

import pytest
import torch

import optopass
from optopass.tools.report import sqnr_db, summarize

FIELDS = {"kind", "site", "origin", "op", "config", "stats"}
RANGES = {"fc": {"x", "w", "out"}, "attn": {"a", "b", "out"}}


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_every_row_has_the_documented_fields(tiny, impl):
    _, gm = tiny.capture("bert", impl, "default")
    rows = optopass.report(gm)
    assert rows
    for row in rows:
        assert FIELDS <= set(row), row
        assert row["kind"] in RANGES
        assert set(row["stats"]) == RANGES[row["kind"]]
        assert row["config"]["q_levels"] == 256 and row["config"]["q_lut_min"] == pytest.approx(0.02004)
        assert row["site"] == row["origin"] or row["site"].startswith(row["origin"] + ".")
        assert row["status"] == "optical" and row["technology"] == "optical_transformer"


def test_sdpa_sites_give_two_records_and_pv_starts_at_unit_range(tiny):
    model, gm = tiny.capture("roberta", "sdpa", "default")
    rows = [r for r in optopass.report(gm) if r["kind"] == "attn"]
    layers = model.config.num_hidden_layers
    sdpa_sites = [r for r in gm.optical_record.sites if r.op == "attention"]
    assert len(sdpa_sites) == layers and len(rows) == 2 * layers
    for rec in sdpa_sites:
        mine = [r for r in rows if r["origin"] == rec.origin]
        assert [r["site"] for r in mine] == [f"{rec.site}.qk", f"{rec.site}.pv"]
        assert [r["op"] for r in mine] == ["attention.qk", "attention.pv"]
        qk, pv = mine
        assert pv["stats"]["a"] == [0.0, 1.0]  # softmax probabilities: known range before any data
        assert all(math.isnan(v) for v in qk["stats"]["a"] + pv["stats"]["b"] + pv["stats"]["out"])


def test_eager_pv_also_starts_at_unit_range(tiny):
    _, gm = tiny.capture("distilbert", "eager", "default")
    pv = [r for r in optopass.report(gm) if r["site"].endswith(".pv")]
    assert pv and all(r["stats"]["a"] == [0.0, 1.0] for r in pv)
    assert all(r["op"] == "matmul" for r in pv)


def test_stats_follow_calibration(tiny, make_inputs):
    _, gm = tiny.capture("roberta", "eager", "default")
    optopass.calibrate(gm, [make_inputs(2, 8)])
    for row in optopass.report(gm):
        for lo, hi in row["stats"].values():
            assert math.isfinite(lo) and math.isfinite(hi) and lo <= hi, row["site"]
    pv = [r for r in optopass.report(gm) if r["site"].endswith(".pv")]
    for row in pv:  # EMA of the initial [0, 1] and the probabilities' range: inside [0, 1]
        lo, hi = row["stats"]["a"]
        assert 0.0 <= lo and hi <= 1.0


def test_untransformed_sites_are_listed_on_request(tiny):
    _, gm = tiny.capture("distilbert", "sdpa", "default")
    rows = optopass.report(gm, include_untransformed=True)
    skipped = {r["site"]: r for r in rows if r["status"] == "skipped"}
    assert set(skipped) == {"pre_classifier", "classifier"}
    assert skipped["classifier"]["reason"] == "skip: classifier"
    summary = summarize(gm)
    assert summary["by_kind"]["fc"] == {"optical": 12, "skipped": 2}
    assert summary["optical_matmuls"] == {"fc": 12, "attn": 4}


def test_report_refuses_a_plain_module():
    with pytest.raises(ValueError, match="not made by apply_optical_pass"):
        optopass.report(torch.nn.Linear(2, 2))


def test_sqnr_against_a_hand_computation():
    ref = torch.tensor([1.0, -2.0, 3.0])
    noisy = ref + torch.tensor([0.1, 0.0, -0.1])
    assert sqnr_db(ref, noisy) == pytest.approx(10 * math.log10(14 / 0.02))
    assert sqnr_db(ref, ref) == math.inf


def test_site_sqnr_matches_a_float64_reference_per_site():
    import torch.nn.functional as F

    from optopass.passes.optical import quant
    from optopass.passes.optical.sites import optical_sites
    from optopass.tools.report import site_sqnr
    from tests.conftest import hf_inputs, tiny_hf_model

    gm = optopass.apply_optical_pass(tiny_hf_model("bert", "eager"), {k: {"q_dither": False} for k in ("fc", "attn")})
    optopass.calibrate(gm, [hf_inputs(3, 12)])
    batch = hf_inputs(3, 12, seed=2)
    seen = {}
    handles = [site.register_forward_hook(lambda s, a, o: seen.setdefault(s.site_name, (a, o)) and None)
               for _, site in optical_sites(gm) if site.op in ("linear", "matmul")]
    gm(**batch)
    for h in handles:
        h.remove()
    rows = {r["site"]: r for r in site_sqnr(gm, [batch])}
    assert set(rows) == set(seen) and len(rows) == 2 * 6 + 1 + 2 * 2  # 6 fc a layer, pooler, qk/pv a layer
    for name, (args, out) in seen.items():
        args64 = [a.detach().double() if torch.is_tensor(a) else a for a in args]
        exact = F.linear(*args64) if rows[name]["op"] == "linear" else torch.matmul(*args64)
        ref_db = 10 * torch.log10(exact.pow(2).sum() / (out.detach().double() - exact).pow(2).sum())
        assert rows[name]["sqnr_db"] == pytest.approx(float(ref_db), abs=0.05), name
    assert [r["sqnr_db"] for r in site_sqnr(gm, [batch])] == sorted(r["sqnr_db"] for r in rows.values())
    assert not gm.training  # the mode is restored
