"""The rewrite handlers behind the YAML layer-type keys: ``fc`` and ``attn``.

A handler builds the site module for one match from the site's (technology, parameters), or
declines with None (e.g. a technology that does not simulate that op).
"""

from __future__ import annotations

from .registry import register_kind, site_factory


def _build(technology: str, params, match, name: str, site_id: int):
    factory = site_factory(technology, match.op)
    return None if factory is None else factory(params, name=name, site_id=site_id, match=match)


@register_kind("fc")
def rewrite_fc(match, technology: str, params, name: str, site_id: int):
    """# aten.linear(x, W, b) -> <technology> linear site(x, W, b)"""
    return _build(technology, params, match, name, site_id)


@register_kind("attn")
def rewrite_attn(match, technology: str, params, name: str, site_id: int):
    """# Q·Kᵀ, P·V matmuls -> <technology> matmul site(a, b); SDPA -> attention site(q, k, v, ...)"""
    return _build(technology, params, match, name, site_id)
