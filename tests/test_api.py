"""The public API: what ``import optopass`` offers and the promises its docstrings make."""

from __future__ import annotations

import inspect

import pytest
import torch

import optopass

PUBLIC = ["apply_optical_pass", "calibrate", "energy", "load", "load_config", "report", "save"]


def test_public_api_is_exactly_the_documented_functions():
    assert sorted(optopass.__all__) == PUBLIC
    for name in PUBLIC:
        fn = getattr(optopass, name)
        assert callable(fn)
        doc = inspect.getdoc(fn)
        assert doc, name
        if name != "load":  # load's one argument is described in its text
            assert "Args:" in doc, name


@pytest.mark.parametrize("training", [False, True])
def test_apply_does_not_modify_the_model_and_keeps_its_mode(make_model, training):
    model = make_model("bert", "sdpa")
    model.train(training)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    modules = [n for n, _ in model.named_modules()]
    rng = torch.get_rng_state()
    gm = optopass.apply_optical_pass(model, {"fc": {"q_bypass": True}, "attn": {"q_bypass": True}})
    assert torch.equal(torch.get_rng_state(), rng)  # the example inputs draw from their own generator
    assert gm.training is training and model.training is training
    assert [n for n, _ in model.named_modules()] == modules
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert gm.capture_info.model_class == "BertForSequenceClassification"
    assert gm.capture_info.input_names == ("input_ids", "attention_mask", "token_type_ids")


def test_end_to_end_and_a_dtype_move(tiny, make_inputs):
    model, gm = tiny.capture("bert", "eager", "bypass")
    batch = make_inputs(2, 9)
    try:
        gm.to(torch.float64)
        with torch.no_grad():
            out = gm(**batch).logits
            want = model(**batch).logits
        assert out.dtype == torch.float64
        torch.testing.assert_close(out, want.double(), rtol=1e-5, atol=1e-5)
    finally:
        gm.to(torch.float32)
    with torch.no_grad():
        assert torch.equal(gm(**batch).logits, model(**batch).logits)


def test_unexpected_inputs_are_refused(tiny, make_inputs):
    _, gm = tiny.capture("roberta", "sdpa", "bypass")
    batch = make_inputs(1, 4)
    with pytest.raises(TypeError, match="unexpected inputs"):
        gm(**batch, inputs_embeds=torch.zeros(1, 4, 32))
    with pytest.raises(TypeError, match="missing input 'input_ids'"):
        gm()
