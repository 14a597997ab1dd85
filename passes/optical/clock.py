"""The dither-clock pass: one module, called last in the graph, counts the dithered calls of
every optical site once the forward is done.

Each dithered site call draws the dither of key ``(seed, site, counter)`` and counts the call.
Counting in each site makes one counter update per site and call; compiled, each is a kernel of
its own (a 0-d update fuses with nothing), a hundred per RoBERTa forward on the GPU. The clock
makes them one batched op per forward, with the same keys.
"""

from __future__ import annotations

import torch
import torch.fx
from torch import nn

from ..base import PassResult
from .sites import optical_sites

CLOCK = "optical_clock"


class DitherClock(nn.Module):
    """Counts the dithered calls of a graph's sites once the forward is done, as one batched
    op, instead of one counter update per site and call.

    ``add_dither_clock`` inserts it as the graph's last call (each site module is called once
    per forward). Compiled, each site's update would be a kernel of its own, a hundred per
    RoBERTa forward, where one ``_foreach_add_`` is one. The keys are the same: a site reads
    its counter before the clock adds one, as it would before counting itself. A clocked site
    called outside its graph does not count the call.
    """

    _is_impure = True  # torch.fx: no dead-code elimination of a call without users

    def __init__(self, sites):
        super().__init__()
        object.__setattr__(self, "_sites", tuple(sites))  # not submodules: they are the graph's
        for site in self._sites:
            site.clocked = True

    @property
    def sites(self) -> tuple:
        return self._sites

    def forward(self) -> None:
        counters = [site.counter for site in self._sites if site.draws_dither()]
        if counters:
            with torch.no_grad():
                torch._foreach_add_(counters, 1)

    def extra_repr(self) -> str:
        return f"{len(self._sites)} sites"


def add_dither_clock(gm: torch.fx.GraphModule) -> PassResult:
    """Insert a DitherClock of every optical site of `gm` as its last call (none without sites)."""
    sites = [site for _, site in optical_sites(gm)]
    if not sites:
        return PassResult(gm, False)
    gm.add_submodule(CLOCK, DitherClock(sites))
    output = next(n for n in gm.graph.nodes if n.op == "output")
    with gm.graph.inserting_before(output):
        node = gm.graph.call_module(CLOCK)
    node.meta["nn_module_stack"] = {CLOCK: (CLOCK, f"{DitherClock.__module__}.{DitherClock.__qualname__}")}
    gm.recompile()
    return PassResult(gm, True)
