"""Coverage of the optical rewrite: every linear and attention matmul the config targets, and
only those; skip lists and overrides by exact path, suffix and regex."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import optopass
from optopass.passes.optical.optical_transformer import OTAttention, OTLinear, OTMatmul
from optopass.passes.optical.rewrite import SITES_PREFIX
from optopass.passes.train_mode import ModeAwareSDPA

aten = torch.ops.aten
ATTENTION_OPS = {aten.matmul.default, aten.bmm.default, aten.scaled_dot_product_attention.default}


def _under(name: str, roots) -> bool:
    return any(name == r or name.startswith(r + ".") for r in roots)


def expected_fc_sites(model: nn.Module, head: tuple[str, ...]) -> set[str]:
    return {name for name, m in model.named_modules() if isinstance(m, nn.Linear) and not _under(name, head)}


def expected_attn_sites(model: nn.Module) -> set[str]:
    """Two matmuls (Q·Kᵀ, P·V) per attention module: the parent of each query projection."""
    parents = {name.rsplit(".", 1)[0] for name, m in model.named_modules()
               if isinstance(m, nn.Linear) and name.rsplit(".", 1)[-1] in ("query", "q_lin")}
    return {f"{p}.{role}" for p in parents for role in ("qk", "pv")}


def _num_layers(model) -> int:
    cfg = model.config
    return getattr(cfg, "num_hidden_layers", None) or cfg.n_layers


def _calls(gm, targets) -> list:
    return [n for n in gm.graph.nodes if n.op == "call_function" and n.target in targets]


def _mode_aware_sdpa(gm) -> list:
    return [n for n in gm.graph.nodes if n.op == "call_module" and isinstance(gm.get_submodule(n.target), ModeAwareSDPA)]


def test_default_config_rewrites_every_linear_and_both_attention_matmuls(tiny, arch_impl, head_names, graph_checker):
    arch, impl = arch_impl
    model, gm = tiny.capture(arch, impl, "default")
    graph_checker(gm)
    head = head_names[arch]
    rows = optopass.report(gm)
    fc_sites = {r["site"] for r in rows if r["kind"] == "fc"}
    attn_sites = {r["site"] for r in rows if r["kind"] == "attn"}
    assert fc_sites == expected_fc_sites(model, head)
    assert attn_sites == expected_attn_sites(model)
    assert sum(r["kind"] == "fc" for r in rows) == sum(isinstance(m, nn.Linear) and not _under(n, head) for n, m in model.named_modules())
    assert sum(r["kind"] == "attn" for r in rows) == 2 * _num_layers(model)
    # what is left is exactly the head's linears; no attention op survives
    head_linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and _under(n, head)]
    assert len(_calls(gm, {aten.linear.default})) == len(head_linears)
    assert not _calls(gm, ATTENTION_OPS)
    assert not _mode_aware_sdpa(gm)
    skipped = {r.site for r in gm.optical_record.sites if r.status == "skipped"}
    assert skipped == set(head_linears)
    # the inserted modules are the optical transformer's
    for rec in gm.optical_record.by_status("optical"):
        module = gm.get_submodule(rec.module)
        want = {"linear": OTLinear, "matmul": OTMatmul, "attention": OTAttention}[rec.op]
        assert isinstance(module, want)
        assert rec.module.startswith(f"{SITES_PREFIX}.")


def test_sdpa_models_give_one_attention_site_per_layer(tiny, arch_impl):
    arch, impl = arch_impl
    model, gm = tiny.capture(arch, impl, "default")
    attn = [r for r in gm.optical_record.sites if r.kind == "attn"]
    if impl == "sdpa":
        assert [r.op for r in attn] == ["attention"] * _num_layers(model)
    else:
        assert [r.op for r in attn] == ["matmul"] * (2 * _num_layers(model))
        assert [r.site.rsplit(".", 1)[-1] for r in attn] == ["qk", "pv"] * _num_layers(model)


def test_bypass_config_rewrites_nothing(tiny, arch_impl, graph_checker):
    model, gm = tiny.capture(*arch_impl, "bypass")
    graph_checker(gm)
    statuses = {r.status for r in gm.optical_record.sites}
    assert statuses == {"bypassed", "skipped"}
    assert not any(name.startswith(SITES_PREFIX) for name, _ in gm.named_modules() if name)
    assert optopass.report(gm) == []


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_empty_skip_list_also_rewrites_the_head(make_model, impl, graph_checker):
    model = make_model("roberta", impl)
    gm = optopass.apply_optical_pass(model, {"fc": {}, "attn": {}, "skip": []})
    graph_checker(gm)
    status = {r.site: r.status for r in gm.optical_record.sites}
    assert status["classifier.dense"] == "optical"
    assert status["classifier.out_proj"] == "optical"
    assert set(status.values()) == {"optical"}
    assert not _calls(gm, {aten.linear.default} | ATTENTION_OPS)
    assert {r["site"] for r in optopass.report(gm) if r["kind"] == "fc"} == expected_fc_sites(model, ())


L0, L1 = "roberta.encoder.layer.0", "roberta.encoder.layer.1"
OVERRIDE_CONFIG = {
    "fc": {"q_levels": 256},
    "attn": {"q_levels": 256},
    "skip": ["classifier", r"re:.*layer\.1\.output\.dense"],
    "overrides": {
        f"{L0}.attention.self.query": {"q_levels": 16},  # exact path
        r"re:.*\.query": {"q_levels": 8},  # regex; the exact path above matched first for layer 0
        "attention.output.dense": {"q_levels": 32},  # suffix: both layers
        r"re:.*layer\.1\.intermediate\..*": {"q_lut_min": 0.1},  # regex
        "layer.0.attention.self.pv": {"q_levels": 64, "q_dither": False},  # suffix on an attention matmul
    },
}
DEFAULT_LUT = 0.020040
# site -> (status, q_levels, q_lut_min, q_dither); every site not listed: optical with the defaults
OVERRIDE_TABLE = {
    f"{L0}.attention.self.query": ("optical", 16, DEFAULT_LUT, True),
    f"{L1}.attention.self.query": ("optical", 8, DEFAULT_LUT, True),
    f"{L0}.attention.output.dense": ("optical", 32, DEFAULT_LUT, True),
    f"{L1}.attention.output.dense": ("optical", 32, DEFAULT_LUT, True),
    f"{L1}.intermediate.dense": ("optical", 256, 0.1, True),
    f"{L0}.attention.self.pv": ("optical", 64, DEFAULT_LUT, False),
    f"{L1}.output.dense": ("skipped", None, None, None),
    "classifier.dense": ("skipped", None, None, None),
    "classifier.out_proj": ("skipped", None, None, None),
}


@pytest.fixture(scope="module")
def overridden(make_model):
    model = make_model("roberta", "eager")
    return model, optopass.apply_optical_pass(model, OVERRIDE_CONFIG)


def test_overrides_and_regex_skip_pass_the_graph_checker(overridden, graph_checker):
    _, gm = overridden
    graph_checker(gm)
    # the regex-skipped linear is still an aten.linear in the graph, with the head's two
    left = {list(n.meta["nn_module_stack"].values())[-1][0] for n in _calls(gm, {aten.linear.default})}
    assert left == {f"{L1}.output.dense", "classifier.dense", "classifier.out_proj"}


def test_overrides_change_exactly_the_matched_sites(overridden):
    model, gm = overridden
    records = {r.site: r for r in gm.optical_record.sites}
    assert set(OVERRIDE_TABLE) <= set(records)
    rows = {r["site"]: r for r in optopass.report(gm)}
    for site, rec in records.items():
        status, levels, lut, dither = OVERRIDE_TABLE.get(site, ("optical", 256, DEFAULT_LUT, True))
        assert rec.status == status, site
        if status != "optical":
            assert site not in rows
            continue
        config = rows[site]["config"]
        assert (config["q_levels"], config["q_lut_min"], config["q_dither"]) == (levels, lut, dither), site
        module = gm.get_submodule(rows[site]["module"])
        assert (module.levels, module.lut_min, module.dither) == (levels, lut, dither), site


def test_skip_by_regex_records_the_pattern(overridden):
    _, gm = overridden
    rec = next(r for r in gm.optical_record.sites if r.site == f"{L1}.output.dense")
    assert rec.status == "skipped"
    assert rec.reason == r"skip: re:.*layer\.1\.output\.dense"
    rows = optopass.report(gm, include_untransformed=True)
    assert any(r["site"] == f"{L1}.output.dense" and r["status"] == "skipped" for r in rows)


def test_only_fc_configured_leaves_attention_untouched(make_model, graph_checker):
    model = make_model("bert", "eager")
    gm = optopass.apply_optical_pass(model, {"fc": {}})
    graph_checker(gm)
    attn = [r for r in gm.optical_record.sites if r.kind == "attn"]
    assert attn and {r.status for r in attn} == {"unconfigured"}
    assert len(_calls(gm, {aten.matmul.default})) == 2 * _num_layers(model)


class ChainedLinears(nn.Module):
    """Linears feeding each other directly, with no op in between."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.fc2 = nn.Linear(8, 8)
        self.fc3 = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc3(self.fc2(self.fc1(x)))


@pytest.mark.parametrize("skip", [[], ["fc2"]])
def test_a_site_consuming_another_site_is_wired_to_it(graph_checker, skip):
    torch.manual_seed(0)
    module = ChainedLinears()
    gm = optopass.apply_optical_pass(module, {"fc": {"q_dither": False}, "skip": skip}, example_inputs=(torch.randn(4, 6),))
    graph_checker(gm)
    optopass.calibrate(gm, [{"x": torch.randn(8, 6)}])
    sites = {r.site: gm.get_submodule(r.module) for r in gm.optical_record.by_status("optical")}
    x = torch.randn(5, 6)
    with torch.no_grad():
        h = sites["fc1"](x, module.fc1.weight, module.fc1.bias)
        h = module.fc2(h) if skip else sites["fc2"](h, module.fc2.weight, module.fc2.bias)
        want = sites["fc3"](h, module.fc3.weight, module.fc3.bias)
        assert torch.equal(gm(x), want)
