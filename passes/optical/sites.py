"""State shared by every optical site module: range statistics, their mode, and the dither stream.

A site module is what the rewrite pass inserts in place of a matched op. Its state lives in
registered buffers (so it moves with ``.to()``, is saved in ``state_dict`` and survives
``torch.compile``); no statistic is kept in a closure or a global.

Statistics modes (``stats_mode``):
    ``auto``    update in training mode, never in eval mode (the default);
    ``observe`` always update (used by ``calibrate``);
    ``frozen``  never update (after ``calibrate``, unless asked otherwise).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from . import quant

STATS_MODES = ("auto", "observe", "frozen")
RANGE_METHODS = ("statistic", "mse")


class SiteBase(nn.Module):
    """Base of optical site modules: named [min, max] range buffers and a call counter."""

    kind: str = ""
    op: str = ""
    technology: str = ""

    def __init__(self, name: str, site_id: int, seed: int, smooth: float, quantiles):
        super().__init__()
        self.site_name = name
        self.site_id = site_id
        self.smooth = smooth
        self.quantiles = tuple(quantiles) if quantiles is not None else None
        self.stats_mode = "auto"
        self.range_method = "statistic"
        self.enabled = True  # False: compute the original op (for per-site sensitivity studies)
        self.range_names: list[str] = []
        self._ready: bool | None = None
        self.register_buffer("seed", torch.tensor(seed, dtype=torch.int64))
        self.register_buffer("counter", torch.tensor(0, dtype=torch.int64))
        # the site id as data, not a constant: compiled kernels are then shared by all sites
        self.register_buffer("site_index", torch.tensor(site_id, dtype=torch.int64), persistent=False)
        # the keys' base, from seed and site: kept, so that no call spends a kernel on it
        self.register_buffer("key_base", quant.stream_base(self.seed, site_id), persistent=False)
        self.clocked = False  # True: a DitherClock counts this site's calls (passes/optical/clock.py)
        self.register_load_state_dict_post_hook(_after_load)

    @property
    def stats_mode(self) -> str:
        return self._stats_mode

    @stats_mode.setter
    def stats_mode(self, mode: str) -> None:
        if mode not in STATS_MODES:
            raise ValueError(f"stats_mode must be one of {STATS_MODES}, got {mode!r}")
        self._stats_mode = mode

    def add_range(self, name: str, init: tuple[float, float] | None = None, channels: int | None = None) -> None:
        """Register buffer ``<name>_range`` ((2,), or (2, channels) for per-channel ranges);
        NaN until observed, unless `init` gives its starting value."""
        value = torch.tensor(init if init is not None else (float("nan"),) * 2, dtype=torch.float32)
        if channels is not None:
            value = value[:, None].repeat(1, channels)
        self.register_buffer(f"{name}_range", value)
        self.range_names.append(name)

    def range(self, name: str) -> Tensor:
        return getattr(self, f"{name}_range")

    def observing(self) -> bool:
        """Whether this call updates the statistics."""
        return self.stats_mode == "observe" or (self.stats_mode == "auto" and self.training)

    def observe(self, name: str, x: Tensor, lut_min: float | None = None) -> None:
        """Blend the range of `x` into ``<name>_range`` (EMA; the first observation initialises).

        The batch's range is its min/max or quantiles (``range_method == "statistic"``), or the
        clip range minimising the quantization MSE (``"mse"``; `lut_min` is the LUT floor of a
        weight-side operand, part of that error).
        """
        per_channel = self.range(name).dim() == 2
        with torch.no_grad():
            if self.range_method == "mse" and not per_channel:
                new = quant.mse_range(x, getattr(self, "levels", 256), lut_min)
            else:
                new = quant.batch_range(x, self.quantiles, per_channel)
            quant.ema_update(self.range(name), new, self.smooth)
        # `_ready` stays: an observed range is no longer NaN, so a passed check_ready still holds
        # (and under torch.compile, writing it would be replayed after every call)

    def check_ready(self) -> None:
        """Raise if a range was never observed (checked once, then cached on the host)."""
        if self._ready or torch.compiler.is_compiling():
            return  # (under compile the check ran before, in eager: calibrate ends with it)
        missing = [n for n in self.range_names if bool(torch.isnan(self.range(n)).any())]
        if missing:
            raise RuntimeError(
                f"optical site {self.site_name!r} has no statistics for {', '.join(missing)} (no input range "
                "observed yet): run optopass.calibrate(model, batches) or a training step before evaluating"
            )
        self._ready = True

    def _after_load(self) -> None:
        self._ready = None
        with torch.no_grad():
            self.key_base.copy_(quant.stream_base(self.seed, self.site_index))

    def draws_dither(self) -> bool:
        """Whether a call draws a dither stream (and so counts)."""
        return False

    def current_key(self) -> Tensor:
        """The dither key of this call: ``quant.stream_key(seed, site, counter)`` (0-d int64)."""
        return quant.key_at(self.key_base, self.counter)

    def counted(self) -> None:
        """Count this call if it drew a dither (the next call's key is then a new one), unless a
        DitherClock counts it after the forward."""
        if self.draws_dither() and not self.clocked:
            with torch.no_grad():
                self.counter.add_(1)

    def set_stats_mode(self, mode: str) -> None:
        self.stats_mode = mode

    def set_range_method(self, method: str) -> None:
        if method not in RANGE_METHODS:
            raise ValueError(f"range method must be one of {RANGE_METHODS}, got {method!r}")
        self.range_method = method

    def stats(self) -> dict[str, list[float]]:
        """The current ranges as plain lists (NaN where never observed)."""
        return {name: self.range(name).tolist() for name in self.range_names}

    def extra_repr(self) -> str:
        return f"site={self.site_name!r}, stats_mode={self.stats_mode}"


def _after_load(module: SiteBase, _incompatible_keys) -> None:
    """load_state_dict post-hook (a module-level function: a site module pickles)."""
    module._after_load()


def optical_sites(module: nn.Module):
    """Yield (qualified name, site) for every optical site module under `module`."""
    for name, sub in module.named_modules():
        if isinstance(sub, SiteBase):
            yield name, sub
