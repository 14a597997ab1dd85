"""The energy account of an optical model: how many photons and joules one inference needs.

Counts come from one forward pass of the captured graph on an example batch, run by an fx
Interpreter that computes every optical site as its exact op (no calibration is needed and no
site's state changes) and records the shapes it sees. Prices come from the hardware section
(tools/hardware.py; equations, defaults and their sources in docs/energy.md).

Per optical matmul (an ``fc`` linear, or one of an attention's ``Q·Kᵀ`` and ``P·V``)::

    MACs          = output elements x contracted dimension
    E_optical     = MACs x N_ph x h c / lambda / (eta_laser x eta_link)
    E_DAC         = input operand elements x dac_energy_pj        (x for fc; both operands for attn)
    E_ADC         = output elements x adc_energy_pj
    E_weight_load = weight elements x weight_load_energy_pj        (fc; once per forward, per batch)

The digital work left (softmax, LayerNorm, activations, residual and bias adds, embedding
gathers, the linears left digital) costs ``digital_energy_per_op_pj`` per elementwise operation
(operations per element as the DeepSpeed flops profiler counts them), the digital reference's
energy per MAC for its matmuls, and ``memory_energy_per_byte_pj`` per byte it reads and writes.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.fx
import torch.nn.functional as F
from torch import Tensor, nn

from .config import load_hardware
from .hardware import HardwareParams
from .io import write_file_atomically

PLANCK_J_S = 6.62607015e-34  # h, exact in the SI since 2019 (CODATA 2018)
SPEED_OF_LIGHT_M_S = 299_792_458.0  # c, exact

CATEGORIES = ("optical", "dac", "adc", "weight_load", "digital_compute", "digital_memory")
CATEGORY_LABELS = {"optical": "optical", "dac": "DAC", "adc": "ADC", "weight_load": "weight loads",
                   "digital_compute": "digital compute", "digital_memory": "digital memory"}

aten = torch.ops.aten
# aten op -> (op class, operations per output element), as the DeepSpeed flops profiler counts
# them (deepspeed/profiling/flops_profiler/profiler.py: LayerNorm with affine 5, others 1)
ELEMENTWISE_OPS = {
    **{op: ("elementwise", 1) for op in (aten.add, aten.sub, aten.rsub, aten.mul, aten.div, aten.neg, aten.pow,
                                          aten.sqrt, aten.rsqrt, aten.exp, aten.masked_fill, aten.where)},
    **{op: ("activation", 1) for op in (aten.gelu, aten.tanh, aten.relu, aten.silu, aten.sigmoid, aten.erf)},
    aten.softmax: ("softmax", 1),
    aten._softmax: ("softmax", 1),
    aten.layer_norm: ("layer_norm", 5),
    aten.native_layer_norm: ("layer_norm", 5),
    aten.embedding: ("embedding", 0),  # a gather: bytes only
}
# aten op -> index of its left operand; MACs = output elements x that operand's last dimension
MATMUL_OPS = {aten.linear: 0, aten.matmul: 0, aten.mm: 0, aten.bmm: 0, aten.addmm: 1, aten.baddbmm: 1}
# ops that do no arithmetic: views, layout copies, tensor creation
FREE_OPS = {aten.zeros, aten.ones, aten.full, aten.empty, aten.zeros_like, aten.ones_like, aten.full_like,
            aten.new_zeros, aten.new_ones, aten.new_full, aten.new_empty, aten.scalar_tensor, aten.arange,
            aten.view, aten.reshape, aten._unsafe_view, aten.transpose, aten.permute, aten.expand,
              aten.unsqueeze, aten.squeeze, aten.contiguous, aten.clone, aten.slice, aten.select, aten.t,
              aten.to, aten._to_copy, aten.detach, aten.alias, aten.dropout, aten.split, aten.chunk,
              aten.unbind, aten.flatten, aten.repeat_interleave, aten.lift_fresh_copy}
_LAYER = re.compile(r"(?:^|\.)(?:layer|layers|h|block|blocks)\.(\d+)(?:\.|$)")


def photon_energy_j(wavelength_nm: float) -> float:
    """E = h c / lambda, J."""
    return PLANCK_J_S * SPEED_OF_LIGHT_M_S / (wavelength_nm * 1e-9)


def optical_energy_per_mac_j(photons_per_mac: float, hardware: HardwareParams) -> float:
    """Wall-plug energy of the light one MAC needs: N_ph h c / lambda / (eta_laser eta_link), J."""
    return photons_per_mac * photon_energy_j(hardware.wavelength_nm) / (
        hardware.laser_wall_plug_efficiency * hardware.optical_link_efficiency)


# ------------------------------------------------------------------------------------------------
# Counts (one forward of the batch)


@dataclass(frozen=True)
class SiteCounts:
    """One optical matmul's work in one forward pass of the batch.

    Attributes:
        site: site name (``....attention.self.qk`` for an attention's matmuls).
        kind: ``fc`` or ``attn``.
        technology: the technology that simulates it.
        op: ``linear`` or ``matmul``.
        group: the layer it belongs to (``layer 3``, ``embeddings``, ``pooler``, ...).
        macs: multiply-accumulates done optically.
        reference_macs: the MACs a dense digital processor does for the same op.
        dac_conversions: input operand elements converted to analog.
        adc_conversions: output elements converted to digital.
        weight_loads: weight elements programmed (fc; 0 for attention, whose operands are DAC inputs).
        dac_bits / adc_bits: converter resolution the site simulates (None: not simulated).
        photons_per_mac: the site's own detected photons per MAC, or None (shot noise off).
    """

    site: str
    kind: str
    technology: str
    op: str
    group: str
    macs: int
    reference_macs: int
    dac_conversions: int
    adc_conversions: int
    weight_loads: int
    dac_bits: float | None
    adc_bits: float | None
    photons_per_mac: float | None


@dataclass(frozen=True)
class DigitalCounts:
    """One digital op's work in one forward pass of the batch (``op_class``: ``softmax``,
    ``layer_norm``, ``activation``, ``elementwise``, ``embedding`` or ``linear``)."""

    name: str
    op_class: str
    group: str
    ops: int
    macs: int
    bytes_moved: int


class _Counter(torch.fx.Interpreter):
    """Runs the graph once, each optical site as its exact op, and records what each op does."""

    def __init__(self, gm: torch.fx.GraphModule, sites: dict[str, Any], prefix: str | None):
        super().__init__(gm)
        self.site_records = sites  # module name -> the rewrite's SiteRecord
        self.prefix = prefix
        self.sites: list[SiteCounts] = []
        self.digital: list[DigitalCounts] = []
        self.uncounted: Counter = Counter()
        self.groups: dict[str, None] = {}  # in the order the forward reaches them
        self._node: torch.fx.Node | None = None

    def run_node(self, n: torch.fx.Node):
        self._node = n
        return super().run_node(n)

    def call_module(self, target, args, kwargs):
        from ..passes.optical.clock import DitherClock
        from ..passes.train_mode import ModeAwareSDPA

        module = self.fetch_attr(target)
        if target in self.site_records:
            return self._optical(module, self.site_records[target], args, kwargs)
        if isinstance(module, DitherClock):
            return None  # it would count dither draws that did not happen
        if isinstance(module, ModeAwareSDPA):
            out = super().call_module(target, args, kwargs)
            self._digital_attention(_sdpa_operands(args, kwargs), self._group_of_node())
            return out
        return super().call_module(target, args, kwargs)

    def call_function(self, target, args, kwargs):
        out = super().call_function(target, args, kwargs)
        packet = getattr(target, "overloadpacket", None)
        first = out[0] if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor) else out
        if packet is None or packet in FREE_OPS or not isinstance(first, Tensor) or not first.is_floating_point():
            return out  # python operators, views, integer index and mask arithmetic
        group = self._group_of_node()
        if packet in MATMUL_OPS:
            left = args[MATMUL_OPS[packet]]
            self._add_digital("linear", group, ops=0, macs=first.numel() * left.shape[-1], bytes_moved=0)
        elif packet in ELEMENTWISE_OPS:
            op_class, per_element = ELEMENTWISE_OPS[packet]
            moved = 2 * first.nbytes if op_class == "embedding" else _nbytes((args, kwargs)) + first.nbytes
            self._add_digital(op_class, group, ops=per_element * first.numel(), macs=0, bytes_moved=moved)
        else:
            self.uncounted[str(packet)] += 1
        return out

    # -- optical sites ---------------------------------------------------------------------------

    def _optical(self, module: nn.Module, record, args, kwargs):
        group = self._seen(_group(record.origin, self.prefix))
        if record.op == "linear":
            x, weight, bias = _bind(args, kwargs, ("x", "weight", "bias"))
            out = F.linear(x, weight, bias)
            self.sites.append(_linear_counts(module, record, group, x, weight, out))
            if bias is not None:  # added after the ADC
                self._add_digital("elementwise", group, ops=out.numel(), macs=0, bytes_moved=2 * out.nbytes + bias.nbytes)
            return out
        if record.op == "matmul":
            a, b = _bind(args, kwargs, ("a", "b"))
            out = torch.matmul(a, b)
            self.sites.append(_matmul_counts(module, record, record.site, group, a, b, out))
            return out
        operands = _sdpa_operands(args, kwargs)
        q, k, v = operands["query"], operands["key"], operands["value"]
        if operands["enable_gqa"] and k.shape[-3] != q.shape[-3]:
            k = k.repeat_interleave(q.shape[-3] // k.shape[-3], dim=-3)
            v = v.repeat_interleave(q.shape[-3] // v.shape[-3], dim=-3)
        scores = q.new_empty(*q.shape[:-1], k.shape[-2])
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=operands["attn_mask"], is_causal=operands["is_causal"],
                                             scale=operands["scale"])
        for name, a, b, y in (("qk", q, k.transpose(-2, -1), scores), ("pv", scores, v, out)):
            leaf = getattr(module, name, module)
            self.sites.append(_matmul_counts(leaf, record, f"{record.site}.{name}", group, a, b, y))
        self._attention_digital(scores, operands, group)
        return out

    # -- digital work ----------------------------------------------------------------------------

    def _digital_attention(self, operands: dict, group: str) -> None:
        """A digital SDPA: both matmuls at the digital reference, and the softmax around them."""
        q, k, v = operands["query"], operands["key"], operands["value"]
        scores = q.new_empty(*q.shape[:-1], k.shape[-2])
        self._add_digital("linear", group, ops=0, macs=scores.numel() * q.shape[-1], bytes_moved=0)
        self._add_digital("linear", group, ops=0, macs=scores.numel() * v.shape[-1], bytes_moved=0)
        self._attention_digital(scores, operands, group)

    def _attention_digital(self, scores: Tensor, operands: dict, group: str) -> None:
        """Between Q·Kᵀ and P·V: the scale, the mask (causal or given) and the softmax."""
        n, moved = scores.numel(), 2 * scores.nbytes
        self._add_digital("elementwise", group, ops=n, macs=0, bytes_moved=moved)  # x scale
        mask = operands["attn_mask"]
        if mask is not None or operands["is_causal"]:
            extra = _nbytes(mask)
            self._add_digital("elementwise", group, ops=n, macs=0, bytes_moved=moved + extra)
        self._add_digital("softmax", group, ops=n, macs=0, bytes_moved=moved)

    def _add_digital(self, op_class: str, group: str, ops: int, macs: int, bytes_moved: int) -> None:
        name = self._node.name if self._node is not None else op_class
        self.digital.append(DigitalCounts(name, op_class, group, int(ops), int(macs), int(bytes_moved)))

    def _group_of_node(self) -> str:
        stack = self._node.meta.get("nn_module_stack") if self._node is not None else None
        return self._seen(_group(str(list(stack.values())[-1][0]), self.prefix) if stack else "other")

    def _seen(self, group: str) -> str:
        self.groups.setdefault(group)
        return group


def _bind(args, kwargs, names):
    values = dict(zip(names, args))
    values.update({k: v for k, v in kwargs.items() if k in names})
    return tuple(values.get(n) for n in names)


def _sdpa_operands(args, kwargs) -> dict:
    names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")
    values = dict(zip(names, _bind(args, kwargs, names)))
    values["is_causal"] = bool(values["is_causal"])
    values["enable_gqa"] = bool(values["enable_gqa"])
    return values


def _nbytes(tree) -> int:
    total = 0

    def add(value):
        nonlocal total
        if isinstance(value, Tensor):  # an expanded (broadcast) view is read from its storage
            total += min(value.nbytes, value.untyped_storage().nbytes())
        return value

    torch.fx.node.map_aggregate(tree, add)
    return total


def _converter_bits(site: nn.Module) -> tuple[float | None, float | None]:
    """(DAC bits, ADC bits) the site simulates: log2 of its levels, or its input bits."""
    levels = getattr(site, "levels", None)
    if levels:
        return math.log2(levels), math.log2(levels)
    params = getattr(site, "params", None)
    return getattr(params, "in_bits", None), getattr(params, "out_bits", None)


def _photons(site: nn.Module) -> float | None:
    value = getattr(site, "photons_per_mac", None)
    return None if value is None else float(value)


def _linear_counts(site, record, group: str, x: Tensor, weight: Tensor, out: Tensor) -> SiteCounts:
    out_features, in_features = weight.shape
    tokens = x.numel() // in_features
    miniblock = getattr(getattr(site, "params", None), "miniblock", None)
    if miniblock:  # block-circulant (SqueezeLight): padded k x k blocks, 2 rails of k generators each
        rows, cols = -(-out_features // miniblock), -(-in_features // miniblock)
        macs, loads = tokens * rows * cols * miniblock**2, 2 * rows * cols * miniblock
    else:
        macs, loads = tokens * in_features * out_features, weight.numel()
    dac_bits, adc_bits = _converter_bits(site)
    return SiteCounts(record.site, record.kind, record.technology, "linear", group, int(macs),
                      int(tokens * in_features * out_features), x.numel(), out.numel(), int(loads),
                      dac_bits, adc_bits, _photons(site))


def _matmul_counts(site, record, name: str, group: str, a: Tensor, b: Tensor, out: Tensor) -> SiteCounts:
    macs = out.numel() * a.shape[-1]
    dac_bits, adc_bits = _converter_bits(site)
    return SiteCounts(name, record.kind, record.technology, "matmul", group, int(macs), int(macs),
                      a.numel() + b.numel(), out.numel(), 0, dac_bits, adc_bits, _photons(site))


def _group(path: str, prefix: str | None) -> str:
    """The layer a module path belongs to: ``layer N``, else its first component below the
    base model (``embeddings``, ``pooler``, ``classifier``)."""
    found = _LAYER.search(path)
    if found:
        return f"layer {found.group(1)}"
    parts = [p for p in path.split(".") if p]
    if prefix and parts and parts[0] == prefix:
        parts = parts[1:]  # below the base model; its own ops (e.g. the mask's) are "other"
    return parts[0] if parts else "other"


# ------------------------------------------------------------------------------------------------
# Prices


@dataclass(frozen=True)
class SiteEnergy:
    """A site's counts and energies (J per forward pass of the batch).

    ``photons_per_mac`` is the value priced; ``photons_from`` says where it came from
    (``site``: the op's configured photons per MAC; ``hardware default``: the hardware section's,
    for a site with shot noise off)."""

    counts: SiteCounts
    photons_per_mac: float
    photons_from: str
    optical_j: float
    dac_j: float
    adc_j: float
    weight_load_j: float

    @property
    def total_j(self) -> float:
        return self.optical_j + self.dac_j + self.adc_j + self.weight_load_j


@dataclass(frozen=True)
class EnergyReport:
    """Where the energy of one forward pass of `batch` sequences of `seq_len` tokens goes.

    Energies are in joules per forward pass of the whole batch; ``per_inference`` divides by
    ``batch`` (one sequence), ``per_token`` by ``batch * seq_len``. Weight loads happen once per
    forward pass, so per inference they are amortised over the batch's sequences.
    """

    batch: int
    seq_len: int
    hardware: HardwareParams
    sites: tuple[SiteEnergy, ...]
    digital: tuple[DigitalCounts, ...]
    uncounted_ops: dict[str, int] = field(default_factory=dict)
    groups: tuple[str, ...] = ()

    @property
    def tokens(self) -> int:
        return self.batch * self.seq_len

    def digital_energy_j(self, row: DigitalCounts) -> tuple[float, float]:
        """(compute, memory) energy of one digital op, J."""
        hw = self.hardware
        compute = row.ops * hw.digital_energy_per_op_pj * 1e-12 + row.macs * hw.digital_reference_energy_per_mac_fj * 1e-15
        return compute, row.bytes_moved * hw.memory_energy_per_byte_pj * 1e-12

    def by_group(self) -> dict[str, dict[str, float]]:
        """group (``layer 0``, ``embeddings``, ...) -> category -> J per forward, in model order."""
        out: dict[str, dict[str, float]] = {g: dict.fromkeys(CATEGORIES, 0.0) for g in self.groups}
        for s in self.sites:
            cell = out.setdefault(s.counts.group, dict.fromkeys(CATEGORIES, 0.0))
            for cat, value in (("optical", s.optical_j), ("dac", s.dac_j), ("adc", s.adc_j), ("weight_load", s.weight_load_j)):
                cell[cat] += value
        for row in self.digital:
            cell = out.setdefault(row.group, dict.fromkeys(CATEGORIES, 0.0))
            compute, memory = self.digital_energy_j(row)
            cell["digital_compute"] += compute
            cell["digital_memory"] += memory
        return out

    def totals_j(self) -> dict[str, float]:
        """category -> J per forward pass of the batch."""
        totals = dict.fromkeys(CATEGORIES, 0.0)
        for cell in self.by_group().values():
            for cat, value in cell.items():
                totals[cat] += value
        return totals

    def digital_by_class(self) -> dict[str, dict[str, float]]:
        """op class -> {ops, macs, bytes, compute_j, memory_j} per forward."""
        out: dict[str, dict[str, float]] = {}
        for row in self.digital:
            cell = out.setdefault(row.op_class, {"ops": 0, "macs": 0, "bytes": 0, "compute_j": 0.0, "memory_j": 0.0})
            compute, memory = self.digital_energy_j(row)
            cell["ops"] += row.ops
            cell["macs"] += row.macs
            cell["bytes"] += row.bytes_moved
            cell["compute_j"] += compute
            cell["memory_j"] += memory
        return out

    @property
    def optical_macs(self) -> int:
        return sum(s.counts.macs for s in self.sites)

    @property
    def reference_macs(self) -> int:
        """The MACs a dense digital processor does for the whole model (optical and digital ops)."""
        return sum(s.counts.reference_macs for s in self.sites) + sum(r.macs for r in self.digital)

    @property
    def total_j(self) -> float:
        return sum(self.totals_j().values())

    @property
    def digital_reference_j(self) -> float:
        """The whole model on the digital processor: its MACs x its energy per MAC, J per forward."""
        return self.reference_macs * self.hardware.digital_reference_energy_per_mac_fj * 1e-15

    @property
    def advantage(self) -> float:
        """Digital reference energy / this optical machine's energy (> 1: the optics uses less)."""
        return self.digital_reference_j / self.total_j if self.total_j > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary: per site and in total, per inference and per token."""
        per_inf, per_tok = 1.0 / self.batch, 1.0 / self.tokens
        totals = self.totals_j()
        sites = []
        for s in self.sites:
            row = {k: v for k, v in asdict(s.counts).items()}
            row.update(photons_per_mac=s.photons_per_mac, photons_from=s.photons_from)
            for unit, scale in (("per_inference", per_inf), ("per_token", per_tok)):
                row[unit] = {"macs": s.counts.macs * scale, "dac_conversions": s.counts.dac_conversions * scale,
                             "adc_conversions": s.counts.adc_conversions * scale,
                             "weight_loads": s.counts.weight_loads * scale,
                             "optical_j": s.optical_j * scale, "dac_j": s.dac_j * scale, "adc_j": s.adc_j * scale,
                             "weight_load_j": s.weight_load_j * scale, "total_j": s.total_j * scale}
            sites.append(row)
        digital = {cls: {**cell, "per_inference_j": (cell["compute_j"] + cell["memory_j"]) * per_inf}
                   for cls, cell in self.digital_by_class().items()}
        return {
            "batch": self.batch, "seq_len": self.seq_len, "tokens": self.tokens,
            "hardware": self.hardware.to_dict(),
            "photon_energy_j": photon_energy_j(self.hardware.wavelength_nm),
            "sites": sites,
            "digital": digital,
            "by_group_per_inference_j": {g: {c: v * per_inf for c, v in cell.items()} for g, cell in self.by_group().items()},
            "totals": {
                "per_forward_j": totals,
                "per_inference_j": {c: v * per_inf for c, v in totals.items()},
                "per_token_j": {c: v * per_tok for c, v in totals.items()},
                "total_per_inference_j": self.total_j * per_inf,
                "total_per_token_j": self.total_j * per_tok,
            },
            "macs": {"optical_per_inference": self.optical_macs * per_inf,
                     "reference_per_inference": self.reference_macs * per_inf,
                     "reference_per_token": self.reference_macs * per_tok},
            "digital_reference": {
                "energy_per_mac_fj": self.hardware.digital_reference_energy_per_mac_fj,
                "per_inference_j": self.digital_reference_j * per_inf,
                "per_token_j": self.digital_reference_j * per_tok,
                "advantage": self.advantage,
            },
            "uncounted_ops": dict(self.uncounted_ops),
        }


def _price_site(counts: SiteCounts, hw: HardwareParams) -> SiteEnergy:
    photons, source = (counts.photons_per_mac, "site") if counts.photons_per_mac is not None else (hw.photons_per_mac, "hardware default")
    return SiteEnergy(
        counts, photons, source,
        optical_j=counts.macs * optical_energy_per_mac_j(photons, hw),
        dac_j=counts.dac_conversions * hw.dac_energy_pj * 1e-12,
        adc_j=counts.adc_conversions * hw.adc_energy_pj * 1e-12,
        weight_load_j=counts.weight_loads * hw.weight_load_pj * 1e-12,
    )


# ------------------------------------------------------------------------------------------------
# The public entry point


def energy(gm: torch.fx.GraphModule, batch: int = 8, seq_len: int = 128,
           hardware: HardwareParams | dict | str | Path | None = None, inputs: Any = None) -> EnergyReport:
    """The energy account of a model returned by ``optopass.apply_optical_pass``.

    Runs one forward pass of the graph on an example batch (each optical site as its exact op:
    no calibration is needed and the model's state is left as it was) and prices what each op
    does on `hardware`.

    Args:
        gm: a captured, optically rewritten model.
        batch: sequences per forward pass (weight loads are amortised over them).
        seq_len: tokens per sequence.
        hardware: a ``HardwareParams``, a mapping or YAML file of the hardware section, or None
            for the model config's ``hardware:`` section, else the published defaults.
        inputs: the example batch (keyword dict or positional tuple) for a model that is not a
            Hugging Face encoder; its leading two dimensions must be (batch, seq_len). Default:
            ``input_ids`` of shape (batch, seq_len), no padding.

    Returns:
        An ``EnergyReport`` (``.to_dict()`` for JSON).

    Raises:
        ConfigError: a hardware key without a published default is unset, or a value is invalid.
        ValueError: bad batch, seq_len or inputs.
    """
    hw = _resolve_hardware(gm, hardware)
    hw.require_complete()
    if not (isinstance(batch, int) and batch >= 1 and isinstance(seq_len, int) and seq_len >= 1):
        raise ValueError(f"energy: batch and seq_len must be integers >= 1, got {batch!r} and {seq_len!r}")
    record = getattr(gm, "optical_record", None)
    if record is None:
        raise ValueError("energy: the model was not made by optopass.apply_optical_pass")
    feed = _example_inputs(gm, batch, seq_len, inputs)
    sites = {r.module: r for r in record.sites if r.status == "optical"}
    hf_model = getattr(getattr(gm, "capture_info", None), "hf_model", None)
    counter = _Counter(gm, sites, getattr(hf_model, "base_model_prefix", None))
    was_training = gm.training
    try:
        gm.eval()
        with torch.no_grad():
            counter.run(*feed)
    finally:
        gm.train(was_training)
    return EnergyReport(batch, seq_len, hw, tuple(_price_site(c, hw) for c in counter.sites), tuple(counter.digital),
                        dict(counter.uncounted), tuple(counter.groups))


def _resolve_hardware(gm, hardware) -> HardwareParams:
    if hardware is None:
        config = getattr(gm, "optical_config", None)
        hardware = getattr(config, "hardware", None)
    return load_hardware(hardware)


def _example_inputs(gm, batch: int, seq_len: int, inputs: Any) -> list:
    """The graph's placeholder values, in order."""
    info = getattr(gm, "capture_info", None)
    device = next((p.device for p in gm.parameters()), torch.device("cpu"))
    if inputs is None:
        names = getattr(info, "input_names", ())
        if "input_ids" not in names:
            raise ValueError("energy: give inputs= (an example batch) for a model that takes no input_ids")
        inputs = {"input_ids": torch.zeros(batch, seq_len, dtype=torch.long, device=device)}
        if "attention_mask" in names:
            inputs["attention_mask"] = torch.ones(batch, seq_len, dtype=torch.long, device=device)
    args, kwargs = (((), dict(inputs)) if isinstance(inputs, dict) else
                    (tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,), {}))
    first = next((t for t in (*args, *kwargs.values()) if isinstance(t, Tensor)), None)
    if first is not None and first.dim() >= 2 and tuple(first.shape[:2]) != (batch, seq_len):
        raise ValueError(f"energy: the inputs' leading dimensions {tuple(first.shape[:2])} are not (batch, seq_len) = "
                         f"({batch}, {seq_len})")
    placeholders = [n.target for n in gm.graph.nodes if n.op == "placeholder"]
    if hasattr(gm, "_complete_inputs"):  # an OpticalGraphModule: fills token_type_ids and the like
        complete = gm._complete_inputs(args, kwargs)
    else:
        complete = {**dict(zip(placeholders, args)), **kwargs}
    return [complete[name] for name in placeholders]


# ------------------------------------------------------------------------------------------------
# The chart


def write_plot(report: EnergyReport, path: str | Path, title: str | None = None) -> Path:
    """A stacked bar chart of the energy per inference of each layer (group), by category, as a
    PNG; written to a temporary file in the same folder, then renamed into place."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    groups = report.by_group()
    names = list(groups)
    largest = max((sum(cell.values()) for cell in groups.values()), default=0.0) / report.batch
    unit, scale = ("µJ", 1e6 / report.batch) if largest >= 1e-5 else ("nJ", 1e9 / report.batch)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(names) + 2.5), 4.5))
    bottom = [0.0] * len(names)
    for cat in CATEGORIES:
        values = [groups[g][cat] * scale for g in names]
        if any(values):
            ax.bar(names, values, bottom=bottom, label=CATEGORY_LABELS[cat])
            bottom = [b + v for b, v in zip(bottom, values)]
    ax.set_ylabel(f"energy per inference ({unit})")
    ax.set_title(title or f"where the energy goes (batch {report.batch} x {report.seq_len} tokens)")
    ax.legend(fontsize=8)
    ax.tick_params(axis="x", labelrotation=45)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    fig.tight_layout()
    try:
        return write_file_atomically(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    finally:
        plt.close(fig)
