"""Capture: HF encoders -> OpticalGraphModule (torch.export, dynamic batch/seq, train/eval aware)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

import optopass
from optopass.passes.optical.rewrite import SITES_PREFIX
from optopass.tools.errors import CaptureError

SHAPES = [(1, 5), (3, 12), (2, 16), (4, 1), (2, 40)]  # capture saw (2, 16)


def _outputs_equal(a, b) -> bool:
    return torch.equal(a.logits, b.logits)


@pytest.mark.parametrize("config", ["default", "bypass"])
def test_captured_graph_runs_on_dynamic_shapes(tiny, arch_impl, make_inputs, config):
    model, gm = tiny.capture(*arch_impl, config)
    if config == "default":
        optopass.calibrate(gm, [make_inputs(2, 16, seed=100)])
    for batch, seq in SHAPES:
        inputs = make_inputs(batch, seq, seed=batch * 31 + seq)
        with torch.no_grad():
            logits = gm(**inputs).logits
        assert logits.shape == (batch, model.config.num_labels)
        assert torch.isfinite(logits).all()


def test_bypass_is_bit_identical_to_the_model_in_eval(tiny, arch_impl, make_inputs):
    model, gm = tiny.capture(*arch_impl, "bypass")
    assert not gm.training
    for batch, seq in SHAPES:
        for pad in (True, False):
            inputs = make_inputs(batch, seq, seed=7 * batch + seq, pad=pad)
            with torch.no_grad():
                want, got = model(**inputs), gm(**inputs)
            assert torch.equal(got.logits, want.logits), (batch, seq, pad)
    # attention_mask and token_type_ids may be omitted, like the HF model's
    ids = make_inputs(2, 9, seed=3)["input_ids"]
    with torch.no_grad():
        assert torch.equal(gm(input_ids=ids).logits, model(input_ids=ids).logits)
        assert torch.equal(gm(ids).logits, model(ids).logits)


def test_output_type_and_loss_match_the_hf_model(tiny, arch_impl, make_inputs):
    model, gm = tiny.capture(*arch_impl, "bypass")
    inputs = make_inputs(3, 12, seed=5)
    labels = torch.tensor([0, 2, 1])
    with torch.no_grad():
        want = model(**inputs, labels=labels)
        got = gm(**inputs, labels=labels)
        plain = gm(**inputs)
    assert type(want) is SequenceClassifierOutput
    assert type(got) is type(want) and type(plain) is type(want)
    assert plain.loss is None
    assert got.loss is not None and got.loss.dim() == 0
    assert torch.equal(got.loss, want.loss)
    # the loss is the HF rule recomputed independently in float64 on the same logits
    ref = torch.nn.functional.cross_entropy(want.logits.double(), labels)
    torch.testing.assert_close(got.loss.double(), ref, rtol=1e-6, atol=1e-7)


def test_regression_loss_matches_the_hf_model(make_model, make_inputs):
    model = make_model("roberta", "sdpa", num_labels=1)
    gm = optopass.apply_optical_pass(model, {"fc": {"q_bypass": True}, "attn": {"q_bypass": True}})
    inputs = make_inputs(3, 7, seed=2)
    labels = torch.tensor([0.5, -1.0, 2.0])
    with torch.no_grad():
        want = model(**inputs, labels=labels)
        got = gm(**inputs, labels=labels)
    assert type(got) is type(want)
    torch.testing.assert_close(got.loss, want.loss, rtol=0, atol=0)
    ref = ((want.logits.double().squeeze(-1) - labels.double()) ** 2).mean()
    torch.testing.assert_close(got.loss.double(), ref, rtol=1e-6, atol=1e-7)


def test_nodes_keep_their_module_path(tiny, arch_impl):
    model, gm = tiny.capture(*arch_impl, "default")
    module_paths = {name for name, _ in model.named_modules()}
    computing = [n for n in gm.graph.nodes if n.op == "call_function" or (n.op == "call_module" and n.target != "_guards_fn")]
    assert computing
    missing = [n.name for n in computing if not n.meta.get("nn_module_stack")]
    assert not missing, f"nodes without nn_module_stack: {missing[:5]}"
    records = {r.module: r for r in gm.optical_record.sites if r.status == "optical"}
    sites = [n for n in gm.graph.nodes if n.op == "call_module" and str(n.target).startswith(f"{SITES_PREFIX}.")]
    assert len(sites) == len(records) > 0
    for node in sites:
        innermost_path = list(node.meta["nn_module_stack"].values())[-1][0]
        assert innermost_path == records[node.target].origin
        assert innermost_path in module_paths


def test_dropout_follows_train_and_eval(tiny, arch_impl, make_inputs):
    model, gm = tiny.capture(*arch_impl, "bypass")
    inputs = make_inputs(2, 10, seed=11)
    with torch.no_grad():
        gm.train()
        first, second = gm(**inputs).logits, gm(**inputs).logits
        assert not torch.equal(first, second)
        gm.eval()
        third, fourth = gm(**inputs).logits, gm(**inputs).logits
    assert torch.equal(third, fourth)
    assert torch.equal(third, model(**inputs).logits.detach())


def test_eval_forward_leaves_the_global_rng_alone(tiny, make_inputs):
    _, gm = tiny.capture("roberta", "sdpa", "bypass")
    state = torch.get_rng_state()
    with torch.no_grad():
        gm(**make_inputs(2, 6))
    assert torch.equal(torch.get_rng_state(), state)


class DataDependentBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        if x.sum() > 0:
            return self.fc(x)
        return x


def test_a_model_that_does_not_export_raises_capture_error_naming_it():
    with pytest.raises(CaptureError, match="DataDependentBranch"):
        optopass.apply_optical_pass(DataDependentBranch(), example_inputs=(torch.randn(2, 4),))


def test_a_plain_module_needs_example_inputs():
    with pytest.raises(CaptureError, match="TwoLinear.*example_inputs"):
        optopass.apply_optical_pass(TwoLinear())


class TwoLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(8, 16)
        self.fc2 = nn.Linear(16, 4)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def test_a_plain_two_linear_module_is_captured_and_both_linears_rewritten(graph_checker):
    torch.manual_seed(0)
    module = TwoLinear()
    gm = optopass.apply_optical_pass(module, {"fc": {"q_bypass": False}}, example_inputs=(torch.randn(4, 8),))
    graph_checker(gm)
    rewritten = {r.site: r.status for r in gm.optical_record.sites}
    assert rewritten == {"fc1": "optical", "fc2": "optical"}
    assert not any(n.target == torch.ops.aten.linear.default for n in gm.graph.nodes)
    gm.train()
    for batch in (1, 4, 9):  # the batch dimension stays dynamic
        assert gm(torch.randn(batch, 8)).shape == (batch, 4)
    assert gm(x=torch.randn(3, 8)).shape == (3, 4)


def test_a_deep_copy_is_an_independent_working_model(tiny, make_inputs):
    model, gm = tiny.capture("roberta", "eager", "bypass")
    copied = copy.deepcopy(gm)
    inputs = make_inputs(2, 7)
    labels = torch.tensor([1, 0])
    with torch.no_grad():
        want = gm(**inputs, labels=labels)
        got = copied(**inputs, labels=labels)
        assert type(got) is type(want)
        assert torch.equal(got.logits, want.logits) and torch.equal(got.loss, want.loss)
        assert copied.optical_record.sites == gm.optical_record.sites
        assert copied.optical_config.to_dict() == gm.optical_config.to_dict()
        copied.get_parameter("classifier.out_proj.bias").add_(1.0)
        assert torch.equal(gm(**inputs).logits, want.logits)  # the original is untouched
        assert torch.equal(model(**inputs).logits, want.logits)
        torch.testing.assert_close(copied(**inputs).logits, want.logits + 1.0)


def test_pickling_the_whole_module_names_the_supported_way(tiny):
    """GraphModule pickling re-traces the generated code, losing this class and its metadata:
    torch.save of the whole module says what to use instead."""
    import io
    import pickle

    _, gm = tiny.capture("roberta", "eager", "default")
    for dump in (lambda: pickle.dumps(gm), lambda: torch.save(gm, io.BytesIO())):
        with pytest.raises(TypeError, match=r"does not pickle .*optopass\.save\(gm, directory\).*state_dict"):
            dump()
    state = io.BytesIO()
    torch.save(gm.state_dict(), state)  # the state dict does
    assert state.tell() > 0


# Vision and speech encoders: example inputs from the config, eval bit-identical under bypass.
BYPASS = {"fc": {"q_bypass": True}, "attn": {"q_bypass": True}}


def _tiny_vit() -> nn.Module:
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(image_size=16, patch_size=8, num_channels=3, hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=4, intermediate_size=64, num_labels=3)
    torch.manual_seed(0)
    return ViTForImageClassification(config).eval()


def _tiny_wav2vec2() -> nn.Module:
    """A 2-layer Wav2Vec2 audio classifier with its training-time SpecAugment and LayerDrop on
    (the config's defaults), the randomness that torch.export cannot record."""
    from transformers import Wav2Vec2Config, Wav2Vec2ForSequenceClassification

    config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                            conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 4), num_conv_pos_embeddings=16,
                            num_conv_pos_embedding_groups=4, classifier_proj_size=16, num_labels=3)
    assert config.apply_spec_augment and config.mask_time_prob > 0 and config.layerdrop > 0
    torch.manual_seed(0)
    return Wav2Vec2ForSequenceClassification(config).eval()


def test_a_vit_classifier_captures_from_its_config(graph_checker):
    model = _tiny_vit()
    gm = optopass.apply_optical_pass(model, BYPASS)
    graph_checker(gm)
    assert gm.capture_info.input_names == ("pixel_values",)
    for batch in (1, 3):
        pixels = torch.randn(batch, 3, 16, 16)
        with torch.no_grad():
            assert torch.equal(gm(pixel_values=pixels).logits, model(pixel_values=pixels).logits)


def test_a_wav2vec2_classifier_captures_without_its_host_drawn_training_randomness(graph_checker):
    model = _tiny_wav2vec2()
    with pytest.warns(UserWarning, match=r"without SpecAugment \(apply_spec_augment=True\) and LayerDrop "
                                         r"\(layerdrop=0\.1\).*trains without it"):
        gm = optopass.apply_optical_pass(model, BYPASS)
    graph_checker(gm)
    assert gm.capture_info.input_names == ("input_values",)
    assert gm.capture_info.training_randomness_off == {"apply_spec_augment": True, "layerdrop": 0.1}
    assert model.config.apply_spec_augment and model.config.layerdrop == 0.1  # put back
    statuses = {r.site: r.status for r in gm.optical_record.sites}
    assert {site for site, status in statuses.items() if status != "bypassed"} <= {"projector", "classifier"}
    assert statuses["wav2vec2.encoder.layers.1.feed_forward.output_dense"] == "bypassed"
    for batch, samples in ((1, 45), (2, 400), (3, 1600)):  # batch and length stay dynamic
        audio = torch.randn(batch, samples, generator=torch.Generator().manual_seed(samples))
        with torch.no_grad():
            assert torch.equal(gm(input_values=audio).logits, model(input_values=audio).logits)
    gm.train()
    out = gm(input_values=torch.randn(2, 400), labels=torch.tensor([0, 2]))
    out.loss.backward()
    assert model.classifier.weight.grad is not None and torch.isfinite(out.loss)
