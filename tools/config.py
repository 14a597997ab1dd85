"""The optical config: a YAML map from layer type (``fc``, ``attn``) to technology parameters.

Loaded into frozen dataclasses and validated when loaded: an unknown key, a wrong type or an
out-of-range value raises one ``ConfigError`` naming the file, the YAML key path, its line and
what is allowed. The loader never mutates its input.

Schema::

    fc:   {q_levels: 256, q_lut_min: 0.02004, q_quantiles: null, q_smooth_factor: 0.9,
           q_init_seed: 0, q_bypass: false}          # technology: optical_transformer (default)
    attn: {...same keys...}
    skip: [classifier]                                # optional; default: the classification head
    overrides:                                        # optional; pattern -> parameters
      "re:.*layer\\.0\\..*": {q_levels: 16}
    hardware: {dac_energy_pj: 1.0, ...}               # optional; the energy account's machine
                                                      # (tools/hardware.py, docs/energy.md)
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from ..passes.optical import registry
from .errors import ConfigError
from .hardware import HARDWARE_KEYS, HardwareParams
from .targets import check_pattern, first_match

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "transform_cfg.yaml"
# The classification head: BERT/RoBERTa/ELECTRA `classifier`, DistilBERT `pre_classifier`.
DEFAULT_SKIP = ("classifier", "pre_classifier")
RESERVED_KEYS = ("skip", "overrides", "hardware")


@dataclass(frozen=True)
class KindConfig:
    """The technology and its validated parameters for one layer type."""

    technology: str
    params: Any


@dataclass(frozen=True)
class Override:
    """Parameters that replace a kind's defaults on the sites that `pattern` covers."""

    pattern: str
    values: Mapping[str, Any]


@dataclass(frozen=True)
class OpticalConfig:
    """A validated optical config.

    Attributes:
        kinds: layer type (``fc``, ``attn``) -> its technology and parameters.
        skip: site-path patterns left untransformed.
        skip_is_default: True when ``skip`` was not given (then a pattern matching nothing is
            fine, e.g. ``pre_classifier`` on BERT).
        overrides: per-name parameter overrides, first match wins.
        source: the file it came from, for messages.
        hardware: the ``hardware:`` section (the energy account's machine), or None when not
            given (``optopass.energy`` then takes the published defaults).
    """

    kinds: Mapping[str, KindConfig]
    skip: tuple[str, ...] = DEFAULT_SKIP
    skip_is_default: bool = True
    overrides: tuple[Override, ...] = ()
    source: str | None = None
    hardware: HardwareParams | None = None

    def __deepcopy__(self, memo) -> OpticalConfig:
        return self  # immutable (frozen, read-only mappings, which deepcopy cannot copy): share it

    def __reduce__(self):
        # read-only mappings do not pickle: pickle plain dicts, rebuilt read-only (a config can
        # then go to worker processes, e.g. a sweep over configs)
        overrides = tuple((o.pattern, dict(o.values)) for o in self.overrides)
        return _unpickle_config, (dict(self.kinds), self.skip, self.skip_is_default, overrides, self.source,
                                  self.hardware)

    def params_for(self, kind: str, site: str) -> tuple[str, Any]:
        """The (technology, parameters) of site path `site` of `kind`, overrides applied."""
        kind_cfg = self.kinds[kind]
        for override in self.overrides:
            if first_match(site, [override.pattern]) and _accepts(kind_cfg.params, override.values):
                return kind_cfg.technology, dataclasses.replace(kind_cfg.params, **override.values)
        return kind_cfg.technology, kind_cfg.params

    def is_skipped(self, site: str) -> str | None:
        """The skip pattern covering `site`, or None."""
        return first_match(site, self.skip)

    def to_dict(self) -> dict[str, Any]:
        """A plain mapping that `load_config` turns back into an equal config."""
        out: dict[str, Any] = {}
        for kind, kind_cfg in self.kinds.items():
            params = _params_to_dict(kind_cfg.params)
            if kind_cfg.technology != registry.DEFAULT_TECHNOLOGY:
                params = {"technology": kind_cfg.technology, **params}
            out[kind] = params
        if not self.skip_is_default:
            out["skip"] = list(self.skip)
        if self.overrides:
            out["overrides"] = {o.pattern: dict(o.values) for o in self.overrides}
        if self.hardware is not None:
            out["hardware"] = self.hardware.to_dict()
        return out


def _unpickle_config(kinds, skip, skip_is_default, overrides, source, hardware=None) -> OpticalConfig:
    overrides = tuple(Override(pattern, MappingProxyType(values)) for pattern, values in overrides)
    return OpticalConfig(MappingProxyType(kinds), skip, skip_is_default, overrides, source, hardware)


def _params_to_dict(params) -> dict[str, Any]:
    values = dataclasses.asdict(params)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


def _accepts(params, values: Mapping[str, Any]) -> bool:
    names = {f.name for f in dataclasses.fields(params)}
    return set(values) <= names


def load_config(path_or_dict: str | Path | Mapping[str, Any] | OpticalConfig | None = None) -> OpticalConfig:
    """Load and validate an optical config.

    Args:
        path_or_dict: a YAML file path, an already-parsed mapping, an ``OpticalConfig`` (returned
            as is), or None for the default ``transform_cfg.yaml`` shipped with optopass.

    Returns:
        The validated, frozen ``OpticalConfig``.

    Raises:
        ConfigError: one line naming the file, key path, line and what is allowed.
    """
    _ensure_builtin_technologies()
    if isinstance(path_or_dict, OpticalConfig):
        return path_or_dict
    if path_or_dict is None:
        path_or_dict = DEFAULT_CONFIG_PATH
    if isinstance(path_or_dict, Mapping):
        return _build(copy.deepcopy(dict(path_or_dict)), source=None, lines={})
    if not isinstance(path_or_dict, (str, Path)):
        raise ConfigError(f"config: expected a YAML path or a mapping, got {type(path_or_dict).__name__}")
    path = Path(path_or_dict)
    raw, lines = _read_yaml(path, "config")
    return _build(raw, source=str(path), lines=lines)


def load_hardware(path_or_dict: str | Path | Mapping[str, Any] | HardwareParams | None = None) -> HardwareParams:
    """Load and validate a hardware section on its own (``optopass energy --hardware FILE``).

    Args:
        path_or_dict: a YAML file or mapping holding the section's keys, either at its top level
            or under one ``hardware:`` key; a ``HardwareParams`` (returned as is); None for the
            published defaults.

    Returns:
        The validated, frozen ``HardwareParams`` (keys without a published default may still be
        None: ``HardwareParams.require_complete`` says which).

    Raises:
        ConfigError: one line naming the file, ``hardware.<key>``, its line and what is allowed.
    """
    if isinstance(path_or_dict, HardwareParams):
        return path_or_dict
    if path_or_dict is None:
        return HardwareParams()
    if isinstance(path_or_dict, Mapping):
        raw, lines, source = copy.deepcopy(dict(path_or_dict)), {}, None
    elif isinstance(path_or_dict, (str, Path)):
        raw, lines = _read_yaml(Path(path_or_dict), "hardware file")
        source = str(path_or_dict)
    else:
        raise ConfigError(f"hardware: expected a YAML path or a mapping, got {type(path_or_dict).__name__}")
    if isinstance(raw, Mapping) and list(raw) == ["hardware"]:
        raw = raw["hardware"]
    else:
        lines = {f"hardware.{key}": line for key, line in lines.items()}

    def fail(key: str, message: str) -> ConfigError:
        line = lines.get(key)
        return ConfigError(f"{source or 'hardware'}: {key}{f' (line {line})' if line else ''}: {message}")

    return _hardware(raw, fail)


def _read_yaml(path: Path, what: str) -> tuple[Any, dict[str, int]]:
    """(parsed YAML, key path -> line) of `path`; a missing file or bad YAML is a ConfigError."""
    if not path.is_file():
        raise ConfigError(f"{what} {str(path)!r} does not exist")
    text = path.read_text()
    try:
        return yaml.safe_load(text), _key_lines(yaml.compose(text))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}:{where}: not valid YAML: {problem}") from None


def _ensure_builtin_technologies() -> None:
    from ..passes.optical import technologies  # noqa: F401  (registers the built-in ones)


def _key_lines(node, prefix: str = "") -> dict[str, int]:
    """Map each YAML key path (``fc.q_levels``) to its 1-based line."""
    lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = f"{prefix}.{key_node.value}" if prefix else str(key_node.value)
            lines[path] = key_node.start_mark.line + 1
            lines.update(_key_lines(value_node, path))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            path = f"{prefix}[{i}]"
            lines[path] = item.start_mark.line + 1
            lines.update(_key_lines(item, path))
    return lines


def _build(raw: Any, source: str | None, lines: dict[str, int]) -> OpticalConfig:
    def fail(key: str, message: str) -> ConfigError:
        where = source or "config"
        line = lines.get(key) or lines.get(key.split(".")[0].split("[")[0])
        at = f" (line {line})" if line else ""
        return ConfigError(f"{where}: {key}{at}: {message}")

    if not isinstance(raw, Mapping):
        raise fail("<top>", f"the config must be a mapping of layer types {sorted(registry.KINDS)} to parameters")
    allowed = sorted(registry.KINDS) + list(RESERVED_KEYS)
    for key in raw:
        if key not in allowed:
            raise fail(str(key), f"unknown key; allowed: {', '.join(allowed)}")
    kinds = {}
    for kind in registry.KINDS:
        if kind in raw:
            kinds[kind] = _kind_config(kind, raw[kind], fail)
    if not kinds:
        raise fail("<top>", f"no layer type given; expected at least one of {sorted(registry.KINDS)}")
    skip, skip_is_default = _skip(raw, fail)
    overrides = _overrides(raw.get("overrides"), kinds, fail)
    hardware = _hardware(raw["hardware"], fail) if "hardware" in raw else None
    return OpticalConfig(MappingProxyType(kinds), skip, skip_is_default, overrides, source, hardware)


def _kind_config(kind: str, values: Any, fail) -> KindConfig:
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise fail(kind, f"must be a mapping of parameters, got {type(values).__name__}")
    values = dict(values)
    technology = values.pop("technology", registry.DEFAULT_TECHNOLOGY)
    if technology not in registry.TECHNOLOGIES:
        raise fail(f"{kind}.technology", f"unknown technology {technology!r}; allowed: {', '.join(sorted(registry.TECHNOLOGIES))}")
    return KindConfig(technology, _make_params(registry.TECHNOLOGIES[technology], values, kind, fail))


def _make_params(params_cls, values: Mapping[str, Any], prefix: str, fail):
    names = [f.name for f in dataclasses.fields(params_cls)]
    for key in values:
        if key not in names:
            raise fail(f"{prefix}.{key}", f"unknown parameter; allowed: {', '.join(names)}")
    try:
        return params_cls(**values)
    except ConfigError as err:
        field_name, _, message = str(err).partition(": ")
        raise fail(f"{prefix}.{field_name}", message) from None


def _hardware(values: Any, fail) -> HardwareParams:
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise fail("hardware", f"must be a mapping of hardware parameters ({', '.join(HARDWARE_KEYS)})")
    return _make_params(HardwareParams, values, "hardware", fail)


def _skip(raw: Mapping[str, Any], fail) -> tuple[tuple[str, ...], bool]:
    if "skip" not in raw:
        return DEFAULT_SKIP, True
    skip = raw["skip"]
    if skip is None:
        skip = []
    if isinstance(skip, str) or not isinstance(skip, list):
        raise fail("skip", "must be a list of module-path patterns (exact, suffix or 're:' regex)")
    for i, pattern in enumerate(skip):
        try:
            check_pattern(pattern, f"skip[{i}]")
        except ConfigError as err:
            raise fail(f"skip[{i}]", str(err).partition(": ")[2]) from None
    return tuple(skip), False


def _overrides(raw: Any, kinds: Mapping[str, KindConfig], fail) -> tuple[Override, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        raise fail("overrides", "must be a mapping of module-path pattern -> parameters")
    out = []
    for pattern, values in raw.items():
        key = f"overrides.{pattern}"
        try:
            check_pattern(pattern, key)
        except ConfigError as err:
            raise fail(key, str(err).partition(": ")[2]) from None
        if not isinstance(values, Mapping) or not values:
            raise fail(key, "must be a non-empty mapping of parameters")
        accepted = [k for k in kinds.values() if _accepts(k.params, values)]
        if not accepted:
            names = sorted({f.name for k in kinds.values() for f in dataclasses.fields(k.params)})
            unknown = [v for v in values if v not in names] or list(values)  # else: keys of two technologies
            bad = unknown[0]
            raise fail(f"{key}.{bad}", f"unknown parameter; allowed: {', '.join(names)}")
        for kind_cfg in accepted:
            try:
                dataclasses.replace(kind_cfg.params, **values)
            except ConfigError as err:
                field_name, _, message = str(err).partition(": ")
                raise fail(f"{key}.{field_name}", message) from None
        out.append(Override(pattern, MappingProxyType(dict(values))))
    return tuple(out)
