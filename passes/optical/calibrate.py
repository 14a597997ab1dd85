"""Calibration: collect range statistics on sample batches, then freeze them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn
from tqdm.auto import tqdm

from .sites import optical_sites


def set_stats_mode(model: nn.Module, mode: str) -> int:
    """Set the statistics mode (``auto``/``observe``/``frozen``) of every optical site.

    Returns:
        The number of sites changed.
    """
    count = 0
    for _, site in optical_sites(model):
        site.set_stats_mode(mode)
        count += 1
    return count


@torch.no_grad()
def calibrate(model: nn.Module, batches: Iterable[Mapping[str, torch.Tensor]], *, freeze: bool = True,
              method: str | None = None, progress: bool = False) -> nn.Module:
    """Observe each optical site's input/weight/output ranges over `batches`, then freeze them.

    The model runs in eval mode (no dropout) with statistics forced on; afterwards it stays in
    eval mode and the sites' statistics are ``frozen`` (or back to ``auto`` with
    ``freeze=False``, so that training updates them and eval does not).

    Args:
        model: a module returned by ``apply_optical_pass``.
        batches: keyword-input batches (e.g. tokenizer output); ``labels`` are ignored.
        freeze: freeze the statistics afterwards.
        method: range estimation for the sites that support it: ``statistic`` (min/max or the
            config's quantiles) or ``mse`` (per-operand clip minimising quantization error);
            None keeps each site's configured ``q_range_method``. Kept by the sites afterwards.
        progress: show a tqdm bar.

    Returns:
        The same model.
    """
    if method is not None:
        for _, site in optical_sites(model):
            if hasattr(site, "set_range_method"):
                site.set_range_method(method)
    if set_stats_mode(model, "observe") == 0:
        raise ValueError("calibrate: the model has no optical site (was it made by apply_optical_pass?)")
    model.eval()
    device = next(model.parameters()).device
    seen = 0
    for batch in tqdm(batches, desc="calibrate", disable=not progress):
        inputs = {k: v.to(device) for k, v in batch.items() if k != "labels" and v is not None}
        model(**inputs)
        seen += 1
    if seen == 0:
        set_stats_mode(model, "auto")
        raise ValueError("calibrate: no batch given")
    set_stats_mode(model, "frozen" if freeze else "auto")
    for _, site in optical_sites(model):
        site.check_ready()  # caches readiness on the host, so a compiled forward needs no sync
    return model
