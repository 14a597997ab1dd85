"""SqueezeLight as a registry entry: coverage on tiny RoBERTa/BERT, config validation."""

from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, RobertaConfig, RobertaForSequenceClassification

import optopass
from optopass.tools.errors import ConfigError

CFG = Path(__file__).resolve().parents[3] / "examples" / "squeezelight_cfg.yaml"
SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, vocab_size=100)


def _models():
    torch.manual_seed(0)
    yield "roberta", RobertaForSequenceClassification(RobertaConfig(**SMALL, max_position_embeddings=40)).eval()
    yield "bert", BertForSequenceClassification(BertConfig(**SMALL)).eval()


@pytest.mark.parametrize("name,model", list(_models()))
def test_every_targeted_linear_is_squeezelight(name, model):
    gm = optopass.apply_optical_pass(model, optopass.load_config(CFG))
    linears = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and not n.startswith("classifier")]
    rows = optopass.report(gm)
    assert sorted(r["origin"] for r in rows) == sorted(linears)
    assert {r["technology"] for r in rows} == {"squeezelight"}
    assert not [n for n in gm.graph.nodes if n.target == torch.ops.aten.linear.default and "classifier" not in str(n.meta.get("nn_module_stack"))]
    ids = torch.randint(3, 100, (2, 8))
    optopass.calibrate(gm, [{"input_ids": ids, "attention_mask": torch.ones_like(ids)}])
    out = gm(input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.tensor([0, 1]))
    assert torch.isfinite(out.logits).all()
    gm.train()
    out = gm(input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.tensor([0, 1]))
    out.loss.backward()
    weight = gm.get_parameter(f"{linears[0]}.weight")
    assert weight.grad is not None and weight.grad.abs().sum() > 0


def test_attention_is_declined_not_broken():
    model = dict(_models())["bert"]
    gm = optopass.apply_optical_pass(model, {"attn": {"technology": "squeezelight"}})
    attn = [r for r in gm.optical_record.sites if r.kind == "attn"]
    assert len(attn) == 2 and {r.status for r in attn} == {"declined"}
    assert {r.status for r in gm.optical_record.sites if r.kind == "fc"} == {"unconfigured"}
    ids = torch.randint(3, 100, (2, 8))
    assert torch.equal(gm(input_ids=ids).logits, model(input_ids=ids).logits)


@pytest.mark.parametrize(
    "values,key",
    [
        ({"miniblock": 1}, "fc.miniblock"),
        ({"miniblock": "4"}, "fc.miniblock"),
        ({"w_bits": 0}, "fc.w_bits"),
        ({"in_bits": 17}, "fc.in_bits"),
        ({"q_levels": 256}, "fc.q_levels"),
        ({"morr_a": 1.5}, "fc.morr_a"),
    ],
)
def test_bad_squeezelight_values(values, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        optopass.load_config({"fc": {"technology": "squeezelight", **values}})


def test_unknown_technology():
    with pytest.raises(ConfigError, match=r"fc\.technology.*allowed: optical_transformer, squeezelight"):
        optopass.load_config({"fc": {"technology": "lightning"}})
