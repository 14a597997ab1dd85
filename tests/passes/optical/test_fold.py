"""The output-quantization fold (passes/optical/fold.py): each optical attention quantizes its
output to the input range of the linear after it, which then takes it as it is; the numbers,
the calibrated ranges and the gradients are those of the unfolded model."""

import pytest
import torch

import optopass
from optopass.passes.optical.optical_transformer import OTAttention, OTLinear
from optopass.passes.optical.sites import optical_sites
from tests.conftest import hf_inputs, tiny_hf_model

NO_DITHER = {k: {"q_dither": False} for k in ("fc", "attn")}
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # the fused kernel runs where the model is


def _unfold(gm):
    for m in gm.modules():
        if isinstance(m, OTAttention) and m.out_site is not None:
            m.out_site.input_quantized = False
            object.__setattr__(m, "_out_site", None)
    return gm


def _pair(cfg, arch="roberta"):
    """(folded, unfolded) transforms of one model, calibrated alike."""
    inputs, more = ({k: v.to(DEVICE) for k, v in hf_inputs(3, 12, seed=s).items()} for s in (0, 1))
    models = []
    for fold in (True, False):
        gm = optopass.apply_optical_pass(tiny_hf_model(arch, "sdpa"), cfg).to(DEVICE)
        if not fold:
            _unfold(gm)
        optopass.calibrate(gm, [inputs, more])
        models.append(gm.eval())
    return models, inputs


@pytest.fixture(scope="module")
def pair():
    """Folded and unfolded, without dither (the tests that train it come last)."""
    return _pair(NO_DITHER)


@pytest.fixture(scope="module")
def dithered_pair():
    """Folded and unfolded, with dither: both draw alike as long as both are called alike."""
    return _pair(None)


@pytest.mark.parametrize("arch", ["roberta", "distilbert"])
def test_each_attention_folds_into_its_output_linear(arch):
    gm = optopass.apply_optical_pass(tiny_hf_model(arch, "sdpa"), None)
    attentions = {name: m for name, m in gm.named_modules() if isinstance(m, OTAttention)}
    assert attentions
    for name, attn in attentions.items():
        linear = attn.out_site
        assert isinstance(linear, OTLinear) and linear.input_quantized
        assert linear.site_name.endswith(("attention.output.dense", "attention.out_lin")), linear.site_name
    folded = [s for _, s in optical_sites(gm) if isinstance(s, OTLinear) and s.input_quantized]
    assert len(folded) == len(attentions)  # the Q/K/V, FFN and head linears keep their quantization


def test_calibrated_ranges_are_those_of_the_unfolded_model(pair):
    """While calibrating, the linear observes the raw attention output (neither folds)."""
    (folded, unfolded), _ = pair
    a, b = dict(optical_sites(folded)), dict(optical_sites(unfolded))
    for name, site in a.items():
        for r in site.range_names:
            torch.testing.assert_close(site.range(r), b[name].range(r), rtol=0, atol=0, msg=f"{name}.{r}")


@pytest.mark.parametrize("kernel", ["unfused", "fused"])
def test_folded_eval_gives_the_unfolded_numbers(kernel, dithered_pair):
    (folded, unfolded), inputs = dithered_pair
    for gm in (folded, unfolded):
        for m in gm.modules():
            if isinstance(m, OTAttention):
                m.kernel = kernel
    with torch.no_grad():
        got = folded(**inputs).logits
        want = unfolded(**inputs).logits  # the same counters, so the same dither draws
    if kernel == "unfused":  # the same elementwise ops, before or after the layout ops
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    else:  # the kernel's per-range reciprocal may put a value within an ulp of a tie one level away
        torch.testing.assert_close(got, want, rtol=2e-3, atol=2e-3)
        assert torch.isclose(got, want, rtol=1e-5, atol=1e-5).float().mean() >= 0.9


def test_folded_training_step_gives_the_unfolded_gradients(pair):
    """Frozen ranges in training: the fold applies, and the straight-through gradients agree."""
    (folded, unfolded), inputs = pair
    grads = []
    for gm in (folded, unfolded):
        gm.train()
        for _, site in optical_sites(gm):
            site.set_stats_mode("frozen")
        assert any(isinstance(m, OTAttention) and m.quantizes_output() for m in gm.modules()) == (gm is folded)
        torch.manual_seed(0)  # the same dropout masks
        loss = gm(**inputs, labels=torch.tensor([0, 1, 2], device=DEVICE)).loss
        params = [p for p in gm.parameters() if p.requires_grad]
        grads.append(torch.autograd.grad(loss, params))
    for g, w in zip(*grads):
        torch.testing.assert_close(g, w)


@pytest.mark.parametrize("kernel", ["unfused", "fused"])
def test_a_folded_attention_returns_its_output_quantized_to_the_linear_input_range(kernel):
    """The module alone: with its linear linked, the attention's output is quant.quantize of the
    unlinked output over the linear's input range (the fused kernel: in its epilogue)."""
    from optopass.passes.optical import quant
    from optopass.passes.optical.optical_transformer import OpticalTransformerParams
    from tests.passes.optical.test_attention_kernel import LUT, data_ranges, make_inputs, make_mask, set_ranges

    B, H, Lq, Lk, D = 2, 2, 24, 40, 16
    q, k, v = make_inputs(B, H, Lq, Lk, D, "blhd")
    mask = make_mask("float", B, Lq, Lk)
    params = OpticalTransformerParams(q_init_seed=3, q_levels=256)
    attn = OTAttention(params, "attn", 4).to(DEVICE).eval()
    attn.kernel = kernel
    ranges = data_ranges(q, k, v, mask, D ** -0.5, torch.tensor([0, 0]), 256, LUT, False)
    set_ranges(attn, ranges)
    linear = OTLinear(OpticalTransformerParams(q_levels=16), "dense", 9).to(DEVICE).eval()
    linear.range("x").copy_(0.6 * ranges[5])  # coarse and inside the output's range: the clamp acts
    for name in ("w", "out"):
        linear.range(name).copy_(torch.tensor([-1.0, 1.0]))
    with torch.no_grad():
        raw = attn(q, k, v, attn_mask=mask)
        for site in (attn.qk, attn.pv):
            site.counter.zero_()  # the same draws again
        object.__setattr__(attn, "_out_site", linear)
        linear.input_quantized = True
        got = attn(q, k, v, attn_mask=mask)
    want = quant.quantize(raw, linear.range("x"), 16).to(raw.dtype)
    assert want.unique().numel() <= 16
    assert torch.isclose(got, want, rtol=0, atol=1e-6).double().mean() >= 0.99


def test_a_deep_copy_links_its_own_linears():
    import copy

    gm = optopass.apply_optical_pass(tiny_hf_model("bert", "sdpa"), None)
    twin = copy.deepcopy(gm)
    for name, attn in twin.named_modules():
        if isinstance(attn, OTAttention):
            original = gm.get_submodule(name).out_site
            assert attn.out_site is not original and attn.out_site.site_name == original.site_name
            assert any(attn.out_site is m for m in twin.modules())
