"""Save and load transformed models.

A saved directory holds::

    base/                     the HF model with the transformed model's current weights
                              (save_pretrained), and its tokenizer when given
    optical_config.yaml       the optical config
    optical_state.safetensors every optical site's buffers (ranges, seeds, counters)
    optopass.json             format version, model class, each site's statistics mode

Writes go to a temporary folder beside `directory`, renamed into place when complete.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file, save_file

from ..passes.optical.rewrite import SITES_PREFIX
from ..passes.optical.sites import optical_sites
from .errors import ModelLoadError, OutputError

FORMAT_VERSION = 1
_INTERNAL_PREFIXES = (f"{SITES_PREFIX}.", "mode_aware.")


def write_file_atomically(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """``write(tmp)`` to a temporary file beside `path`, then rename it into place: a reader
    never sees a half-written file, and a failed write leaves nothing."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _base_state(gm: torch.nn.Module, hf_model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The HF model's own state (its keys only), with the transformed model's current values."""
    wanted = set(hf_model.state_dict())
    return {k: v for k, v in gm.state_dict().items() if k in wanted and not k.startswith(_INTERNAL_PREFIXES)}


def _optical_state(gm: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in gm.state_dict().items() if k.startswith(f"{SITES_PREFIX}.")}


def save(gm: torch.nn.Module, directory: str | Path, tokenizer: Any = None) -> Path:
    """Save a transformed (calibrated or fine-tuned) model to `directory`.

    Args:
        gm: a module returned by ``apply_optical_pass`` (or ``load``) of an HF model, or that
            module compiled with ``torch.compile`` (its original module is saved).
        directory: output folder; replaced if it exists.
        tokenizer: optional tokenizer saved beside the base model.

    Returns:
        The directory path.

    Raises:
        OutputError: `directory` (or a folder above it) is an existing file.
        ValueError: `gm` is not a transform of a Hugging Face model, or does not hold its weights.
    """
    gm = unwrap_compiled(gm)
    info = getattr(gm, "capture_info", None)
    if info is None or info.hf_model is None:
        raise ValueError("save: only transforms of Hugging Face models can be saved")
    directory = check_output_folder(directory, "save")
    base_state = _base_state(gm, info.hf_model)
    missing = sorted(set(info.hf_model.state_dict()) - set(base_state))
    if missing:
        raise ValueError(f"save: the module does not hold the model's weights ({len(missing)} missing, e.g. "
                         f"{missing[0]!r}); pass the module apply_optical_pass or load returned")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        info.hf_model.save_pretrained(tmp / "base", state_dict=base_state)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp / "base")
        (tmp / "optical_config.yaml").write_text(yaml.safe_dump(gm.optical_config.to_dict(), sort_keys=False))
        save_file(_optical_state(gm), str(tmp / "optical_state.safetensors"))
        meta = {
            "format": FORMAT_VERSION,
            "model_class": info.model_class,
            "stats_modes": {name: site.stats_mode for name, site in optical_sites(gm)},
            "range_methods": {name: site.range_method for name, site in optical_sites(gm) if hasattr(site, "range_method")},
        }
        (tmp / "optopass.json").write_text(json.dumps(meta, indent=2))
        _check_complete(tmp)
        _replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def unwrap_compiled(module: torch.nn.Module) -> torch.nn.Module:
    """The module that ``torch.compile`` wrapped (its ``_orig_mod``), or `module` itself."""
    from torch._dynamo.eval_frame import OptimizedModule

    while isinstance(module, OptimizedModule):
        module = module._orig_mod
    return module


def check_output_folder(directory: str | Path, name: str) -> Path:
    """`directory` as a Path, when it can become a folder: neither it nor a folder above it
    is an existing file. Checked before any work, so that nothing is written half.

    Raises:
        OutputError: one line naming `name` (the option or function) and the file in the way.
    """
    directory = Path(directory).expanduser()
    for path in (directory, *directory.parents):
        if path.is_dir():
            break
        if path.exists():
            where = "is" if path == directory else f"is in the way of {directory}:"
            raise OutputError(f"{name}: {path} {where} an existing file, not a folder; give a folder to create or replace")
    return directory


def _check_complete(folder: Path) -> None:
    """Refuse to publish a folder that ``load`` could not read."""
    needed = [folder / "optopass.json", folder / "optical_config.yaml", folder / "optical_state.safetensors",
              folder / "base" / "config.json"]
    weights = [folder / "base" / name for name in ("model.safetensors", "model.safetensors.index.json")]
    absent = [str(path.relative_to(folder)) for path in needed if not path.is_file()]
    if not any(path.is_file() for path in weights):
        absent.append("base/model.safetensors")
    if absent:
        raise OSError(f"save: incomplete output, {', '.join(absent)} not written")


def _replace(staged: Path, directory: Path) -> None:
    """Rename `staged` to `directory`; an existing `directory` is removed only once the new
    folder is in place."""
    if not directory.exists():
        staged.rename(directory)
        return
    previous = staged.with_name(staged.name + ".previous")
    directory.rename(previous)
    try:
        staged.rename(directory)
    except BaseException:
        previous.rename(directory)
        raise
    shutil.rmtree(previous, ignore_errors=True)


def is_saved_transform(directory: str | Path) -> bool:
    """Whether `directory` was written by ``save``."""
    return (Path(directory) / "optopass.json").is_file()


def load(directory: str | Path, device: str | torch.device | None = None):
    """Load a model written by ``save``: the base model, transformed again with the saved
    config, with the saved optical state. Returned in eval mode.

    Raises:
        ModelLoadError: the directory is missing or not written by ``save``.
    """
    import transformers

    from ..passes.apply import apply_optical_pass
    from .config import load_config

    directory = Path(directory)
    if not is_saved_transform(directory):
        raise ModelLoadError(f"{directory}: not a folder written by optopass.save (no optopass.json)")
    meta = json.loads((directory / "optopass.json").read_text())
    if meta.get("format") != FORMAT_VERSION:
        raise ModelLoadError(f"{directory}: unsupported optopass format {meta.get('format')!r}; expected {FORMAT_VERSION}")
    model_cls = getattr(transformers, meta["model_class"], None) or transformers.AutoModelForSequenceClassification
    model = model_cls.from_pretrained(directory / "base")
    if device is not None:
        model.to(device)
    model.eval()
    config = load_config(directory / "optical_config.yaml")
    gm = apply_optical_pass(model, config)
    state = load_file(str(directory / "optical_state.safetensors"), device=str(next(gm.parameters()).device))
    missing, unexpected = [], []
    own = {k for k in gm.state_dict() if k.startswith(f"{SITES_PREFIX}.")}
    missing = sorted(own - set(state))
    unexpected = sorted(set(state) - own)
    if missing or unexpected:
        raise ModelLoadError(f"{directory}: optical state does not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]})")
    gm.load_state_dict(state, strict=False)
    for name, site in optical_sites(gm):
        site.set_stats_mode(meta["stats_modes"].get(name, "auto"))
        if name in meta.get("range_methods", {}):
            site.set_range_method(meta["range_methods"][name])
    return gm.eval()
