"""Pattern rules on small exported graphs: what matches, with which kind/op/role and operands."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from optopass.patterns import RULES, match_node, origin_of
from optopass.patterns import attention, linear

aten = torch.ops.aten


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(8, 8)
        self.mix = nn.Parameter(torch.randn(8, 8))

    def forward(self, x):
        q = self.proj(x).view(2, 5, 2, 4).transpose(1, 2)  # (b, h, s, d)
        k, v = q * 2, q + 1
        probs = torch.softmax(q @ k.transpose(-1, -2), dim=-1)
        ctx = F.dropout(probs, 0.1, self.training) @ v  # eager P·V behind a dropout
        flat = ctx.transpose(1, 2).reshape(2, 5, 8)
        mixed = flat @ self.mix  # matmul with a parameter: a linear in disguise, not attention
        gram = mixed[0] @ mixed[0].T  # rank-2 activations: not attention
        sdpa = F.scaled_dot_product_attention(q, k, v, dropout_p=0.0)
        return mixed, gram, sdpa


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = Attention()

    def forward(self, x):
        return self.attn(x)


@pytest.fixture(scope="module")
def graph():
    model = Block().train()
    ep = torch.export.export(model, (torch.randn(2, 5, 8),), strict=False)
    return ep.module().graph


def _matches(graph):
    return [m for m in (match_node(n, RULES) for n in graph.nodes) if m is not None]


def test_what_matches_in_order(graph):
    found = [(m.rule, m.kind, m.op, m.role, m.origin) for m in _matches(graph)]
    assert found == [
        ("linear", "fc", "linear", "", "attn.proj"),
        ("attention_qk", "attn", "matmul", "qk", "attn"),
        ("attention_pv", "attn", "matmul", "pv", "attn"),
        ("sdpa", "attn", "attention", "", "attn"),
    ]
    assert [m.site for m in _matches(graph)] == ["attn.proj", "attn.qk", "attn.pv", "attn"]


def test_declined_matmuls_are_left_alone(graph):
    matmuls = [n for n in graph.nodes if n.op == "call_function" and n.target == aten.matmul.default]
    assert len(matmuls) == 4  # qk, pv, the parameter mix, the rank-2 gram
    declined = [n for n in matmuls if match_node(n, RULES) is None]
    assert len(declined) == 2
    for node in declined:
        a, b = node.args[:2]
        assert b.op == "get_attr" or a.meta["val"].dim() == 2


def test_operands_are_in_the_site_forward_order(graph):
    lin, qk, pv, sdpa = _matches(graph)
    assert len(lin.args) == 3 and lin.args[1].op == "get_attr" and lin.args[2].op == "get_attr"
    assert qk.args == tuple(qk.node.args[:2]) and pv.args == tuple(pv.node.args[:2])
    assert all(isinstance(a, torch.fx.Node) for a in sdpa.args) and len(sdpa.args) == 3
    assert sdpa.kwargs.get("dropout_p", 0.0) == 0.0


def test_rules_are_data_combined_by_concatenation():
    assert RULES == linear.RULES + attention.RULES
    assert {r.kind for r in RULES} == {"fc", "attn"}
    for rule in RULES:
        assert rule.targets and callable(rule.extract)


def test_origin_of_a_node_without_module_stack_is_top_level():
    g = torch.fx.Graph()
    x = g.placeholder("x")
    assert origin_of(x) == ""
