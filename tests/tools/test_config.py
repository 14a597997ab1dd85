"""The optical config: loading, validation errors naming the key, target patterns."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

import optopass
from optopass.tools.config import DEFAULT_CONFIG_PATH, DEFAULT_SKIP, OpticalConfig
from optopass.tools.errors import ConfigError
from optopass.tools.targets import first_match, matches

# The reference study's transform_cfg.yaml, verbatim.
REFERENCE_YAML = """\
"attn": {q_levels: 256, q_lut_min: 0.020040, q_quantiles: null, q_smooth_factor: 0.9, q_init_seed: 0, q_bypass: false}
"fc":   {q_levels: 256, q_lut_min: 0.020040, q_quantiles: null, q_smooth_factor: 0.9, q_init_seed: 0, q_bypass: false}
"""
REFERENCE_PARAMS = {"q_levels": 256, "q_lut_min": 0.020040, "q_quantiles": None, "q_smooth_factor": 0.9,
                    "q_init_seed": 0, "q_bypass": False, "q_dither": True}


def _params(cfg: OpticalConfig, kind: str) -> dict:
    p = cfg.kinds[kind].params
    return {k: getattr(p, k) for k in REFERENCE_PARAMS}


@pytest.mark.parametrize("source", ["text", "repo_file", "default"])
def test_reference_config_loads_unchanged(tmp_path, source):
    if source == "text":
        path = tmp_path / "transform_cfg.yaml"
        path.write_text(REFERENCE_YAML)
        cfg = optopass.load_config(path)
        assert cfg.source == str(path)
    elif source == "repo_file":
        cfg = optopass.load_config(str(DEFAULT_CONFIG_PATH))
    else:
        cfg = optopass.load_config()
    assert set(cfg.kinds) == {"fc", "attn"}
    for kind in ("fc", "attn"):
        assert cfg.kinds[kind].technology == "optical_transformer"
        assert _params(cfg, kind) == REFERENCE_PARAMS
    assert cfg.skip == DEFAULT_SKIP == ("classifier", "pre_classifier")
    assert cfg.skip_is_default and cfg.overrides == ()


def test_repo_file_is_the_reference_text():
    assert Path(DEFAULT_CONFIG_PATH).read_text().strip() == REFERENCE_YAML.strip()


BAD_MAPPINGS = [
    ("unknown top-level key", {"fc": {}, "bogus": {}}, r"bogus: unknown key; allowed: attn, fc, skip, overrides"),
    ("unknown param", {"fc": {"q_levelz": 8}}, r"fc\.q_levelz: unknown parameter; allowed: q_levels"),
    ("levels as string", {"fc": {"q_levels": "256"}}, r"fc\.q_levels: must be an integer >= 2, got '256'"),
    ("levels as bool", {"fc": {"q_levels": True}}, r"fc\.q_levels: must be an integer"),
    ("levels as float", {"fc": {"q_levels": 8.0}}, r"fc\.q_levels: must be an integer"),
    ("bypass as string", {"attn": {"q_bypass": "yes"}}, r"attn\.q_bypass: must be true or false, got 'yes'"),
    ("dither as int", {"fc": {"q_dither": 1}}, r"fc\.q_dither: must be true or false"),
    ("levels < 2", {"fc": {"q_levels": 1}}, r"fc\.q_levels: must be an integer >= 2, got 1"),
    ("lut_min < 0", {"fc": {"q_lut_min": -0.1}}, r"fc\.q_lut_min: must be a number in \[0, 1\)"),
    ("lut_min >= 1", {"attn": {"q_lut_min": 1.0}}, r"attn\.q_lut_min: must be a number in \[0, 1\)"),
    ("quantile at 0", {"fc": {"q_quantiles": [0, 0.9]}}, r"fc\.q_quantiles: must satisfy 0 < lo < hi < 1"),
    ("quantile at 1", {"fc": {"q_quantiles": [0.1, 1.0]}}, r"fc\.q_quantiles: must satisfy 0 < lo < hi < 1"),
    ("quantiles unordered", {"attn": {"q_quantiles": [0.9, 0.1]}}, r"attn\.q_quantiles: must satisfy 0 < lo < hi < 1"),
    ("one quantile", {"fc": {"q_quantiles": [0.5]}}, r"fc\.q_quantiles: must be null or a pair"),
    ("smooth factor > 1", {"fc": {"q_smooth_factor": 1.5}}, r"fc\.q_smooth_factor: must be a number in \[0, 1\]"),
    ("negative seed", {"fc": {"q_init_seed": -1}}, r"fc\.q_init_seed: must be an integer >= 0"),
    ("unknown technology", {"fc": {"technology": "nope"}}, r"fc\.technology: unknown technology 'nope'; allowed: .*optical_transformer"),
    ("kind not a mapping", {"fc": "x"}, r"fc: must be a mapping of parameters"),
    ("no kind", {"skip": []}, r"no layer type given"),
    ("skip not a list", {"fc": {}, "skip": "classifier"}, r"skip: must be a list"),
    ("bad skip regex", {"fc": {}, "skip": ["re:("]}, r"skip\[0\]: invalid regex '\('"),
    ("empty skip pattern", {"fc": {}, "skip": ["classifier", ""]}, r"skip\[1\]: a target pattern must be a non-empty string"),
    ("bad override regex", {"fc": {}, "overrides": {"re:[": {"q_levels": 8}}}, r"overrides\.re:\[: invalid regex"),
    ("override unknown param", {"fc": {}, "overrides": {"query": {"q_levelz": 8}}}, r"overrides\.query\.q_levelz: unknown parameter"),
    ("override bad value", {"fc": {}, "overrides": {"query": {"q_levels": 1}}}, r"overrides\.query\.q_levels: must be an integer >= 2"),
    ("override empty", {"fc": {}, "overrides": {"query": {}}}, r"overrides\.query: must be a non-empty mapping"),
    ("overrides not a mapping", {"fc": {}, "overrides": ["x"]}, r"overrides: must be a mapping"),
]


@pytest.mark.parametrize("raw, message", [c[1:] for c in BAD_MAPPINGS], ids=[c[0] for c in BAD_MAPPINGS])
def test_bad_mapping_raises_config_error_naming_the_key(raw, message):
    before = copy.deepcopy(raw)
    with pytest.raises(ConfigError, match=message):
        optopass.load_config(raw)
    assert raw == before


BAD_FILES = [
    ("unknown param", "fc:\n  q_levels: 8\n  bad: 1\n", r"c\.yaml: fc\.bad \(line 3\): unknown parameter"),
    ("unordered quantiles", "attn: {}\nfc:\n  q_quantiles: [0.9, 0.1]\n", r"fc\.q_quantiles \(line 3\): must satisfy"),
    ("unknown key", "fc: {}\n\nfcc: {}\n", r"fcc \(line 3\): unknown key"),
    ("bad skip regex", "fc: {}\nskip:\n  - classifier\n  - 're:(('\n", r"skip\[1\] \(line 4\): invalid regex"),
    ("unclosed flow mapping", "fc: {q_levels: 8\nattn: {}\n", r"c\.yaml: line 2: not valid YAML"),
    ("tab indent", "fc:\n\tq_levels: 3\n", r"c\.yaml: line 2: not valid YAML"),
    ("a list", "- fc\n- attn\n", r"the config must be a mapping"),
    ("empty file", "", r"the config must be a mapping"),
]


@pytest.mark.parametrize("text, message", [c[1:] for c in BAD_FILES], ids=[c[0] for c in BAD_FILES])
def test_bad_file_raises_config_error_naming_file_key_and_line(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        optopass.load_config(path)


def test_missing_file_raises_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"missing\.yaml' does not exist"):
        optopass.load_config(tmp_path / "missing.yaml")


def test_config_error_is_a_value_error_and_one_line():
    with pytest.raises(ValueError) as info:
        optopass.load_config({"fc": {"q_levels": 0}})
    assert "\n" not in str(info.value)


def test_loader_does_not_mutate_its_input():
    raw = {
        "fc": {"q_levels": 16, "technology": "optical_transformer", "q_quantiles": [0.01, 0.99]},
        "attn": {"q_bypass": True},
        "skip": ["classifier", r"re:.*pooler.*"],
        "overrides": {"query": {"q_levels": 8}, r"re:.*\.key": {"q_lut_min": None}},
    }
    before = copy.deepcopy(raw)
    cfg = optopass.load_config(raw)
    assert raw == before
    assert cfg.kinds["fc"].params.q_quantiles == (0.01, 0.99)
    assert optopass.load_config(cfg) is cfg


@pytest.mark.parametrize("raw", [
    {"fc": {}, "attn": {}},
    {"fc": {"q_levels": 16, "q_quantiles": [0.01, 0.99], "q_dither": False}},
    {"attn": {"q_bypass": True}, "fc": {"q_lut_min": None}, "skip": []},
    {"fc": {}, "skip": ["classifier", "re:.*pooler.*"], "overrides": {"query": {"q_levels": 8}, "re:.*key": {"q_init_seed": 3}}},
])
def test_to_dict_round_trips(raw):
    cfg = optopass.load_config(raw)
    again = optopass.load_config(cfg.to_dict())
    assert again == cfg
    assert again.to_dict() == cfg.to_dict()


def test_a_config_pickles_and_comes_back_equal_and_read_only():
    """Read-only mappings do not pickle by themselves; a config must (worker processes)."""
    import pickle

    cfg = optopass.load_config({"fc": {"q_levels": 16}, "attn": {"q_bypass": True}, "skip": ["classifier"],
                                "overrides": {"query": {"q_levels": 8}}})
    again = pickle.loads(pickle.dumps(cfg))
    assert again == cfg and again.to_dict() == cfg.to_dict()
    assert again.params_for("fc", "enc.layer.1.query")[1].q_levels == 8
    assert again.params_for("fc", "enc.layer.1.key")[1].q_levels == 16
    with pytest.raises(TypeError):
        again.kinds["fc"] = None
    with pytest.raises(TypeError):
        again.overrides[0].values["q_levels"] = 4


def test_overrides_first_match_wins_and_params_for_applies_them():
    cfg = optopass.load_config({"fc": {"q_levels": 256}, "overrides": {"layer.0.query": {"q_levels": 16}, "query": {"q_levels": 8}}})
    assert cfg.params_for("fc", "enc.layer.0.query")[1].q_levels == 16
    assert cfg.params_for("fc", "enc.layer.1.query")[1].q_levels == 8
    assert cfg.params_for("fc", "enc.layer.1.key")[1].q_levels == 256


# ------------------------------------------------------------------------------------------------
# Target patterns: one matching function for exact path, suffix and `re:` regex

PATH = "roberta.encoder.layer.0.attention.self.query"
MATCHES = [
    (PATH, PATH, True),  # exact
    ("attention.self.query", PATH, True),  # suffix
    ("query", PATH, True),  # last component
    ("layer.0", PATH, True),  # a module and everything under it
    ("roberta", PATH, True),
    ("uery", PATH, False),  # not on a component boundary
    ("self.quer", PATH, False),
    ("layer.1", PATH, False),
    ("classifier", "classifier.dense", True),
    ("classifier", "pre_classifier", False),
    ("pre_classifier", "pre_classifier", True),
    ("classifier", "classifier", True),
    (r"re:.*\.query", PATH, True),  # regex, full match
    (r"re:query", PATH, False),  # a regex must match the whole path
    (r"re:.*layer\.[01]\..*", PATH, True),
    (r"re:.*layer\.[23]\..*", PATH, False),
]


@pytest.mark.parametrize("pattern, path, expected", MATCHES)
def test_target_pattern_matching(pattern, path, expected):
    assert matches(path, pattern) is expected


def test_first_match_returns_the_first_covering_pattern():
    assert first_match(PATH, ["key", "re:.*query", "query"]) == "re:.*query"
    assert first_match(PATH, ["key", "value"]) is None


class TwoLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.fc2 = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc2(self.fc1(x))


@pytest.mark.parametrize("raw, message", [
    ({"fc": {}, "skip": ["fc1", "fc3"]}, r"config: skip\[1\]: pattern 'fc3' matches no optical site \(sites are e\.g\. fc1, fc2\)"),
    ({"fc": {}, "skip": [r"re:fc\d\d"]}, r"skip\[0\]: pattern 're:fc\\\\d\\\\d' matches no optical site"),
    ({"fc": {}, "overrides": {"fc9": {"q_levels": 8}}}, r"overrides\.fc9: pattern 'fc9' matches no optical site"),
])
def test_a_pattern_matching_nothing_fails_at_apply_naming_the_key(raw, message):
    with pytest.raises(ConfigError, match=message):
        optopass.apply_optical_pass(TwoLinear(), raw, example_inputs=(torch.randn(2, 4),))


def test_a_pattern_matching_nothing_in_a_file_names_the_file(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("fc: {}\nskip: [nothing_here]\n")
    with pytest.raises(ConfigError, match=r"cfg\.yaml: skip\[0\]: pattern 'nothing_here' matches no optical site"):
        optopass.apply_optical_pass(TwoLinear(), path, example_inputs=(torch.randn(2, 4),))


def test_default_skip_matching_nothing_is_fine():
    gm = optopass.apply_optical_pass(TwoLinear(), {"fc": {}}, example_inputs=(torch.randn(2, 4),))
    assert {r.status for r in gm.optical_record.sites} == {"optical"}
