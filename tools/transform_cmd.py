"""``optopass transform``: load, transform, calibrate, report fidelity, optionally save."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .checks import check_values, integer
from .errors import DataError
from .samples import SAMPLE_SENTENCES


def read_sentences(path: str | None) -> list[str]:
    """Sentences from a text file (one per line, blank lines ignored), or the built-in samples."""
    if path is None:
        return list(SAMPLE_SENTENCES)
    file = Path(path)
    if not file.is_file():
        raise DataError(f"calibration data file {path!r} does not exist (give a text file, one sentence per line)")
    sentences = [line.strip() for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not sentences:
        raise DataError(f"{path}: no sentences (give a text file, one sentence per line)")
    return sentences


def sentence_batches(tokenizer, sentences: list[str], batch_size: int, n_batches: int, max_length: int = 128) -> list[dict]:
    """Tokenized batches cycling over `sentences`."""
    out = []
    for i in range(n_batches):
        chunk = [sentences[(i * batch_size + j) % len(sentences)] for j in range(batch_size)]
        out.append(dict(tokenizer(chunk, padding=True, truncation=True, max_length=max_length, return_tensors="pt")))
    return out


def run_transform(*, model: str | None, cfg: str | None, num_labels: int | None = None, out: str | None = None,
                  calibrate_data: str | None = None, calibrate_batches: int = 4, batch_size: int = 8,
                  attn_implementation: str = "sdpa", seed: int = 0, progress: bool = False) -> dict[str, Any]:
    """Run the transform job and return its result as a plain dict (what ``--json`` prints).

    `seed` draws the weights the checkpoint lacks (a new classification head), so a run's
    fidelity figures repeat; the caller's global RNG state is left as it was. `progress`
    shows the calibration bar."""
    from .. import apply_optical_pass, calibrate, load_config, save
    from .io import check_output_folder
    from .models import load_classifier, resolve_model_name
    from .report import sqnr_db, summarize

    check_values({"calibrate_batches": calibrate_batches, "batch_size": batch_size, "seed": seed},
                 {"calibrate_batches": integer(1), "batch_size": integer(1), "seed": integer(0)}, as_flags=True)
    if out is not None:
        check_output_folder(out, "--out")
    config = load_config(cfg)  # validate before the (slow) model load
    sentences = read_sentences(calibrate_data)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        hf_model, tokenizer = load_classifier(model, num_labels=num_labels, attn_implementation=attn_implementation)
    hf_model.eval()
    gm = apply_optical_pass(hf_model, config)
    batches = sentence_batches(tokenizer, sentences, batch_size, calibrate_batches)
    calibrate(gm, batches, progress=progress)
    probe = batches[0]
    with torch.no_grad():
        ref = hf_model(**probe).logits
        got = gm(**probe).logits
    summary = summarize(gm)
    result = {
        "model": resolve_model_name(model),
        "model_class": type(hf_model).__name__,
        "config": config.source or "default",
        "rewritten": summary["by_kind"],
        "optical_matmuls": dict(summary["optical_matmuls"]),
        "untransformed": summary["skipped"],
        "fidelity": {
            "logits_sqnr_db": round(sqnr_db(ref, got), 2),
            "argmax_agreement": float((ref.argmax(-1) == got.argmax(-1)).float().mean()),
            "n_examples": int(ref.shape[0]),
        },
        "calibration": {"batches": calibrate_batches, "batch_size": batch_size},
        "seed": seed,
    }
    if out is not None:
        result["saved_to"] = str(save(gm, out, tokenizer=tokenizer))
    return result


def format_transform(result: dict[str, Any]) -> str:
    """The human-readable table of ``optopass transform``."""
    lines = [f"model: {result['model']} ({result['model_class']})", f"config: {result['config']}", ""]
    lines.append(f"{'kind':<6}{'optical':>9}{'skipped':>9}{'bypassed':>10}{'declined':>10}   optical matmuls")
    for kind, counts in result["rewritten"].items():
        lines.append(
            f"{kind:<6}{counts.get('optical', 0):>9}{counts.get('skipped', 0):>9}{counts.get('bypassed', 0):>10}"
            f"{counts.get('declined', 0):>10}   {result['optical_matmuls'].get(kind, 0)}"
        )
    if result["untransformed"]:
        lines.append("")
        lines.append("left as the original op:")
        for item in result["untransformed"]:
            lines.append(f"  {item['site']}  ({item['reason']})")
    fid = result["fidelity"]
    lines.append("")
    lines.append(
        f"fidelity: logits SQNR {fid['logits_sqnr_db']:.2f} dB against the original, argmax agreement "
        f"{fid['argmax_agreement']:.0%} on {fid['n_examples']} sentences (calibrated on "
        f"{result['calibration']['batches']}x{result['calibration']['batch_size']})"
    )
    if "saved_to" in result:
        lines.append(f"saved to {result['saved_to']}")
    return "\n".join(lines)
