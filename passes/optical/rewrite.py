"""The optical rewrite pass: matched linear/attention ops -> optical site modules.

Walks the graph once; for each node the first pattern rule that matches gives a ``Match``; the
config decides whether the site is skipped, bypassed or rewritten, and the kind's registered
handler builds the site module, which replaces the node (``call_module``). Returns the record
of every decision; ``report`` and the CLI are built from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch.fx

from ...patterns import RULES, match_node
from ...tools.config import OpticalConfig
from ...tools.errors import ConfigError
from ...tools.targets import first_match
from ..base import PassResult
from .registry import KINDS

SITES_PREFIX = "optical_sites"


@dataclass(frozen=True)
class SiteRecord:
    """One matched op and what the pass did with it.

    Attributes:
        kind: config key (``fc``/``attn``).
        site: site name (origin path, plus ``.qk``/``.pv`` for eager attention matmuls).
        origin: module path the op came from.
        op: matched op (``linear``, ``matmul``, ``attention``).
        status: ``optical`` (rewritten), ``skipped`` (skip list), ``bypassed`` (q_bypass),
            ``declined`` (the technology does not simulate this op), ``unconfigured`` (no
            config for this kind).
        technology: the technology that simulates it (rewritten sites).
        module: qualified name of the inserted module (rewritten sites).
        reason: the skip pattern, or why it was declined.
        params: the site's parameters.
    """

    kind: str
    site: str
    origin: str
    op: str
    status: str
    technology: str = ""
    module: str = ""
    reason: str = ""
    params: Any = None


@dataclass
class RewriteRecord:
    """Every decision of one rewrite, in graph order."""

    sites: list[SiteRecord] = field(default_factory=list)

    def by_status(self, status: str) -> list[SiteRecord]:
        return [s for s in self.sites if s.status == status]


def _module_name(site: str, taken: set[str]) -> str:
    base = site.replace(".", "__") or "root"
    name, i = base, 1
    while name in taken:
        name, i = f"{base}_{i}", i + 1
    taken.add(name)
    return name


def optical_rewrite(gm: torch.fx.GraphModule, config: OpticalConfig) -> PassResult:
    """Rewrite every matched op that `config` asks for into an optical site module.

    Raises:
        ConfigError: a user-given skip or override pattern matches no site.
    """
    matches = [m for m in (match_node(n, RULES) for n in list(gm.graph.nodes)) if m is not None]
    _check_patterns_match(config, [m.site for m in matches])
    record, taken, site_id = RewriteRecord(), set(), 0
    replaced: dict[torch.fx.Node, torch.fx.Node] = {}  # matched node -> its site call
    for match in matches:
        rec, site_id = _rewrite_one(gm, config, match, taken, site_id, replaced)
        record.sites.append(rec)
    gm.recompile()
    return PassResult(gm, bool(record.by_status("optical")), record)


def _rewrite_one(gm, config: OpticalConfig, match, taken: set[str], site_id: int, replaced: dict):
    base = dict(kind=match.kind, site=match.site, origin=match.origin, op=match.op)
    if match.kind not in config.kinds:
        return SiteRecord(**base, status="unconfigured"), site_id
    pattern = config.is_skipped(match.site)
    if pattern is not None:
        return SiteRecord(**base, status="skipped", reason=f"skip: {pattern}"), site_id
    technology, params = config.params_for(match.kind, match.site)
    if getattr(params, "bypass", False):
        return SiteRecord(**base, status="bypassed", technology=technology, params=params), site_id
    module = KINDS[match.kind](match, technology, params, match.site, site_id)
    if module is None:
        reason = f"{technology} does not simulate {match.op}"
        return SiteRecord(**base, status="declined", technology=technology, reason=reason, params=params), site_id
    name = f"{SITES_PREFIX}.{_module_name(match.site, taken)}"
    gm.add_submodule(name, module.to(_device_of(gm)))
    # the operands were collected before any rewrite: one may be an earlier site's erased node
    args, kwargs = torch.fx.node.map_arg((match.args, match.kwargs), lambda n: replaced.get(n, n))
    with gm.graph.inserting_before(match.node):
        new = gm.graph.call_module(name, args=args, kwargs=kwargs)
    new.meta = dict(match.node.meta)
    match.node.replace_all_uses_with(new)
    gm.graph.erase_node(match.node)
    replaced[match.node] = new
    rec = SiteRecord(**base, status="optical", technology=technology, module=name, params=params)
    return rec, site_id + 2  # an attention site uses two dither streams


def _device_of(gm: torch.nn.Module):
    p = next(gm.parameters(), None)
    return p.device if p is not None else "cpu"


def _check_patterns_match(config: OpticalConfig, sites: list[str]) -> None:
    checks = [] if config.skip_is_default else [(f"skip[{i}]", p) for i, p in enumerate(config.skip)]
    checks += [(f"overrides.{o.pattern}", o.pattern) for o in config.overrides]
    for key, pattern in checks:
        if first_match_any(pattern, sites) is None:
            where = config.source or "config"
            examples = ", ".join(sites[:3]) + (", ..." if len(sites) > 3 else "")
            raise ConfigError(f"{where}: {key}: pattern {pattern!r} matches no optical site (sites are e.g. {examples})")


def first_match_any(pattern: str, sites: list[str]) -> str | None:
    return next((s for s in sites if first_match(s, [pattern])), None)
