"""The Optical Transformer technology (Anderson et al., arXiv 2302.10360; mase-triton's op).

For ``fc`` (x·Wᵀ + b) and ``attn`` (a·b):
  1. quantize each input deterministically to ``q_levels`` levels over its range;
  2. LUT floor on the weight side (W for fc, Kᵀ and V for attn);
  3. matmul (with ``q_photons_per_mac`` set: the photon counts of a balanced detector pair,
     shot noise included), then quantize the output over its range with a per-element dither;
  4. add the bias (fc).
Gradients pass straight through every quantizer (STE).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import Tensor

from ...tools.checks import is_int, is_number
from ...tools.errors import ConfigError
from . import quant
from .kernels import KERNELS, MAX_LEVELS, runs_kernel
from .registry import register_site, register_technology
from .sites import RANGE_METHODS, SiteBase

TECHNOLOGY = "optical_transformer"
OUT_GRANULARITIES = ("tensor", "channel")
SIGNED_ENCODINGS = ("differential", "offset")


@register_technology(TECHNOLOGY)
@dataclass(frozen=True)
class OpticalTransformerParams:
    """Parameters of one Optical Transformer site (the reference study's YAML keys).

    Attributes:
        q_levels: quantization levels per operand (>= 2; 256 = 8 bits).
        q_lut_min: LUT floor as a fraction of the range on the weight side (>= 0), or None.
        q_quantiles: (lo, hi) quantiles in (0, 1) for the range statistics, or None for min/max.
        q_smooth_factor: EMA factor in [0, 1] of the range statistics.
        q_init_seed: seed of the output dither (>= 0).
        q_bypass: leave the site as the original op.
        q_dither: stochastic rounding of the output (the reference's behaviour); False rounds.
        q_range_method: how each batch's range is estimated: ``mse`` (the clip range minimising
            each operand's quantization error, LUT floor included, searched per site and
            operand) or ``statistic`` (min/max, or ``q_quantiles``: the reference study's op).
            Default (null): ``statistic`` when ``q_quantiles`` is given, else ``mse`` (on a
            pretrained MiniLM min/max ranges with the LUT floor lose much of the task score; docs/op.md).
        q_out_granularity: ``tensor`` (one output range per site; the reference) or ``channel``
            (``fc`` only: one output range per output feature, as per-channel detector gains
            would give; ranges are then min/max or quantiles per channel).
        q_photons_per_mac: mean detected photons per multiply-accumulate (> 0), or None (the
            default: no shot noise, the reference op). Set, each matmul output is the photon
            count of a balanced detector pair (operands on positive and negative rails), drawn
            from the Poisson distribution (``quant.shot_noise``), before the output ADC.
        q_detector_noise: additive detector noise floor in photons rms per detector (>= 0), or
            None; needs ``q_photons_per_mac``.
        q_signed_encoding: how signed operands become light with ``q_photons_per_mac``:
            ``differential`` (the default: positive and negative rails read by a balanced detector
            pair; the photon means need the matmul over |operands|) or ``offset`` (each operand
            shifted by its range's negative end to be non-negative, one detector, the offset
            products subtracted in electronics from row and column sums; more light per signal,
            no second matmul).
    """

    q_levels: int = 256
    q_lut_min: float | None = 0.020040
    q_quantiles: tuple[float, float] | None = None
    q_smooth_factor: float = 0.9
    q_init_seed: int = 0
    q_bypass: bool = False
    q_dither: bool = True
    q_range_method: str | None = None
    q_out_granularity: str = "tensor"
    q_photons_per_mac: float | None = None
    q_detector_noise: float | None = None
    q_signed_encoding: str = "differential"

    def __post_init__(self):
        if not is_int(self.q_levels) or self.q_levels < 2:
            raise ConfigError(f"q_levels: must be an integer >= 2, got {self.q_levels!r}")
        if self.q_lut_min is not None:
            if not is_number(self.q_lut_min) or not 0 <= self.q_lut_min < 1:
                raise ConfigError(f"q_lut_min: must be a number in [0, 1) or null, got {self.q_lut_min!r}")
            object.__setattr__(self, "q_lut_min", float(self.q_lut_min))
        if self.q_quantiles is not None:
            q = self.q_quantiles
            if not isinstance(q, (list, tuple)) or len(q) != 2 or not all(is_number(v) for v in q):
                raise ConfigError(f"q_quantiles: must be null or a pair [lo, hi], got {q!r}")
            if not 0 < q[0] < q[1] < 1:
                raise ConfigError(f"q_quantiles: must satisfy 0 < lo < hi < 1, got {list(q)!r}")
            object.__setattr__(self, "q_quantiles", (float(q[0]), float(q[1])))
        if not is_number(self.q_smooth_factor) or not 0 <= self.q_smooth_factor <= 1:
            raise ConfigError(f"q_smooth_factor: must be a number in [0, 1], got {self.q_smooth_factor!r}")
        object.__setattr__(self, "q_smooth_factor", float(self.q_smooth_factor))
        if not is_int(self.q_init_seed) or self.q_init_seed < 0:
            raise ConfigError(f"q_init_seed: must be an integer >= 0, got {self.q_init_seed!r}")
        if self.q_range_method is None:
            object.__setattr__(self, "q_range_method", "statistic" if self.q_quantiles is not None else "mse")
        if self.q_range_method not in RANGE_METHODS:
            raise ConfigError(f"q_range_method: must be one of {', '.join(RANGE_METHODS)}, got {self.q_range_method!r}")
        if self.q_out_granularity not in OUT_GRANULARITIES:
            raise ConfigError(f"q_out_granularity: must be one of {', '.join(OUT_GRANULARITIES)}, got {self.q_out_granularity!r}")
        if self.q_photons_per_mac is not None:
            if not is_number(self.q_photons_per_mac) or not 0 < self.q_photons_per_mac < math.inf:
                raise ConfigError(f"q_photons_per_mac: must be a number > 0 (mean detected photons per MAC) or null, "
                                  f"got {self.q_photons_per_mac!r}")
            object.__setattr__(self, "q_photons_per_mac", float(self.q_photons_per_mac))
        if self.q_detector_noise is not None:
            if not is_number(self.q_detector_noise) or not 0 <= self.q_detector_noise < math.inf:
                raise ConfigError(f"q_detector_noise: must be a number >= 0 (photons rms per detector) or null, "
                                  f"got {self.q_detector_noise!r}")
            if self.q_photons_per_mac is None:
                raise ConfigError("q_detector_noise: needs q_photons_per_mac (the noise floor is counted in photons)")
            object.__setattr__(self, "q_detector_noise", float(self.q_detector_noise))
        if self.q_signed_encoding not in SIGNED_ENCODINGS:
            raise ConfigError(f"q_signed_encoding: must be one of {', '.join(SIGNED_ENCODINGS)}, "
                              f"got {self.q_signed_encoding!r}")
        for name in ("q_bypass", "q_dither"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}: must be true or false, got {getattr(self, name)!r}")

    @property
    def bypass(self) -> bool:
        return self.q_bypass


class _OTSite(SiteBase):
    technology = TECHNOLOGY

    def __init__(self, params: OpticalTransformerParams, name: str, site_id: int):
        super().__init__(name, site_id, params.q_init_seed, params.q_smooth_factor, params.q_quantiles)
        self.levels = params.q_levels
        self.lut_min = params.q_lut_min
        self.dither = params.q_dither
        self.range_method = params.q_range_method
        self.photons_per_mac = params.q_photons_per_mac
        self.detector_noise = params.q_detector_noise
        self.offset_encoding = params.q_signed_encoding == "offset"

    def _prepare(self) -> bool:
        observing = self.observing()
        if not observing:
            self.check_ready()
        return observing

    def _quantize_out(self, y: Tensor, counter: Tensor | None = None) -> Tensor:
        """Output quantization with this call's per-element dither (one kernel in eager code).
        `counter`: the call counter to draw with, given by a caller that counts the call itself
        (OTAttention's recomputed core); None: this site's counter, and the call is counted."""
        own = counter is None
        counter = self.counter if own else counter
        q = quant.site_dither_quantize(y, self.range("out"), self.levels, self.key_base,
                                       counter if self.dither else None)
        if own:
            self.counted()
        return quant.ste(y, q)

    def _detect(self, y: Tensor, a: Tensor, b: Tensor, a_range: Tensor, b_range: Tensor,
                counter: Tensor | None = None) -> Tensor:
        """The matmul output ``y = a @ b`` (quantized operands in `a_range`, `b_range`) as the
        detectors count it (shot noise, optional detector floor), when ``photons_per_mac`` is set;
        `counter` the call counter (None: this site's). Gradients pass straight through to `y`."""
        counter = self.counter if counter is None else counter
        a, b, y0 = a.detach(), b.detach(), y.detach()
        depth = a.shape[-1]
        if self.offset_encoding:
            light = quant.offset_light(y0, a, b, a_range, b_range)
        else:
            light = torch.matmul(a.abs(), b.abs())  # both rails' light: sum |a| |b|
        s = quant.photons_per_unit(light, self.photons_per_mac, depth)
        args = (y0, light, s, self.detector_noise, self.key_base, counter, self.offset_encoding)
        if self.uses_readout_kernel(y):
            from .kernels.ops import readout

            noisy = readout(*args)
        else:
            noisy = quant.shot_noise_fused(*args)
        return quant.ste(y, noisy)

    # ``auto``: the shot-noise read-out runs as one Triton kernel (kernels/readout.py: the Poisson
    # inversion only in blocks that hold a mean under 10 photons; one operator that torch.compile
    # keeps whole) on a GPU, as torch ops elsewhere and under torch.export; ``fused``: the kernel
    # everywhere (on a CPU in Triton's interpreter); ``unfused``: torch ops always.
    readout_kernel = "auto"

    def uses_readout_kernel(self, y: Tensor) -> bool:
        return runs_kernel(self.readout_kernel, "readout_kernel", y)

    def draws_dither(self) -> bool:
        return self.enabled and (self.dither or self.photons_per_mac is not None)

    def extra_repr(self) -> str:
        noise = "" if self.photons_per_mac is None else f", photons_per_mac={self.photons_per_mac}"
        if self.detector_noise is not None:
            noise += f", detector_noise={self.detector_noise}"
        return f"{super().extra_repr()}, levels={self.levels}, lut_min={self.lut_min}, dither={self.dither}{noise}"


class OTLinear(_OTSite):
    """Optical linear: ``Q_out(Q_x(x) · LUT(Q_w(W))ᵀ) + b``."""

    kind, op = "fc", "linear"

    def __init__(self, params: OpticalTransformerParams, name: str, site_id: int, out_features: int | None = None):
        super().__init__(params, name, site_id)
        self.add_range("x")
        self.add_range("w")
        per_channel = params.q_out_granularity == "channel"
        if per_channel and out_features is None:
            raise ValueError("per-channel output ranges need out_features")
        self.add_range("out", channels=out_features if per_channel else None)
        self._w_cache: tuple | None = None
        # True (passes/optical/fold.py): the attention before this linear quantizes its output to
        # this site's input range, unless this site observes; the linear then takes it as it is
        self.input_quantized = False

    def forward(self, x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
        if not self.enabled:
            return F.linear(x, weight, bias)
        observing = self._prepare()
        if observing:
            self.observe("x", x)
            self.observe("w", weight, self.lut_min)
        if self.input_quantized and not observing:
            xq = x  # quantized to this site's input range by the attention that produced it
        else:
            xq = self.quantize_input(x)
        wq = self._weight_q(weight, observing)
        y = F.linear(xq, wq)
        if self.photons_per_mac is not None:
            y = self._detect(y, xq, wq.transpose(-2, -1), self.range("x"), self.range("w"))
        if observing:
            self.observe("out", y)
        y = self._quantize_out(y)
        # in y's dtype, as autocast's linear adds it: a float32 bias on a bfloat16 output would
        # promote every activation after it to float32 (the attention's operands included)
        return y if bias is None else y + bias.to(y.dtype)

    def train(self, mode: bool = True) -> "OTLinear":
        """Also empties the eager weight cache on entering training: a training step can change the
        weight without changing the cache's key (a compiled step bypasses the cache, and the
        optimizer's update after it was measured to leave the weight's version as it was)."""
        if mode:
            self._w_cache = None
        return super().train(mode)

    def quantize_input(self, x: Tensor) -> Tensor:
        """This site's input quantization (straight-through): here, or in the attention that
        produces `x` when the fold links them (passes/optical/fold.py)."""
        return quant.ste(x, quant.quantize_fused(x, self.range("x"), self.levels))

    def _weight_q(self, weight: Tensor, observing: bool) -> Tensor:
        """Quantized weight; cached in eager eval, where neither weight nor range changes.

        Under torch.compile the cache is neither read nor written: a write would be replayed
        after every call, and a read would guard the graph on the cache's contents (an eager
        call before compiling fills it, the compiled call empties it: one more compile)."""
        if torch.compiler.is_compiling():
            return quant.ste(weight, quant.quantize_fused(weight, self.range("w"), self.levels, self.lut_min))
        cacheable = not (observing or torch.is_grad_enabled())
        key = (weight.data_ptr(), weight._version, self.w_range._version, weight.dtype) if cacheable else None
        if key is not None and self._w_cache is not None and self._w_cache[0] == key:
            return self._w_cache[1]
        wq = quant.ste(weight, quant.quantize_fused(weight, self.range("w"), self.levels, self.lut_min))
        self._w_cache = (key, wq) if key is not None else None
        return wq


class OTMatmul(_OTSite):
    """Optical matmul: ``Q_out(Q_a(a) · LUT(Q_b(b)))`` (b is Kᵀ or V)."""

    kind, op = "attn", "matmul"

    def __init__(self, params: OpticalTransformerParams, name: str, site_id: int, a_init=None):
        super().__init__(params, name, site_id)
        self.add_range("a", a_init)
        self.add_range("b")
        self.add_range("out")

    def forward(self, a: Tensor, b: Tensor, counter: Tensor | None = None) -> Tensor:
        """`counter`: the call counter to draw with, from a caller that counts the call itself
        (OTAttention's recomputed core); None: this site's, and the call is counted here."""
        if not self.enabled:
            return torch.matmul(a, b)
        observing = self._prepare()
        if observing:
            self.observe("a", a)
            self.observe("b", b, self.lut_min)
        aq = quant.ste(a, quant.quantize_fused(a, self.range("a"), self.levels))
        bq = quant.ste(b, quant.quantize_fused(b, self.range("b"), self.levels, self.lut_min))
        y = torch.matmul(aq, bq)
        if self.photons_per_mac is not None:
            y = self._detect(y, aq, bq, self.range("a"), self.range("b"), counter)
        if observing:
            self.observe("out", y)
        return self._quantize_out(y, counter)


class OTAttention(torch.nn.Module):
    """Scaled-dot-product attention with both matmuls optical:
    ``Q·Kᵀ`` (optical) -> scale -> mask -> softmax -> dropout (training) -> ``P·V`` (optical).

    ``kernel``: ``auto`` (the default) runs a calibrated forward without gradients on a GPU as
    one fused Triton kernel (kernels/attention.py: neither scores nor probabilities are written
    to memory), everything else (observing, training, gradients, CPU, causal) as the composed
    ops below; ``fused`` asks for the kernel wherever it applies (on a CPU through Triton's
    interpreter), ``unfused`` never uses it.
    """

    kind, op = "attn", "attention"

    def __init__(self, params: OpticalTransformerParams, name: str, site_id: int):
        super().__init__()
        self.site_name = name
        self.qk = OTMatmul(params, f"{name}.qk", site_id)
        self.pv = OTMatmul(params, f"{name}.pv", site_id + 1, a_init=(0.0, 1.0))
        self.kernel = "auto"
        # True: a call that takes a gradient keeps only its operands for the backward and
        # recomputes the rest there (as a fused attention's backward does); False: autograd keeps
        # the scores and probabilities of every call until the backward
        self.recompute = True
        object.__setattr__(self, "_out_site", None)  # passes/optical/fold.py; not a submodule

    @property
    def out_site(self) -> "OTLinear | None":
        """The linear that takes this attention's output (through layout ops only) and whose input
        quantization this attention then applies (passes/optical/fold.py), or None."""
        return self._out_site

    def quantizes_output(self) -> bool:
        """Whether this call quantizes its output to the input range of `out_site` (the elementwise
        quantization commutes with the layout ops between them): in the fused kernel that is its
        epilogue, instead of a pass over memory of its own."""
        site = self._out_site
        return site is not None and site.enabled and site.input_quantized and not site.observing()

    def _out_quant_site(self) -> "OTLinear | None":
        """`out_site` when this call quantizes its output (its ranges checked), else None."""
        if not self.quantizes_output():
            return None
        self._out_site.check_ready()
        return self._out_site

    @property
    def kernel(self) -> str:
        return self._kernel

    @kernel.setter
    def kernel(self, value: str) -> None:
        if value not in KERNELS:
            raise ValueError(f"OTAttention.kernel must be one of {', '.join(KERNELS)}, got {value!r}")
        self._kernel = value

    def _fusable(self, query, key, value, attn_mask, dropout_p, is_causal) -> bool:
        if self.kernel == "unfused" or (self.kernel == "auto" and query.device.type != "cuda"):
            return False
        if not (self.qk.enabled and self.pv.enabled) or self.qk.observing() or self.pv.observing():
            return False
        if self.qk.photons_per_mac is not None or self.pv.photons_per_mac is not None:
            return False  # shot noise runs in the composed ops
        if is_causal or (self.training and dropout_p > 0) or max(query.shape[-1], value.shape[-1]) > 256:
            return False
        if torch.is_grad_enabled() and any(t.requires_grad for t in (query, key, value)):
            return False
        if query.dim() != 4 or not query.dtype == key.dtype == value.dtype or self.qk.levels > MAX_LEVELS:
            return False
        if self.quantizes_output() and self._out_site.levels > MAX_LEVELS:
            return False
        return attn_mask is None or attn_mask.dtype == torch.bool or attn_mask.is_floating_point()

    def _fused(self, query, key, value, attn_mask, scale):
        from .kernels import ops  # imports Triton: only once a fused call happens

        qk, pv = self.qk, self.pv
        qk.check_ready()
        pv.check_ready()
        # the operands' quantization is elementwise: under compile it fuses into their producers
        qq = quant.quantize_fused(query, qk.range("a"), qk.levels).to(query.dtype)
        kq = quant.quantize_fused(key, qk.range("b"), qk.levels, qk.lut_min).to(key.dtype)
        vq = quant.quantize_fused(value, pv.range("b"), pv.levels, pv.lut_min).to(value.dtype)
        rows = [qk.range("out"), pv.range("a"), pv.range("out")]
        out_levels = 0
        if (site := self._out_quant_site()) is not None:
            rows.append(site.range("x"))
            out_levels = site.levels
        dither = qk.dither or pv.dither  # one config for both sites of an attention
        # the keys (quant.key_at of each site's base and counter) are derived in the kernel
        out = ops.ot_attention(qq, kq, vq, attn_mask, float(scale), torch.stack(rows), qk.key_base, pv.key_base,
                               qk.counter, pv.counter, qk.levels, dither, out_levels)
        qk.counted()
        pv.counted()
        return out

    def forward(self, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
        scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
        if enable_gqa and key.shape[-3] != query.shape[-3]:
            repeat = query.shape[-3] // key.shape[-3]
            key = key.repeat_interleave(repeat, dim=-3)
            value = value.repeat_interleave(repeat, dim=-3)
        if self._fusable(query, key, value, attn_mask, dropout_p, is_causal):
            return self._fused(query, key, value, attn_mask, scale)
        if self._recomputes(query, key, value):
            # the core's sequence-squared intermediates (scores, probabilities, their quantized
            # copies, the dropout mask) are not kept for the backward: it recomputes them from the
            # operands, with the call counters of this forward (and its RNG state), so the same values
            counters = (self.qk.counter.clone(), self.pv.counter.clone())
            out = torch.utils.checkpoint.checkpoint(self._core, query, key, value, attn_mask, dropout_p, is_causal,
                                                    scale, *counters, use_reentrant=False)
            self.qk.counted()
            self.pv.counted()
        else:
            out = self._core(query, key, value, attn_mask, dropout_p, is_causal, scale)
        if (site := self._out_quant_site()) is not None:
            out = site.quantize_input(out)
        return out

    def _recomputes(self, query, key, value) -> bool:
        """Whether this call's core is recomputed in the backward (``recompute``): a gradient is
        taken and no statistics are observed (observing changes the ranges as it goes)."""
        if not self.recompute or not torch.is_grad_enabled() or not any(t.requires_grad for t in (query, key, value)):
            return False
        return self.qk.enabled and self.pv.enabled and not (self.qk.observing() or self.pv.observing())

    def _core(self, query, key, value, attn_mask, dropout_p, is_causal, scale, counter_qk=None, counter_pv=None):
        """Both optical matmuls and the softmax between them (the composed ops)."""
        scores = self.qk(query, key.transpose(-2, -1), counter_qk) * scale
        if is_causal:
            causal = torch.ones(scores.shape[-2:], dtype=torch.bool, device=scores.device).tril()
            scores = scores.masked_fill(~causal, float("-inf"))
        if attn_mask is not None:
            if attn_mask.dtype == torch.bool:
                scores = scores.masked_fill(~attn_mask, float("-inf"))
            else:
                scores = scores + attn_mask
        probs = torch.softmax(scores.float(), dim=-1).to(query.dtype)
        if self.training and dropout_p > 0:
            probs = F.dropout(probs, dropout_p)
        return self.pv(probs, value, counter_pv)


@register_site(TECHNOLOGY, "linear")
def make_linear(params: OpticalTransformerParams, name: str, site_id: int, match=None) -> OTLinear:
    weight = match.args[1].meta.get("val") if match is not None and hasattr(match.args[1], "meta") else None
    return OTLinear(params, name, site_id, out_features=None if weight is None else int(weight.shape[0]))


@register_site(TECHNOLOGY, "matmul")
def make_matmul(params: OpticalTransformerParams, name: str, site_id: int, match=None) -> OTMatmul:
    a_init = (0.0, 1.0) if match is not None and match.role == "pv" else None
    return OTMatmul(params, name, site_id, a_init=a_init)


@register_site(TECHNOLOGY, "attention")
def make_attention(params: OpticalTransformerParams, name: str, site_id: int, match=None) -> OTAttention:
    return OTAttention(params, name, site_id)
