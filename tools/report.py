"""Per-site report of a transformed model, built from the rewrite pass's record."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import torch
from torch import nn


def _params_dict(params) -> dict[str, Any]:
    if params is None:
        return {}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(params).items()}


def _leaf_sites(module: nn.Module, prefix: str):
    """(name, site) of the statistics-holding sites of one inserted module (itself, or its
    children for an attention site that holds two matmuls)."""
    if hasattr(module, "range_names"):
        return [(prefix, module)]
    return [(f"{prefix}.{n}", m) for n, m in module.named_children() if hasattr(m, "range_names")]


def report(model: nn.Module, include_untransformed: bool = False) -> list[dict[str, Any]]:
    """One record per optical site of a transformed model.

    Each record: ``kind`` (``fc``/``attn``), ``site``, ``origin`` (module path), ``op``,
    ``technology``, ``module``, ``config`` (its parameters) and ``stats`` (its ranges,
    NaN until observed). An SDPA attention site gives two records (its Q·Kᵀ and P·V matmuls),
    like the two matmuls of eager attention.

    Args:
        model: a module returned by ``apply_optical_pass``.
        include_untransformed: also list skipped/bypassed/declined ops (``status`` tells).
    """
    record = getattr(model, "optical_record", None)
    if record is None:
        raise ValueError("report: the model was not made by apply_optical_pass")
    rows = []
    for rec in record.sites:
        if rec.status != "optical":
            if include_untransformed:
                rows.append({"kind": rec.kind, "site": rec.site, "origin": rec.origin, "op": rec.op,
                             "status": rec.status, "reason": rec.reason, "config": _params_dict(rec.params)})
            continue
        module = model.get_submodule(rec.module)
        for name, site in _leaf_sites(module, rec.module):
            op = rec.op if site is module else f"{rec.op}.{name.rsplit('.', 1)[-1]}"
            rows.append({
                "kind": rec.kind, "site": getattr(site, "site_name", rec.site), "origin": rec.origin, "op": op,
                "status": "optical", "technology": rec.technology, "module": name,
                "config": _params_dict(rec.params), "stats": site.stats(),
            })
    return rows


def summarize(model: nn.Module) -> dict[str, Any]:
    """Counts by kind and status, for the CLI table."""
    record = model.optical_record
    counts = Counter((r.kind, r.status) for r in record.sites)
    rows = report(model)
    return {
        "by_kind": {k: {s: counts[(k, s)] for s in ("optical", "skipped", "bypassed", "declined", "unconfigured") if counts[(k, s)]}
                    for k in sorted({r.kind for r in record.sites})},
        "optical_matmuls": Counter(r["kind"] for r in rows),
        "skipped": [{"site": r.site, "reason": r.reason or r.status} for r in record.sites if r.status != "optical"],
    }


def sqnr_db(reference: torch.Tensor, test: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio of `test` against `reference`, in dB."""
    ref = reference.detach().double()
    noise = (test.detach().double() - ref).pow(2).sum()
    signal = ref.pow(2).sum()
    if noise == 0:
        return float("inf")
    return float(10 * torch.log10(signal / noise))


def site_sqnr(model: nn.Module, batches) -> list[dict[str, Any]]:
    """Per-site output fidelity of a calibrated optical model: for each site, the SQNR (dB) of
    its optical output against the exact op (``x·Wᵀ + b``, ``a·b``) on the same inputs, pooled
    over `batches` (dicts of model inputs), worst first. The inputs a site sees already carry the
    error of the sites before it, so the figure is each site's own loss, not an accumulated one.
    Runs in eval mode without gradients; the model's mode and the sites' state are restored.
    """
    from optopass.passes.optical.sites import SiteBase, optical_sites

    sums: dict[str, list[float]] = {}
    handles = []

    def hook(site, args, output):
        site.enabled = False  # the exact op on the very same inputs
        try:
            exact = site.forward(*args)  # not site(...): that would run this hook again
        finally:
            site.enabled = True
        ref, out = exact.detach().double(), output.detach().double()
        acc = sums.setdefault(site.site_name, [0.0, 0.0])
        acc[0] += float(ref.pow(2).sum())
        acc[1] += float((out - ref).pow(2).sum())

    sites = [site for _, site in optical_sites(model) if isinstance(site, SiteBase) and hasattr(site, "enabled")]
    for site in sites:
        handles.append(site.register_forward_hook(hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            for batch in batches:
                model(**batch)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    rows = []
    for site in sites:
        signal, noise = sums.get(site.site_name, (0.0, 0.0))
        db = float("inf") if noise == 0 else 10 * torch.log10(torch.tensor(signal / noise)).item()
        rows.append({"site": site.site_name, "kind": site.kind, "op": site.op, "sqnr_db": db})
    return sorted(rows, key=lambda r: r["sqnr_db"])
