"""Save and load transformed models: identical outputs after a round trip, nothing written half."""

from __future__ import annotations

import json

import pytest
import torch

import optopass
import optopass.tools.io as optopass_io
from optopass.passes.optical.sites import optical_sites
from optopass.tools.errors import ModelLoadError, OutputError


def _transformed(make_model, make_inputs, dither: bool):
    model = make_model("roberta", "sdpa", seed=1)
    gm = optopass.apply_optical_pass(model, {"fc": {"q_dither": dither, "q_init_seed": 7}, "attn": {"q_dither": dither}})
    optopass.calibrate(gm, [make_inputs(2, 12, seed=s) for s in range(2)])
    return gm


@pytest.fixture(scope="module", params=[False, True], ids=["dither_off", "dither_on"])
def transformed(request, make_model, make_inputs):
    return request.param, _transformed(make_model, make_inputs, request.param)


def test_round_trip_gives_identical_outputs_call_for_call(transformed, make_inputs, tmp_path):
    dither, gm = transformed
    out_dir = optopass.save(gm, tmp_path / "saved")
    assert sorted(p.name for p in out_dir.iterdir()) == ["base", "optical_config.yaml", "optical_state.safetensors", "optopass.json"]
    loaded = optopass.load(out_dir)
    assert not loaded.training
    assert loaded.optical_config.to_dict() == gm.optical_config.to_dict()
    original_sites, loaded_sites = dict(optical_sites(gm)), dict(optical_sites(loaded))
    assert original_sites.keys() == loaded_sites.keys()
    for name, site in original_sites.items():
        assert loaded_sites[name].stats_mode == site.stats_mode == "frozen"
        assert torch.equal(loaded_sites[name].counter, site.counter)
    if dither:
        assert all(int(s.counter) > 0 for s in original_sites.values())  # calibration drew noise
    inputs = [make_inputs(3, 10, seed=20), make_inputs(1, 4, seed=21), make_inputs(3, 10, seed=20)]
    # every optical site's output is bitwise the same; the plain CPU ops of two model instances
    # (the head's linears) may differ in the last bit (2e-9 on logits of 0.02), a draw out of step
    # by 1e-6 to 1e-5 on these tiny random models
    atol = 1e-8
    with torch.no_grad():
        for batch in inputs:
            torch.testing.assert_close(loaded(**batch).logits, gm(**batch).logits, rtol=0, atol=atol)
    if dither:  # the stream moved on: the same batch again gives another draw, on both alike
        with torch.no_grad():
            assert (gm(**inputs[0]).logits - gm(**inputs[0]).logits).abs().max() > 100 * atol


def test_saved_metadata(transformed, tmp_path):
    _, gm = transformed
    out_dir = optopass.save(gm, tmp_path / "m")
    meta = json.loads((out_dir / "optopass.json").read_text())
    assert meta["format"] == optopass_io.FORMAT_VERSION
    assert meta["model_class"] == "RobertaForSequenceClassification"
    assert set(meta["stats_modes"].values()) == {"frozen"}
    assert optopass.load_config(out_dir / "optical_config.yaml").to_dict() == gm.optical_config.to_dict()


def test_save_replaces_an_existing_directory(transformed, tmp_path):
    _, gm = transformed
    target = tmp_path / "out"
    target.mkdir()
    (target / "stale.txt").write_text("old")
    optopass.save(gm, target)
    assert not (target / "stale.txt").exists()
    assert (target / "optopass.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


@pytest.mark.parametrize("existing", [False, True], ids=["new", "existing"])
def test_a_failure_midway_leaves_no_partial_output(transformed, tmp_path, monkeypatch, existing):
    _, gm = transformed
    target = tmp_path / "out"
    if existing:
        target.mkdir()
        (target / "keep.txt").write_text("previous save")

    def broken_save_file(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(optopass_io, "save_file", broken_save_file)
    with pytest.raises(OSError, match="disk full"):
        optopass.save(gm, target)
    if existing:
        assert [p.name for p in target.iterdir()] == ["keep.txt"]
        assert (target / "keep.txt").read_text() == "previous save"
    else:
        assert not target.exists()
    assert [p.name for p in tmp_path.iterdir()] == (["out"] if existing else [])  # no temporary folder left


def test_save_of_a_compiled_module_saves_the_module_it_wraps(transformed, make_inputs, tmp_path):
    _, gm = transformed
    compiled = torch.compile(gm)  # lazy: nothing is compiled unless it is called
    out_dir = optopass.save(compiled, tmp_path / "saved")
    loaded = optopass.load(out_dir)
    assert (out_dir / "base" / "model.safetensors").is_file()
    assert loaded.state_dict().keys() == gm.state_dict().keys()
    for key, value in gm.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_a_save_that_would_leave_an_unreadable_folder_leaves_nothing(transformed, tmp_path, monkeypatch):
    _, gm = transformed
    model_class = type(gm.capture_info.hf_model)
    monkeypatch.setattr(model_class, "save_pretrained", lambda self, folder, **kwargs: self.config.save_pretrained(folder))
    with pytest.raises(OSError, match="incomplete output, base/model.safetensors not written"):
        optopass.save(gm, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_save_refuses_a_module_without_the_model_weights(transformed, tmp_path, monkeypatch):
    _, gm = transformed
    monkeypatch.setattr(optopass_io, "_base_state", lambda gm, hf_model: {})
    with pytest.raises(ValueError, match="does not hold the model's weights"):
        optopass.save(gm, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("target", ["file", "file/below"])
def test_save_to_an_existing_file_is_one_line_and_writes_nothing(transformed, tmp_path, target):
    _, gm = transformed
    (tmp_path / "file").write_text("mine")
    with pytest.raises(OutputError, match="file is .*an existing file, not a folder") as info:
        optopass.save(gm, tmp_path / target)
    assert "\n" not in str(info.value)
    assert [p.name for p in tmp_path.iterdir()] == ["file"] and (tmp_path / "file").read_text() == "mine"


def test_load_refuses_a_folder_not_written_by_save(tmp_path):
    with pytest.raises(ModelLoadError, match="not a folder written by optopass.save"):
        optopass.load(tmp_path)
    (tmp_path / "optopass.json").write_text(json.dumps({"format": 999}))
    with pytest.raises(ModelLoadError, match="unsupported optopass format 999"):
        optopass.load(tmp_path)


def test_save_refuses_a_non_hf_transform(tmp_path):
    module = torch.nn.Sequential(torch.nn.Linear(4, 4))
    gm = optopass.apply_optical_pass(module, {"fc": {}}, example_inputs=(torch.randn(2, 4),))
    with pytest.raises(ValueError, match="only transforms of Hugging Face models"):
        optopass.save(gm, tmp_path / "x")
    assert list(tmp_path.iterdir()) == []
