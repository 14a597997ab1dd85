"""The fused attention kernel inside a transformed model: chosen where it applies, the same
numbers as the composed ops, the dither counters advancing, and opaque to torch.compile.

On a CPU the kernel runs in Triton's interpreter (conftest sets TRITON_INTERPRET=1 there); on a
machine with CUDA the models run there, where the kernel is compiled."""

import pytest
import torch

import optopass
from optopass.passes.optical.optical_transformer import OTAttention
from optopass.passes.optical.sites import optical_sites
from tests.conftest import hf_inputs, tiny_hf_model

NO_DITHER = {k: {"q_dither": False} for k in ("fc", "attn")}
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _inputs(seed=0):
    return {k: v.to(DEVICE) for k, v in hf_inputs(3, 12, seed=seed).items()}  # last row padded: a real mask


def _optical(cfg):
    model = tiny_hf_model("roberta", "sdpa")
    gm = optopass.apply_optical_pass(model, cfg).to(DEVICE)
    inputs = _inputs()
    optopass.calibrate(gm, [inputs, _inputs(seed=1)])
    return gm.eval(), inputs


def _attentions(gm):
    found = [m for m in gm.modules() if isinstance(m, OTAttention)]
    assert found
    return found


def _set_kernel(gm, kernel):
    for attn in _attentions(gm):
        attn.kernel = kernel


def test_fused_model_matches_the_composed_ops_without_dither():
    gm, inputs = _optical(NO_DITHER)
    with torch.no_grad():
        _set_kernel(gm, "unfused")
        want = gm(**inputs).logits
        _set_kernel(gm, "fused")
        got = gm(**inputs).logits
    # the same op; float32 sums in another order may move a stray element by one level
    torch.testing.assert_close(got, want, rtol=2e-3, atol=2e-3)


def test_fused_calls_are_counted_and_draw_a_fresh_dither():
    gm, inputs = _optical(None)
    _set_kernel(gm, "fused")
    before = {name: int(site.counter) for name, site in optical_sites(gm)}
    with torch.no_grad():
        a = gm(**inputs).logits
        b = gm(**inputs).logits
    after = {name: int(site.counter) for name, site in optical_sites(gm)}
    assert all(after[name] == before[name] + 2 for name in before)
    assert not torch.equal(a, b)


def test_fused_kernel_is_not_used_where_it_does_not_apply():
    gm, inputs = _optical(NO_DITHER)
    attn = _attentions(gm)[0]
    q = torch.randn(2, 4, 6, 8)
    assert not attn._fusable(q, q, q, None, 0.0, False)  # auto on a CPU
    if DEVICE == "cuda":
        assert attn._fusable(q.cuda(), q.cuda(), q.cuda(), None, 0.0, False)  # auto on a GPU
    attn.kernel = "fused"
    assert attn._fusable(q, q, q, None, 0.0, False)
    assert not attn._fusable(q, q, q, None, 0.0, True)  # causal
    grad_q = q.clone().requires_grad_()
    assert not attn._fusable(grad_q, q, q, None, 0.0, False)  # gradients: composed ops (STE)
    with pytest.raises(ValueError, match="kernel must be one of auto, fused, unfused"):
        attn.kernel = "triton"
    attn.qk.set_stats_mode("observe")
    assert not attn._fusable(q, q, q, None, 0.0, False)  # calibration observes the scores
    attn.qk.set_stats_mode("frozen")
    attn.train()
    assert not attn._fusable(q, q, q, None, 0.1, False)  # attention dropout


def test_fused_op_compiles_without_graph_breaks_and_matches_eager():
    torch._dynamo.reset()
    gm, inputs = _optical(NO_DITHER)
    _set_kernel(gm, "fused")
    try:
        explained = torch._dynamo.explain(gm)(**inputs)
        assert explained.graph_count == 1 and explained.graph_break_count == 0
        with torch.no_grad():
            eager = gm(**inputs).logits
            compiled = torch.compile(gm)(**inputs).logits
    finally:
        torch._dynamo.reset()
    torch.testing.assert_close(compiled, eager, rtol=2e-3, atol=2e-3)


def test_fake_kernel_gives_the_output_shape_for_any_batch_shape():
    from torch._subclasses.fake_tensor import FakeTensorMode

    from optopass.passes.optical.kernels import ops

    with FakeTensorMode():
        q, k, v = torch.empty(5, 3, 7, 16), torch.empty(5, 3, 9, 16), torch.empty(5, 3, 9, 24)
        out = ops.ot_attention(q, k, v, None, 0.25, torch.empty(3, 2), *torch.zeros(4, dtype=torch.int64), 256, True)
    assert out.shape == (5, 3, 7, 24)
