"""``optopass energy``: how many photons and joules one inference of a model needs.

Loads the model as ``optopass transform`` does, rewrites it, counts one forward pass of a
batch (no calibration: the count runs each optical site as its exact op) and prices it on the
hardware section (docs/energy.md). Prints a table per site and in total, per inference and per
token, with the digital reference as a ratio; ``--json`` prints the whole account, ``--plot``
writes a stacked bar chart of where the energy goes, per layer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .checks import check_values, integer
from .cli_args import add_model_options, add_output_options, command_scope, print_result
from .errors import DataError
from .energy import CATEGORIES, CATEGORY_LABELS, write_plot


def add_subcommand(sub) -> None:
    """Adds ``optopass energy`` to the subcommand parsers `sub`."""
    p = sub.add_parser(
        "energy",
        help="the energy account of a model on optical hardware: photons, converters, digital work, joules",
        description="Rewrite a model into optical ops and report, per optical site and in total, per inference "
        "and per token: MACs, optical energy (detected photons x h c / wavelength over the laser and link "
        "efficiencies), DAC and ADC conversions, weight loads and the digital work left, against a digital "
        "processor at a given energy per MAC. Hardware parameters, their defaults and sources: docs/energy.md.",
    )
    add_model_options(p)
    p.add_argument("--hardware", default=None, metavar="FILE",
                   help="YAML file of the hardware section (its keys at the top level or under 'hardware:'); "
                        "default: the config's hardware section, else the published defaults")
    p.add_argument("--batch-size", type=int, default=8, help="sequences per forward pass; weight loads are "
                   "amortised over them (default 8)")
    p.add_argument("--seq-len", type=int, default=128, help="tokens per sequence (default 128)")
    p.add_argument("--plot", default=None, metavar="PATH",
                   help="write a PNG stacked bar chart of the energy per inference of each layer, by category")
    add_output_options(p)
    p.set_defaults(func=_run)


def _run(args) -> int:
    with command_scope(args) as _progress:
        result, report = run_energy(model=args.model, cfg=args.cfg, hardware=args.hardware,
                                    batch_size=args.batch_size, seq_len=args.seq_len, plot=args.plot)
        if args.plot is not None:
            result["plot"] = str(write_plot(report, args.plot, title=f"{result['model_class']}, batch {args.batch_size} x {args.seq_len} tokens"))
    print_result(args, result, format_energy)
    return 0


def run_energy(*, model: str | None, cfg: str | None, hardware: str | None = None, batch_size: int = 8,
               seq_len: int = 128, plot: str | None = None, seed: int = 0):
    """Run the energy job; returns (the JSON-ready result, the ``EnergyReport``).

    Every user error (a bad option, config or hardware value, a hardware key without a default
    left unset, a plot path in a missing folder, a sequence longer than the model takes) is
    raised before the model is loaded, so nothing is written."""
    from .. import apply_optical_pass, energy, load_config
    from .config import load_hardware
    from .models import load_classifier, resolve_model_name

    check_values({"batch_size": batch_size, "seq_len": seq_len},
                 {"batch_size": integer(1), "seq_len": integer(1)}, as_flags=True)
    config = load_config(cfg)
    hw = load_hardware(hardware if hardware is not None else config.hardware)
    hw.require_complete()
    if plot is not None and not Path(plot).expanduser().resolve().parent.is_dir():
        raise DataError(f"--plot: folder {str(Path(plot).parent)!r} does not exist")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # a missing classification head is drawn the same each run
        hf_model, _ = load_classifier(model)
    hf_model.eval()
    max_positions = getattr(hf_model.config, "max_position_embeddings", None)
    if max_positions is not None and seq_len > max_positions:
        raise DataError(f"--seq-len: must be <= {max_positions} (the model's max_position_embeddings), got {seq_len}")
    gm = apply_optical_pass(hf_model, config)
    report = energy(gm, batch=batch_size, seq_len=seq_len, hardware=hw)
    result = {"model": resolve_model_name(model), "model_class": type(hf_model).__name__,
              "config": config.source or "default", "hardware_file": hardware, **report.to_dict()}
    return result, report


# ------------------------------------------------------------------------------------------------
# The table


def format_si(value: float, unit: str) -> str:
    """`value` with an SI prefix: 1.23e-9, "J" -> "1.23 nJ"."""
    if value == 0:
        return f"0 {unit}"
    for factor, prefix in ((1e-21, "z"), (1e-18, "a"), (1e-15, "f"), (1e-12, "p"), (1e-9, "n"), (1e-6, "µ"), (1e-3, "m"), (1.0, "")):
        if abs(value) < factor * 1000:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def _count(value: float) -> str:
    for factor, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:.3g}"


def format_energy(result: dict[str, Any]) -> str:
    """The human-readable account of ``optopass energy``."""
    hw, tokens = result["hardware"], result["seq_len"]
    wpj = hw["weight_load_energy_pj"] if hw["weight_load_energy_pj"] is not None else hw["dac_energy_pj"]
    lines = [
        f"model: {result['model']} ({result['model_class']}), config: {result['config']}",
        f"batch {result['batch']} x {tokens} tokens; per inference = one sequence; weight loads amortised over the batch",
        f"hardware: wavelength {hw['wavelength_nm']:.6g} nm (photon {format_si(result['photon_energy_j'], 'J')}), laser "
        f"wall-plug {hw['laser_wall_plug_efficiency']:g}, link {hw['optical_link_efficiency']:g}, DAC "
        f"{hw['dac_energy_pj']:g} pJ, ADC {hw['adc_energy_pj']:.3g} pJ, weight load {wpj:g} pJ, digital "
        f"{hw['digital_energy_per_op_pj']:g} pJ/op, memory {hw['memory_energy_per_byte_pj']:g} pJ/byte",
        "",
        "per optical site, per inference:",
    ]
    width = max([len(s["site"]) for s in result["sites"]] + [4])
    header = (f"{'site':<{width}}  {'kind':<4} {'MACs':>7} {'ph/MAC':>8} {'optical':>9} {'DAC':>9} {'ADC':>9} "
              f"{'weights':>9} {'total':>9}")
    lines.append(header)
    defaulted = False
    for s in result["sites"]:
        e = s["per_inference"]
        mark = "*" if s["photons_from"] != "site" else " "
        defaulted |= mark == "*"
        lines.append(f"{s['site']:<{width}}  {s['kind']:<4} {_count(e['macs']):>7} {s['photons_per_mac']:>7.3g}{mark} "
                     f"{format_si(e['optical_j'], 'J'):>9} {format_si(e['dac_j'], 'J'):>9} {format_si(e['adc_j'], 'J'):>9} "
                     f"{format_si(e['weight_load_j'], 'J'):>9} {format_si(e['total_j'], 'J'):>9}")
    if defaulted:
        lines.append(f"* photons per MAC from the hardware section ({hw['photons_per_mac']:g}): the site's op sets none "
                     "(shot noise off)")
    lines += ["", "digital work left, per inference:",
              f"{'class':<12} {'ops':>8} {'MACs':>8} {'bytes':>8} {'compute':>9} {'memory':>9}"]
    batch = result["batch"]
    for cls, cell in result["digital"].items():
        lines.append(f"{cls:<12} {_count(cell['ops'] / batch):>8} {_count(cell['macs'] / batch):>8} "
                     f"{_count(cell['bytes'] / batch):>8} {format_si(cell['compute_j'] / batch, 'J'):>9} "
                     f"{format_si(cell['memory_j'] / batch, 'J'):>9}")
    if result["uncounted_ops"]:
        lines.append("not counted: " + ", ".join(f"{op} x{n}" for op, n in result["uncounted_ops"].items()))
    totals = result["totals"]
    lines += ["", f"{'total':<16} {'per inference':>14} {'per token':>12}"]
    for cat in CATEGORIES:
        lines.append(f"{CATEGORY_LABELS[cat]:<16} {format_si(totals['per_inference_j'][cat], 'J'):>14} "
                     f"{format_si(totals['per_token_j'][cat], 'J'):>12}")
    lines.append(f"{'all':<16} {format_si(totals['total_per_inference_j'], 'J'):>14} {format_si(totals['total_per_token_j'], 'J'):>12}")
    ref = result["digital_reference"]
    lines += ["", f"digital reference: {_count(result['macs']['reference_per_inference'])} MACs x "
              f"{ref['energy_per_mac_fj']:g} fJ = {format_si(ref['per_inference_j'], 'J')} per inference "
              f"({format_si(ref['per_token_j'], 'J')} per token)",
              f"digital / optical: {ref['advantage']:.3g}x" + (" (the optical machine uses less)" if ref["advantage"] > 1
                                                                  else " (the digital processor uses less)")]
    if "plot" in result:
        lines.append(f"plot: {result['plot']}")
    return "\n".join(lines)
