"""The transformed model under ``torch.compile`` (Inductor, CPU here): one graph, the eager
numerics, the per-call dither, and straight-through training."""

import pytest
import torch
import torch._inductor.config as inductor_config

import optopass
from optopass.passes.optical.sites import optical_sites
from tests.conftest import hf_inputs, tiny_hf_model

NO_DITHER = {k: {"q_dither": False} for k in ("fc", "attn")}


def _optical(cfg, arch="roberta", impl="sdpa"):
    model = tiny_hf_model(arch, impl)
    gm = optopass.apply_optical_pass(model, cfg)
    inputs = hf_inputs(3, 12)
    optopass.calibrate(gm, [inputs, hf_inputs(3, 12, seed=1)])
    return gm.eval(), inputs


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_one_graph_without_breaks():
    gm, inputs = _optical(NO_DITHER)
    explained = torch._dynamo.explain(gm)(**inputs)
    assert explained.graph_count == 1 and explained.graph_break_count == 0


def test_compiled_calls_replay_no_attribute_writes_and_compile_once(monkeypatch):
    """A site assigns no Python attribute on a calibrated eval call, nor on a training call
    (observing): torch.compile would replay such an assignment on every call, which cost about
    as much host time per call as the rest of dynamo's work (docs/speed.md).
    Nor does a compiled call read what an eager call cached: an eager call before compiling
    then costs no second compile."""
    import torch._dynamo.testing
    import torch._dynamo.utils as dynamo_utils

    gm, inputs = _optical(None)
    writes = []
    real = dynamo_utils.object_setattr_ignore_descriptor
    monkeypatch.setattr(dynamo_utils, "object_setattr_ignore_descriptor",
                        lambda obj, name, value: (isinstance(obj, torch.nn.Module) and writes.append((type(obj).__name__, name)),
                                                  real(obj, name, value)))
    for train in (False, True):
        gm.train(train)
        with torch.set_grad_enabled(train):
            gm(**inputs)  # eager first: fills the eval weight cache
            torch._dynamo.reset()
            counter = torch._dynamo.testing.CompileCounter()
            compiled = torch.compile(gm, backend=counter)
            compiled(**inputs)
            writes.clear()
            compiled(**inputs)
            compiled(**inputs)
        assert writes == [], f"train={train}: {sorted(set(writes))[:5]}"
        assert counter.frame_count == 1, f"train={train}: {counter.frame_count} compiles"


def test_compiled_eval_matches_eager_without_dither():
    """With Inductor's freezing, as ``optopass bench`` compiles eval graphs."""
    gm, inputs = _optical(NO_DITHER, impl="eager")
    with torch.no_grad():
        eager = gm(**inputs).logits
        with inductor_config.patch(freezing=True):
            compiled = torch.compile(gm)(**inputs).logits
    # the same grid decisions; Inductor may reorder float arithmetic, so allow a stray level
    torch.testing.assert_close(compiled, eager, rtol=1e-3, atol=1e-3)


def test_compiled_dither_is_per_call_and_advances_every_counter():
    gm, inputs = _optical(None)
    sites = dict(optical_sites(gm))
    before = {name: int(site.counter) for name, site in sites.items()}
    compiled = torch.compile(gm)
    with torch.no_grad():
        eager = gm(**inputs).logits
        for name, site in sites.items():
            site.counter.fill_(before[name])
        with inductor_config.patch(freezing=True):
            a = compiled(**inputs).logits
            b = compiled(**inputs).logits
    assert not torch.equal(a, b)  # a fresh dither draw on each call
    after = {name: int(site.counter) for name, site in sites.items()}
    assert all(after[name] == before[name] + 2 for name in before)
    # one hash stream, eager or compiled: from the same counters, the same draw
    assert (a - eager).abs().max() < 0.1 * (b - a).abs().max()
    no_dither, _ = _optical(NO_DITHER)
    with torch.no_grad():
        clean = no_dither(**inputs).logits
    # dither is zero-mean noise of under a level per element: the logits stay close to the clean ones
    assert (a - clean).abs().max() < 0.1 * clean.abs().max() + 0.05


def test_compiled_training_step_matches_eager_gradients():
    from transformers import RobertaConfig, RobertaForSequenceClassification

    config = RobertaConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=64, max_position_embeddings=40, hidden_dropout_prob=0.0,
                           attention_probs_dropout_prob=0.0, attn_implementation="sdpa")
    torch.manual_seed(0)
    gm = optopass.apply_optical_pass(RobertaForSequenceClassification(config), NO_DITHER)
    inputs = {"input_ids": torch.randint(3, 64, (3, 12))}
    optopass.calibrate(gm, [inputs])  # ranges frozen: both runs see the same forward
    gm.train()
    labels = torch.tensor([0, 1, 0])

    def grads(model):
        for p in gm.parameters():
            p.grad = None
        model(**inputs, labels=labels).loss.backward()
        return {n: p.grad.clone() for n, p in gm.named_parameters() if p.grad is not None}

    eager = grads(gm)
    compiled = grads(torch.compile(gm))
    assert eager.keys() == compiled.keys() and len(eager) > 10
    for name in eager:
        torch.testing.assert_close(compiled[name], eager[name], rtol=2e-3, atol=2e-4, msg=name)


def test_compiled_training_with_the_recomputed_attention_core_matches_keeping_it():
    """A compiled training step with dither, the attention core recomputed in the backward
    (OTAttention.recompute, the default) against the same model keeping the core's
    intermediates: the same loss and gradients (the recomputation draws this forward's dither)."""
    import copy

    from optopass.passes.optical.optical_transformer import OTAttention

    gm, inputs = _optical(None)
    labels = torch.tensor([0, 1, 0])
    keep = copy.deepcopy(gm)
    attentions = [m for m in keep.modules() if isinstance(m, OTAttention)]
    assert attentions and all(m.recompute for m in attentions)
    for m in attentions:
        m.recompute = False

    def step(model):
        model.train()
        torch.manual_seed(0)  # the dropout masks
        out = torch.compile(model)(**inputs, labels=labels)
        out.loss.backward()
        return out.loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}

    loss_r, grads_r = step(gm)
    loss_k, grads_k = step(keep)
    torch.testing.assert_close(loss_r, loss_k)
    assert grads_r.keys() == grads_k.keys() and len(grads_r) > 10
    for name in grads_r:
        torch.testing.assert_close(grads_r[name], grads_k[name], rtol=1e-4, atol=1e-5, msg=name)
