"""Capture: an ``nn.Module`` (any Hugging Face encoder) -> ``torch.fx.GraphModule``.

Uses ``torch.export`` (non-strict) with dynamic batch and sequence dimensions, so one capture
serves every batch size and sequence length. The model is captured in training mode, so its
dropouts appear in the graph; ``passes/train_mode.py`` then makes them follow ``.train()`` /
``.eval()`` of the returned module. Each node keeps its origin module path
(``node.meta["nn_module_stack"]``).

Text encoders take token ids; vision encoders (ViT) ``pixel_values`` and speech encoders
(Wav2Vec2, HuBERT) ``input_values``, and example inputs of each kind are built from the config.
Training-time randomness that a model draws on the host on every call (the SpecAugment masks of
the speech encoders, drawn with numpy; LayerDrop, a Python branch on a random number) cannot
be recorded in a graph: it is turned off for the capture, the captured model trains without it
(its evaluation is the same), and the capture says so in a warning and in ``CaptureInfo``.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torch.export import Dim

from ..tools.errors import CaptureError
from .base import PassResult

HF_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
EXAMPLE_BATCH, EXAMPLE_SEQ = 2, 16


@dataclass
class CaptureInfo:
    """How to call the captured graph like the original model.

    Attributes:
        input_names: keyword inputs of the graph, in order.
        defaults: input name -> how to build it when omitted (``ones``/``zeros`` like input_ids).
        num_labels: set for HF sequence classifiers, so ``labels=`` adds ``.loss``.
        problem_type: the HF config's problem_type (None: inferred as HF does).
        model_class: class name of the captured model, for messages and save/load.
        hf_model: the original HF model (not a submodule), used by ``save``.
        training_randomness_off: config attribute -> its value, for the training-time
            randomness turned off for the capture (see the module docstring).
    """

    input_names: tuple[str, ...]
    defaults: dict[str, str] = field(default_factory=dict)
    num_labels: int | None = None
    problem_type: str | None = None
    model_class: str = ""
    hf_model: Any = None
    training_randomness_off: dict[str, Any] = field(default_factory=dict)


class OpticalGraphModule(torch.fx.GraphModule):
    """A captured model: called with the original model's keyword inputs, it returns the
    original output type (e.g. ``SequenceClassifierOutput``), with ``.loss`` when ``labels``
    are passed. ``.train()``/``.eval()`` switch dropout; ``.to(device)`` retargets the device
    constants that export recorded in the graph."""

    capture_info: CaptureInfo

    def __call__(self, *args, **kwargs):
        info = self.capture_info
        labels = kwargs.pop("labels", None) if info.num_labels is not None else None
        out = super().__call__(**self._complete_inputs(args, kwargs))
        if labels is not None:
            out = _with_loss(out, labels, info)
        return out

    def _complete_inputs(self, args: tuple, kwargs: dict) -> dict:
        info = self.capture_info
        if len(args) > len(info.input_names):
            raise TypeError(f"expected at most {len(info.input_names)} positional inputs {info.input_names}, got {len(args)}")
        given = dict(zip(info.input_names, args))
        for key, value in kwargs.items():
            if key in given:
                raise TypeError(f"input {key!r} given twice")
            given[key] = value
        unknown = [k for k in given if k not in info.input_names and given[k] is not None]
        if unknown:
            raise TypeError(f"unexpected inputs {unknown}; this captured model takes {list(info.input_names)}")
        first = next((v for v in given.values() if isinstance(v, torch.Tensor)), None)
        out = {}
        for name in info.input_names:
            value = given.get(name)
            if value is None:
                if name not in info.defaults or first is None:
                    raise TypeError(f"missing input {name!r}")
                value = (torch.ones_like if info.defaults[name] == "ones" else torch.zeros_like)(first, dtype=torch.long)
            out[name] = value
        return out

    def __deepcopy__(self, memo):
        # GraphModule's deepcopy rebuilds the module and keeps only its own attributes
        copied = super().__deepcopy__(memo)
        for name in ("capture_info", "optical_config", "optical_record"):
            if name in self.__dict__:
                copied.__dict__[name] = copy.deepcopy(self.__dict__[name], memo)
        return copied

    def __reduce__(self):
        # GraphModule pickles its generated code and re-traces it on load: this class, node
        # metadata and export's input checks would not survive that
        raise TypeError(f"a captured {self.capture_info.model_class or 'model'} does not pickle (torch.save of the "
                        "whole module); save it with optopass.save(gm, directory) and load it with "
                        "optopass.load(directory), or save gm.state_dict()")

    def _apply(self, fn, recurse=True):
        before = _param_placement(self)
        result = super()._apply(fn, recurse)
        after = _param_placement(self)
        if before is not None and after is not None and before != after:
            _retarget_constants(self, before, after)
        return result


def _param_placement(module: nn.Module):
    tensor = next(module.parameters(), None)
    return None if tensor is None else (tensor.device, tensor.dtype)


def _retarget_constants(gm: torch.fx.GraphModule, before, after) -> None:
    """Replace device (and float dtype) constants recorded at capture with the new placement."""
    (old_dev, old_dtype), (new_dev, new_dtype) = before, after

    def swap(value):
        if isinstance(value, torch.device) and value == old_dev:
            return new_dev
        if isinstance(value, torch.dtype) and value == old_dtype and value.is_floating_point:
            return new_dtype
        return value

    for node in gm.graph.nodes:
        node.args = torch.fx.node.map_aggregate(node.args, swap)
        node.kwargs = torch.fx.node.map_aggregate(node.kwargs, swap)
    gm.recompile()


def _with_loss(out, labels: torch.Tensor, info: CaptureInfo):
    """Add the HF sequence-classification loss to `out` (same rule as transformers)."""
    logits = out["logits"] if isinstance(out, dict) else out[0]
    labels = labels.to(logits.device)
    problem = info.problem_type
    if problem is None:
        if info.num_labels == 1:
            problem = "regression"
        elif labels.dtype in (torch.long, torch.int):
            problem = "single_label_classification"
        else:
            problem = "multi_label_classification"
    if problem == "regression":
        if info.num_labels == 1:
            loss = F.mse_loss(logits.squeeze(), labels.squeeze().to(logits.dtype))
        else:
            loss = F.mse_loss(logits, labels.to(logits.dtype))
    elif problem == "single_label_classification":
        loss = F.cross_entropy(logits.view(-1, info.num_labels), labels.view(-1))
    else:
        loss = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
    if isinstance(out, dict):
        return type(out)(loss=loss, **out)
    return (loss, *out)


def _is_hf(model: nn.Module) -> bool:
    return hasattr(model, "config") and hasattr(model.config, "model_type")


def hf_example_inputs(model: nn.Module) -> dict[str, torch.Tensor]:
    """Example keyword inputs for an HF encoder, built from its config: token ids, or
    ``pixel_values`` for a vision encoder, ``input_values`` for a speech encoder (drawn from a
    generator of their own: the global RNG is not touched)."""
    params = inspect.signature(model.forward).parameters
    cfg = model.config
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(0)
    if "input_values" in params:  # raw audio: enough samples for EXAMPLE_SEQ frames of the conv encoder
        return {"input_values": torch.randn(EXAMPLE_BATCH, _audio_samples(cfg, EXAMPLE_SEQ), generator=generator).to(device)}
    if "pixel_values" in params:
        size = cfg.image_size if isinstance(cfg.image_size, int) else tuple(cfg.image_size)
        height, width = (size, size) if isinstance(size, int) else size
        shape = (EXAMPLE_BATCH, cfg.num_channels, height, width)
        return {"pixel_values": torch.randn(shape, generator=generator).to(device)}
    low = min(3, cfg.vocab_size - 1)
    ids = torch.randint(low, cfg.vocab_size, (EXAMPLE_BATCH, EXAMPLE_SEQ), generator=generator)
    ids = ids.to(device)
    mask = torch.ones_like(ids)
    mask[-1, EXAMPLE_SEQ // 2 :] = 0
    inputs = {"input_ids": ids, "attention_mask": mask}
    if "token_type_ids" in params and getattr(cfg, "type_vocab_size", 0):
        inputs["token_type_ids"] = torch.zeros_like(ids)
    return inputs


def _audio_samples(cfg, frames: int) -> int:
    """Samples of raw audio that the config's convolutional feature encoder turns into `frames`."""
    samples = frames
    for kernel, stride in reversed(list(zip(cfg.conv_kernel, cfg.conv_stride))):
        samples = (samples - 1) * stride + kernel
    return samples


def _dynamic_shapes(model: nn.Module, inputs: dict[str, Any]):
    max_seq = getattr(model.config, "max_position_embeddings", 4096)
    batch = Dim("batch", min=1, max=1 << 16)
    seq = Dim("seq", min=1, max=max(max_seq, EXAMPLE_SEQ))
    return {name: {0: batch, 1: seq} for name in inputs}


def _auto_shapes(inputs: dict[str, Any]):
    return {
        name: {i: Dim.AUTO for i in range(value.dim())} if isinstance(value, torch.Tensor) else None
        for name, value in inputs.items()
    }


def capture(model: nn.Module, example_inputs: dict[str, Any] | tuple | None = None) -> PassResult:
    """Capture `model` as an ``OpticalGraphModule`` with torch.export (non-strict).

    Args:
        model: any ``nn.Module``; for an HF model example inputs are built from its config.
        example_inputs: keyword inputs (dict) or positional inputs (tuple); required for
            non-HF modules.

    Returns:
        PassResult whose graph_module is the captured ``OpticalGraphModule``.

    Raises:
        CaptureError: the model does not export; names the model class and the export error.
    """
    hf = _is_hf(model)
    if example_inputs is None:
        if not hf:
            raise CaptureError(f"{type(model).__name__} is not a Hugging Face model: pass example_inputs")
        example_inputs = hf_example_inputs(model)
    if isinstance(example_inputs, (tuple, list)):
        names = list(inspect.signature(model.forward).parameters)[: len(example_inputs)]
        example_inputs = dict(zip(names, example_inputs))
    was_training = model.training
    model.train()
    try:
        with _training_randomness_off(model) as turned_off:
            ep = _export(model, example_inputs, hf)
    finally:
        model.train(was_training)
    exported = ep.module()
    gm = OpticalGraphModule(exported, exported.graph, class_name=type(model).__name__)
    gm.meta.update(exported.meta)
    gm.capture_info = _capture_info(model, example_inputs, hf)
    gm.capture_info.training_randomness_off = dict(turned_off)
    if turned_off:
        what = " and ".join(f"{'SpecAugment' if name == 'apply_spec_augment' else 'LayerDrop'} ({name}={value!r})"
                            for name, value in turned_off.items())
        warnings.warn(f"{type(model).__name__}: captured without {what}: training-time randomness drawn on the host, "
                      "which torch.export cannot record; the captured model trains without it and evaluates as the "
                      "original", stacklevel=2)
    return PassResult(gm, True, record={"model_class": type(model).__name__, "inputs": list(example_inputs),
                                        "training_randomness_off": dict(turned_off)})


@contextlib.contextmanager
def _training_randomness_off(model: nn.Module) -> Iterator[dict[str, Any]]:
    """Turns off, for the capture, the training-time randomness that an HF config enables and
    that the model draws on the host on every call: SpecAugment (``apply_spec_augment`` with a
    mask probability > 0) and LayerDrop (``layerdrop``, ``encoder_layerdrop``, ...). Yields
    what it turned off (attribute -> the config's value), put back afterwards."""
    config = getattr(model, "config", None)
    off: dict[str, Any] = {}
    if config is not None:
        masking = getattr(config, "mask_time_prob", 0) > 0 or getattr(config, "mask_feature_prob", 0) > 0
        if getattr(config, "apply_spec_augment", False) and masking:
            off["apply_spec_augment"] = False
        off.update({name: 0.0 for name, value in vars(config).items()
                    if name.endswith("layerdrop") and isinstance(value, (int, float)) and value > 0})
    saved = {name: getattr(config, name) for name in off}
    for name, value in off.items():
        setattr(config, name, value)
    try:
        yield saved
    finally:
        for name, value in saved.items():
            setattr(config, name, value)


def _export(model: nn.Module, inputs: dict[str, Any], hf: bool):
    # named batch/seq dims for token inputs; images and audio take export's own (Dim.AUTO)
    attempts = [_dynamic_shapes(model, inputs)] if hf and set(inputs) <= set(HF_INPUTS) else []
    attempts.append(_auto_shapes(inputs))
    last: Exception | None = None
    for shapes in attempts:
        try:
            with torch.no_grad():
                return torch.export.export(model, (), dict(inputs), dynamic_shapes=shapes, strict=False)
        except Exception as err:  # export raises many types; the message is what matters
            last = err
    first_line = str(last).strip().splitlines()[0] if str(last).strip() else type(last).__name__
    raise CaptureError(f"cannot capture {type(model).__name__} with torch.export: {type(last).__name__}: {first_line}")


def _capture_info(model: nn.Module, inputs: dict[str, Any], hf: bool) -> CaptureInfo:
    names = tuple(inputs)
    if not hf:
        return CaptureInfo(names, model_class=type(model).__name__)
    defaults = {n: ("ones" if n == "attention_mask" else "zeros") for n in names if n != "input_ids"}
    is_classifier = type(model).__name__.endswith("ForSequenceClassification")
    return CaptureInfo(
        names,
        defaults,
        num_labels=model.config.num_labels if is_classifier else None,
        problem_type=getattr(model.config, "problem_type", None),
        model_class=type(model).__name__,
        hf_model=model,
    )
