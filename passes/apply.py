"""``apply_optical_pass``: capture a model and rewrite it into optical ops."""

from __future__ import annotations

from functools import partial
from typing import Any

import torch.fx
from torch import nn

from ..tools.config import OpticalConfig, load_config
from .base import run_passes
from .capture import OpticalGraphModule, capture
from .cleanup import drop_capture_asserts
from .optical import quant
from .optical.clock import add_dither_clock
from .optical.fold import fold_attention_output_quant
from .optical.rewrite import optical_rewrite
from .train_mode import make_mode_aware


def apply_optical_pass(model: nn.Module, config: OpticalConfig | dict | str | None = None, example_inputs: Any = None) -> OpticalGraphModule:
    """Capture `model` as an fx graph and rewrite its linear layers and attention matmuls into
    simulated optical ops.

    Args:
        model: any ``nn.Module``; for a Hugging Face model, example inputs are built from its
            config when not given. The returned module shares the model's parameters (no
            copy): training it, or moving it to another dtype, changes the model too.
        config: an ``OpticalConfig``, a mapping or YAML path for ``load_config``, or None for
            the default ``transform_cfg.yaml``.
        example_inputs: keyword (dict) or positional (tuple) example inputs for the capture.

    Returns:
        An ``OpticalGraphModule`` (a ``torch.fx.GraphModule``) callable with the model's keyword
        inputs and returning its output type; ``.optical_record`` holds what was rewritten.
    """
    config = load_config(config)
    gm = capture(model, example_inputs).graph_module
    gm, results = run_passes(
        gm,
        [
            ("drop_capture_asserts", drop_capture_asserts),
            ("optical_rewrite", partial(optical_rewrite, config=config)),
            ("fold_attention_output_quant", fold_attention_output_quant),
            ("add_dither_clock", add_dither_clock),
            ("make_mode_aware", make_mode_aware),
        ],
    )
    gm.optical_config = config
    gm.optical_record = results["optical_rewrite"].record
    gm.train(model.training)
    quant.register_inductor_lowering()  # before the model is compiled, if it is: one hash op
    return gm
