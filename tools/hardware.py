"""The optical machine's hardware parameters: the ``hardware:`` section of an optical config.

One frozen dataclass, validated when built, with every default taken from a published figure
(the full citations, and how each default is derived, are in docs/energy.md). A figure with no
published source has no default: it is None until the user sets it, and the energy account
refuses to run while one is missing (:meth:`HardwareParams.missing`).

Schema (YAML, units in every name)::

    hardware:
      wavelength_nm: 1552.52                  # ITU-T G.694.1 anchor, 193.1 THz
      laser_wall_plug_efficiency: null        # required: optical W out per electrical W in, (0, 1]
      optical_link_efficiency: null           # required: laser -> detector transmission, (0, 1]
      photons_per_mac: 3.1                    # where the op sets none; Wang et al. 2022
      dac_energy_pj: null                     # required: per input conversion
      adc_energy_pj: 7.41                     # per output conversion; Kull et al. ISSCC 2014
      weight_load_energy_pj: null             # per weight element programmed; null: = dac_energy_pj
      digital_energy_per_op_pj: 3.7           # fp32 multiply, 45 nm; Horowitz ISSCC 2014
      memory_energy_per_byte_pj: 1.25         # 8 KB SRAM, 10 pJ / 64 bits; Horowitz ISSCC 2014
      digital_reference_energy_per_mac_fj: 300  # Anderson et al. arXiv 2302.10360
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .checks import is_finite_number
from .errors import ConfigError

# wavelength of the ITU-T G.694.1 DWDM grid's anchor frequency, 193.1 THz: c / 193.1 THz
ITU_ANCHOR_WAVELENGTH_NM = 299_792_458.0 / 193.1e12 * 1e9  # 1552.52 nm
# Kull et al., ISSCC 2014 (22.1): an 8-bit ADC at 90 GS/s drawing 667 mW
KULL_2014_ADC_ENERGY_PJ = 667e-3 / 90e9 * 1e12  # 7.41 pJ per conversion

# keys without a published default: the user sets them (docs/energy.md says why)
REQUIRED = ("laser_wall_plug_efficiency", "optical_link_efficiency", "dac_energy_pj")


@dataclass(frozen=True)
class HardwareParams:
    """The hardware an energy account prices a model on (defaults and sources: docs/energy.md).

    Attributes:
        wavelength_nm: laser wavelength, nm (> 0); sets the photon energy h c / lambda.
        laser_wall_plug_efficiency: optical power out of the laser per electrical power in, in
            (0, 1]. No default.
        optical_link_efficiency: fraction of the laser's light that reaches the detectors (all
            modulator, coupling and propagation losses), in (0, 1]. No default.
        photons_per_mac: detected photons per multiply-accumulate (> 0) for the sites whose op
            sets none (shot noise off).
        dac_energy_pj: energy of one digital-to-analog conversion of an input operand, pJ (>= 0).
            No default.
        adc_energy_pj: energy of one analog-to-digital conversion of an output, pJ (>= 0).
        weight_load_energy_pj: energy to program one weight element into the optics, pJ (>= 0);
            None: a weight is programmed through a DAC, at ``dac_energy_pj``.
        digital_energy_per_op_pj: energy of one elementwise operation of the digital work left
            (softmax, LayerNorm, activations, residual and bias adds), pJ (>= 0).
        memory_energy_per_byte_pj: energy per byte that the digital work reads or writes, pJ (>= 0).
        digital_reference_energy_per_mac_fj: the digital processor compared against, and the
            price of the linears left digital (e.g. the classification head), fJ per MAC (>= 0).
    """

    wavelength_nm: float = ITU_ANCHOR_WAVELENGTH_NM
    laser_wall_plug_efficiency: float | None = None
    optical_link_efficiency: float | None = None
    photons_per_mac: float = 3.1
    dac_energy_pj: float | None = None
    adc_energy_pj: float = KULL_2014_ADC_ENERGY_PJ
    weight_load_energy_pj: float | None = None
    digital_energy_per_op_pj: float = 3.7
    memory_energy_per_byte_pj: float = 1.25
    digital_reference_energy_per_mac_fj: float = 300.0

    def __post_init__(self):
        _check(self, "wavelength_nm", "a number > 0 (nm)", lambda v: v > 0)
        for name in ("laser_wall_plug_efficiency", "optical_link_efficiency"):
            _check(self, name, "a number in (0, 1] (a fraction of power)", lambda v: 0 < v <= 1, optional=True)
        _check(self, "photons_per_mac", "a number > 0 (detected photons per MAC)", lambda v: v > 0)
        for name in ("dac_energy_pj", "weight_load_energy_pj"):
            _check(self, name, "a number >= 0 (pJ) or null", lambda v: v >= 0, optional=True)
        for name in ("adc_energy_pj", "digital_energy_per_op_pj", "memory_energy_per_byte_pj"):
            _check(self, name, "a number >= 0 (pJ)", lambda v: v >= 0)
        _check(self, "digital_reference_energy_per_mac_fj", "a number >= 0 (fJ per MAC)", lambda v: v >= 0)

    def missing(self) -> list[str]:
        """The keys without a published default that are still unset."""
        return [name for name in REQUIRED if getattr(self, name) is None]

    def require_complete(self) -> None:
        """Raise a one-line ConfigError naming the keys still unset."""
        missing = self.missing()
        if missing:
            raise ConfigError(
                f"hardware: {', '.join(missing)} not set (no published default; give them in the hardware "
                "section or a --hardware YAML file, see docs/energy.md)"
            )

    @property
    def weight_load_pj(self) -> float | None:
        """The energy per weight element programmed: ``weight_load_energy_pj``, else a DAC conversion."""
        return self.dac_energy_pj if self.weight_load_energy_pj is None else self.weight_load_energy_pj

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _check(params: HardwareParams, name: str, allowed: str, ok, optional: bool = False) -> None:
    value = getattr(params, name)
    if value is None and optional:
        return
    if not is_finite_number(value) or not ok(value):
        raise ConfigError(f"{name}: must be {allowed}, got {value!r}")
    object.__setattr__(params, name, float(value))


HARDWARE_KEYS = tuple(f.name for f in dataclasses.fields(HardwareParams))
