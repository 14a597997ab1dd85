"""Registers SqueezeLight (Gu et al., DATE 2021) as an optical technology.

Only linear layers (``fc``) are simulated: a MORR computes with a weight programmed into its
rings, so the attention matmuls, whose both operands change with every input, do not map onto
it; an ``attn`` site given ``technology: squeezelight`` is declined and stays the original op.
"""

from __future__ import annotations

from .registry import register_site, register_technology
from .squeezelight import SqueezeLightLinearSite, SqueezeLightParams

TECHNOLOGY = "squeezelight"

register_technology(TECHNOLOGY)(SqueezeLightParams)


@register_site(TECHNOLOGY, "linear")
def make_linear(params: SqueezeLightParams, name: str, site_id: int, match=None) -> SqueezeLightLinearSite:
    """# aten.linear(x, W, b) -> squeezelight linear site(x, W, b): W projected onto k x k circulant blocks"""
    out_features, in_features = match.args[1].meta["val"].shape
    return SqueezeLightLinearSite(params, name, int(out_features), int(in_features), site_id=site_id)
