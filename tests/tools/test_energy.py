"""The energy account: its arithmetic against hand-computed models, the hardware section's
validation, and ``optopass energy``."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import optopass
from optopass.tools.cli import EXIT_USER_ERROR, main
from optopass.tools.config import load_hardware
from optopass.tools.energy import CATEGORIES, photon_energy_j
from optopass.tools.errors import ConfigError
from optopass.tools.hardware import HardwareParams

# CODATA 2018 (exact in the SI since 2019)
H_J_S = 6.62607015e-34
C_M_S = 299792458.0

HW = {"wavelength_nm": 1550.0, "laser_wall_plug_efficiency": 0.25, "optical_link_efficiency": 0.5,
      "photons_per_mac": 10.0, "dac_energy_pj": 2.0, "adc_energy_pj": 3.0, "digital_energy_per_op_pj": 0.5,
      "memory_energy_per_byte_pj": 0.1, "digital_reference_energy_per_mac_fj": 300.0}
COMPLETE = {"laser_wall_plug_efficiency": 0.2, "optical_link_efficiency": 0.5, "dac_energy_pj": 1.0}


class OneLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x)


class TwoLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 3)
        self.fc2 = nn.Linear(3, 2, bias=False)

    def forward(self, x):
        return self.fc2(self.fc1(x))


def _capture(model_cls, config, batch=2, seq=5):
    torch.manual_seed(0)
    x = torch.randn(batch, seq, 4)
    return optopass.apply_optical_pass(model_cls().eval(), config, example_inputs=(x,)), x


@pytest.fixture(scope="module")
def one_linear():
    return _capture(OneLinear, {"fc": {}})


def test_photon_energy_is_h_c_over_lambda():
    assert photon_energy_j(1550.0) == pytest.approx(H_J_S * C_M_S / 1550e-9, rel=1e-15)
    assert photon_energy_j(1550.0) == pytest.approx(1.2816e-19, rel=1e-4)


def test_one_linear_by_hand(one_linear):
    """Linear 4 -> 3 with bias, batch 2 x 5 tokens, every term written out from the formula."""
    gm, x = one_linear
    report = optopass.energy(gm, batch=2, seq_len=5, hardware=HW, inputs=(x,))
    (site,) = report.sites
    macs = 2 * 5 * 4 * 3
    e_photon = H_J_S * C_M_S / 1550e-9
    assert site.counts.macs == macs == 120
    assert (site.counts.dac_conversions, site.counts.adc_conversions, site.counts.weight_loads) == (40, 30, 12)
    assert site.counts.dac_bits == site.counts.adc_bits == 8.0  # q_levels 256
    assert (site.photons_per_mac, site.photons_from) == (10.0, "hardware default")
    optical = macs * 10.0 * e_photon / (0.25 * 0.5)
    dac, adc, weights = 40 * 2e-12, 30 * 3e-12, 12 * 2e-12  # weight loads priced as DAC conversions
    bias_ops, bias_bytes = 30, (30 + 3 + 30) * 4  # the bias add after the ADC: read y and b, write y
    compute, memory = bias_ops * 0.5e-12, bias_bytes * 0.1e-12
    assert site.optical_j == pytest.approx(optical, rel=1e-12)
    assert (site.dac_j, site.adc_j, site.weight_load_j) == pytest.approx((dac, adc, weights), rel=1e-12)
    totals = report.totals_j()
    expected = {"optical": optical, "dac": dac, "adc": adc, "weight_load": weights,
                "digital_compute": compute, "digital_memory": memory}
    assert totals == pytest.approx(expected, rel=1e-12)
    summary = report.to_dict()["totals"]
    total = sum(expected.values())
    assert summary["total_per_inference_j"] == pytest.approx(total / 2, rel=1e-12)
    assert summary["total_per_token_j"] == pytest.approx(total / 10, rel=1e-12)
    assert summary["per_inference_j"]["weight_load"] == pytest.approx(12 * 2e-12 / 2)  # amortised over 2 sequences
    assert report.digital_reference_j == pytest.approx(macs * 300e-15, rel=1e-12)
    assert report.advantage == pytest.approx(macs * 300e-15 / total, rel=1e-12)


def test_the_ops_photons_per_mac_wins_over_the_default():
    gm, x = _capture(OneLinear, {"fc": {"q_photons_per_mac": 100.0}})
    report = optopass.energy(gm, batch=2, seq_len=5, hardware=HW, inputs=(x,))
    (priced,) = report.sites
    assert (priced.photons_per_mac, priced.photons_from) == (100.0, "site")
    assert priced.optical_j == pytest.approx(120 * 100.0 * H_J_S * C_M_S / 1550e-9 / 0.125, rel=1e-12)


def test_a_skipped_linear_is_digital_work_at_the_reference_energy():
    gm, x = _capture(TwoLinear, {"fc": {}, "skip": ["fc2"]})
    report = optopass.energy(gm, batch=2, seq_len=5, hardware=HW, inputs=(x,))
    assert [s.counts.site for s in report.sites] == ["fc1"]
    (linear,) = [r for r in report.digital if r.op_class == "linear"]
    assert linear.macs == 2 * 5 * 3 * 2 and linear.bytes_moved == 0
    assert report.reference_macs == 120 + 60
    compute = 30 * 0.5e-12 + 60 * 300e-15  # fc1's bias add, fc2's MACs
    assert report.totals_j()["digital_compute"] == pytest.approx(compute, rel=1e-12)


def test_squeezelight_counts_its_padded_circulant_blocks():
    gm, x = _capture(OneLinear, {"fc": {"technology": "squeezelight", "miniblock": 2, "in_bits": 6}})
    report = optopass.energy(gm, batch=2, seq_len=5, hardware=HW, inputs=(x,))
    (site,) = report.sites
    # 3 x 4 padded to 4 x 4: P = Q = 2 blocks of 2 x 2; two rails of P Q k generators
    assert (site.counts.macs, site.counts.reference_macs, site.counts.weight_loads) == (10 * 16, 120, 2 * 2 * 2 * 2)
    assert (site.counts.dac_conversions, site.counts.adc_conversions) == (40, 30)
    assert (site.counts.dac_bits, site.counts.adc_bits) == (6, None)


@pytest.mark.parametrize("attn_impl", ["sdpa", "eager"])
def test_attention_matmuls_convert_both_operands(tiny, attn_impl):
    _, gm = tiny.capture("bert", attn_impl)  # not calibrated: the count needs no ranges
    state = {k: v.clone() for k, v in gm.state_dict().items()}
    report = optopass.energy(gm, batch=2, seq_len=8, hardware=COMPLETE)
    torch.testing.assert_close(gm.state_dict(), state, rtol=0, atol=0, equal_nan=True)  # counters, ranges untouched
    assert not gm.training
    sites = {s.counts.site: s.counts for s in report.sites}
    qk, pv = sites["bert.encoder.layer.0.attention.self.qk"], sites["bert.encoder.layer.0.attention.self.pv"]
    batch, heads, seq, head_dim = 2, 4, 8, 8
    scores = batch * heads * seq * seq
    assert (qk.macs, qk.dac_conversions, qk.adc_conversions, qk.weight_loads) == (scores * head_dim, 2 * scores, scores, 0)
    assert (pv.macs, pv.dac_conversions, pv.adc_conversions) == (scores * head_dim, 2 * scores, batch * seq * 32)
    query = sites["bert.encoder.layer.0.attention.self.query"]
    assert (query.macs, query.dac_conversions, query.weight_loads) == (batch * seq * 32 * 32, batch * seq * 32, 32 * 32)
    assert len(sites) == 2 * 8 + 1  # per layer 6 linears and 2 attention matmuls, and the pooler
    by_class = report.digital_by_class()
    assert by_class["softmax"]["ops"] == 2 * scores  # two layers
    assert by_class["layer_norm"]["ops"] == 5 * 5 * batch * seq * 32  # DeepSpeed's 5 per element, 5 LayerNorms
    assert by_class["linear"]["macs"] == batch * 32 * 3  # the classification head
    # in model order; "other": ops of the base model itself (eager attention's mask)
    assert [g for g in report.by_group() if g != "other"] == ["embeddings", "layer 0", "layer 1", "pooler", "classifier"]
    assert report.uncounted_ops == {}


BAD_HARDWARE = [
    ({"adc_energy_pj": -1.0}, r"hardware\.adc_energy_pj: must be a number >= 0 \(pJ\), got -1"),
    ({"dac_energy_pj": -0.5}, r"hardware\.dac_energy_pj: must be a number >= 0"),
    ({"laser_wall_plug_efficiency": 0}, r"hardware\.laser_wall_plug_efficiency: must be a number in \(0, 1\]"),
    ({"optical_link_efficiency": 1.2}, r"hardware\.optical_link_efficiency: must be a number in \(0, 1\]"),
    ({"photons_per_mac": 0}, r"hardware\.photons_per_mac: must be a number > 0"),
    ({"photons_per_mac": -3}, r"hardware\.photons_per_mac: must be a number > 0"),
    ({"wavelength_nm": "1550"}, r"hardware\.wavelength_nm: must be a number > 0 \(nm\), got '1550'"),
    ({"adc_energy_pj_typo": 1}, r"hardware\.adc_energy_pj_typo: unknown parameter; allowed: wavelength_nm"),
]


@pytest.mark.parametrize("values, message", BAD_HARDWARE, ids=[next(iter(v)) for v, _ in BAD_HARDWARE])
def test_bad_hardware_values_name_the_key(values, message):
    with pytest.raises(ConfigError, match=message):
        optopass.load_config({"fc": {}, "hardware": values})
    with pytest.raises(ConfigError, match=message):
        load_hardware(values)


def test_hardware_section_round_trips_and_pickles():
    import pickle

    cfg = optopass.load_config({"fc": {}, "hardware": COMPLETE})
    assert cfg.hardware == HardwareParams(**COMPLETE)
    assert optopass.load_config(cfg.to_dict()) == cfg
    assert pickle.loads(pickle.dumps(cfg)) == cfg
    assert optopass.load_config({"fc": {}}).hardware is None


def test_a_hardware_file_error_gives_file_key_and_line(tmp_path):
    path = tmp_path / "hw.yaml"
    path.write_text("dac_energy_pj: 1.0\nadc_energy_pj: -2\n")
    with pytest.raises(ConfigError, match=r"hw\.yaml: hardware\.adc_energy_pj \(line 2\): must be a number >= 0"):
        load_hardware(path)
    path.write_text("hardware:\n  dac_energy_pj: 1.0\n")  # the section under its own key
    assert load_hardware(path).dac_energy_pj == 1.0


def test_keys_without_a_published_default_must_be_set(one_linear):
    gm, x = one_linear
    with pytest.raises(ConfigError, match=r"hardware: laser_wall_plug_efficiency, optical_link_efficiency, "
                                          r"dac_energy_pj not set \(no published default"):
        optopass.energy(gm, batch=2, seq_len=5, inputs=(x,))


# ------------------------------------------------------------------------------------------------
# optopass energy


def _write(tmp_path, text: str):
    path = tmp_path / "hw.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("text, message", [
    ("hardware:\n  laser_wall_plug_efficiency: 0\n", "hardware.laser_wall_plug_efficiency (line 2): must be a number in (0, 1]"),
    ("adc_energy_pj: -1\n", "hardware.adc_energy_pj (line 1): must be a number >= 0"),
    ("adc_energy_pj: 1\n", "laser_wall_plug_efficiency, optical_link_efficiency, dac_energy_pj not set"),
])
def test_cli_bad_hardware_exits_2_and_writes_nothing(tmp_path, capsys, text, message):
    plot = tmp_path / "energy.png"
    status = main(["energy", "--hardware", _write(tmp_path, text), "--plot", str(plot), "--no-progress"])
    err = capsys.readouterr().err
    assert status == EXIT_USER_ERROR
    assert message in err and err.startswith("optopass energy: error: ") and err.count("\n") == 1
    assert not plot.exists() and [p.name for p in tmp_path.iterdir()] == ["hw.yaml"]


def test_cli_json_parses_and_the_plot_is_a_png(tmp_path, capsys, tiny_bert_dir):
    hardware = _write(tmp_path, "".join(f"{k}: {v}\n" for k, v in COMPLETE.items()))
    plot = tmp_path / "energy.png"
    status = main(["energy", "--model", str(tiny_bert_dir), "--hardware", hardware, "--batch-size", "2",
                   "--seq-len", "16", "--json", "--plot", str(plot), "--no-progress"])
    assert status == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["batch"], result["seq_len"], result["tokens"]) == (2, 16, 32)
    assert set(result["totals"]["per_inference_j"]) == set(CATEGORIES)
    assert result["digital_reference"]["energy_per_mac_fj"] == 300.0 and result["digital_reference"]["advantage"] > 0
    assert {s["photons_from"] for s in result["sites"]} == {"hardware default"}
    assert result["plot"] == str(plot)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["energy.png", "hw.yaml"]  # no temporary file left


def test_cli_table(tmp_path, capsys, tiny_bert_dir):
    hardware = _write(tmp_path, "".join(f"{k}: {v}\n" for k, v in COMPLETE.items()))
    assert main(["energy", "--model", str(tiny_bert_dir), "--hardware", hardware, "--batch-size", "2",
                 "--seq-len", "16", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "bert.encoder.layer.0.attention.self.qk" in out and "per inference" in out and "per token" in out
    assert "digital reference:" in out and "digital / optical:" in out
    assert "* photons per MAC from the hardware section (3.1)" in out
