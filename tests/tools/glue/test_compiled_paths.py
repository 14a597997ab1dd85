"""The compiled user paths on the CPU (compile forced on; it is off there by default): length
buckets, evaluate_glue compiled against eager on real dev rows, a compiled fine-tune that is
saved, reloaded and resumed. One length bucket (max_seq_length 32) keeps each run to one graph."""

import pytest
import torch
from safetensors.torch import load_file

import optopass
from optopass.tools.glue import pipeline
from optopass.tools.glue.evaluator import bucket_length, evaluate_glue, pad_batch
from optopass.tools.glue.trainer import CHECKPOINTS, GlueCollator, finetune
from optopass.tools.io import is_saved_transform

MAX_SEQ_LENGTH = 32


@pytest.mark.parametrize("longest,multiple,cap,expected", [
    (5, 32, 128, 32), (32, 32, 128, 32), (33, 32, 128, 64), (120, 32, 128, 128), (100, 32, 100, 100),
    (100, 64, 110, 110), (3, 8, None, 8), (5, None, 128, 5),
])
def test_bucket_length_rounds_up_and_never_past_the_cap(longest, multiple, cap, expected):
    assert bucket_length(longest, multiple, cap) == expected


def test_pad_batch_pads_to_the_bucket_and_fills_rows():
    batch = pad_batch({"input_ids": [[5, 6, 7], [5]], "attention_mask": [[1, 1, 1], [1]]}, 0,
                      pad_to_multiple_of=8, max_length=12, num_rows=3)
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (3, 8)
    assert batch["input_ids"][0].tolist() == [5, 6, 7, 0, 0, 0, 0, 0]
    # a filler row attends to one padding token: no row is fully masked
    assert batch["input_ids"][2].tolist() == [0] * 8 and batch["attention_mask"][2].tolist() == [1] + [0] * 7
    capped = pad_batch({"input_ids": [[1] * 10]}, 0, pad_to_multiple_of=8, max_length=12)
    assert capped["input_ids"].shape == (1, 12)


def test_collator_pads_to_a_bucket_capped_at_max_seq_length(tiny_bert_dir):
    _, tokenizer = pipeline.load_model(str(tiny_bert_dir), "sst2")
    collate = GlueCollator(tokenizer, ("input_ids", "attention_mask"), regression=False, pad_to_multiple_of=32,
                           max_length=40)
    short = [dict(tokenizer("a b c"), label=1), dict(tokenizer("a"), label=0)]
    assert collate(short)["input_ids"].shape == (2, 32)
    long = [dict(tokenizer(" ".join(["word"] * 35), truncation=True, max_length=40), label=1), *short]
    assert collate(long)["input_ids"].shape == (3, 40)


def test_compiled_evaluation_scores_as_eager_on_real_stsb(make_tiny_classifier, tmp_path, real_glue_dir):
    """Same padding, same dither keys: the regression scores agree to float rounding."""
    folder = make_tiny_classifier(tmp_path / "tiny-stsb", num_labels=1)
    model, tokenizer = pipeline.load_model(str(folder), "stsb")
    gm, _ = pipeline.transform(model, "stsb", None, 2, tokenizer=tokenizer, glue_dir=real_glue_dir,
                               calibrate_batch_size=8, max_seq_length=MAX_SEQ_LENGTH)
    state = {key: value.clone() for key, value in gm.state_dict().items()}
    options = dict(glue_dir=real_glue_dir, batch_size=8, limit=20, max_seq_length=MAX_SEQ_LENGTH, progress=False)

    eager = evaluate_glue(gm, "stsb", tokenizer, compile=False, **options)
    gm.load_state_dict(state)  # the dither counters start where the eager run started
    compiled = evaluate_glue(gm, "stsb", tokenizer, compile=True, **options)

    assert eager["compiled"] is False and compiled["compiled"] is True
    assert compiled["n_examples"] == eager["n_examples"] == 20  # the filled-up last batch's extra rows dropped
    for name, value in eager["metrics"].items():
        assert compiled["metrics"][name] == pytest.approx(value, abs=1e-5), name
    assert compiled["compile_seconds"] > 0 and compiled["samples_per_second"] > 0


def test_compiled_finetune_is_saved_reloaded_and_resumed(tiny_bert_dir, tmp_path, real_glue_dir):
    model, tokenizer = pipeline.load_model(str(tiny_bert_dir), "sst2")
    gm, _ = pipeline.transform(model, "sst2", None, 2, tokenizer=tokenizer, glue_dir=real_glue_dir,
                               calibrate_batch_size=8, max_seq_length=MAX_SEQ_LENGTH)
    options = dict(glue_dir=real_glue_dir, max_seq_length=MAX_SEQ_LENGTH, eval_strategy="steps", eval_steps=1,
                   learning_rate=1e-3, load_best_model_at_end=False, per_device_train_batch_size=8,
                   max_train_samples=32, max_eval_samples=8, logging_steps=1, progress=False, save_total_limit=5,
                   compile=True)

    first = finetune(gm, "sst2", tokenizer, output_dir=tmp_path / "first", max_steps=2, **options)
    assert first.speed["compiled"] is True and first.speed["compile_seconds"] > 0
    checkpoint = tmp_path / "first" / CHECKPOINTS / "checkpoint-2"
    assert is_saved_transform(checkpoint)
    assert not any("_orig_mod" in key for key in load_file(str(checkpoint / "model.safetensors")))

    reloaded = optopass.load(tmp_path / "first")
    resumed = finetune(reloaded, "sst2", tokenizer, output_dir=tmp_path / "resumed", max_steps=4,
                       resume_from_checkpoint=str(checkpoint), **options)
    assert resumed.settings["global_step"] == 4
    trained = resumed.model.state_dict()
    at_checkpoint = load_file(str(checkpoint / "model.safetensors"))
    assert any(not torch.equal(at_checkpoint[key], trained[key].cpu()) for key in at_checkpoint if key in trained)

    final = optopass.load(tmp_path / "resumed")
    inputs = dict(tokenizer(["a gripping film", "dull"], padding=True, return_tensors="pt"))
    with torch.no_grad():
        assert torch.equal(final(**inputs).logits, resumed.model.eval()(**inputs).logits)


@pytest.mark.parametrize("optical", [False, True])
def test_finetune_trains_and_evaluates_under_the_patches(optical, monkeypatch, tiny_bert_dir, tmp_path, real_glue_dir):
    """The Trainer compiles inside train() and evaluate(): both run with the patches on; an
    optical model's also without persistent reductions (tools/compiling.py says why)."""
    from transformers import Trainer

    seen = []
    real_train, real_evaluate = Trainer.train, Trainer.evaluate

    def settings():
        return torch._inductor.config.size_asserts, torch._inductor.config.triton.persistent_reductions

    def train(self, *args, **kwargs):
        seen.append(("train", *settings()))
        return real_train(self, *args, **kwargs)

    def evaluate(self, *args, **kwargs):
        seen.append(("evaluate", *settings()))
        return real_evaluate(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "train", train)
    monkeypatch.setattr(Trainer, "evaluate", evaluate)
    model, tokenizer = pipeline.load_model(str(tiny_bert_dir), "rte")
    if optical:
        model, _ = pipeline.transform(model, "rte", None, 1, tokenizer=tokenizer, glue_dir=real_glue_dir,
                                      calibrate_batch_size=4, max_seq_length=32)
    finetune(model, "rte", tokenizer, glue_dir=real_glue_dir, output_dir=tmp_path / "ft", max_steps=1,
             max_train_samples=8, max_eval_samples=8, per_device_train_batch_size=4, max_seq_length=32,
             progress=False, compile=False)
    assert seen[0] == ("train", False, not optical) and ("evaluate", False, not optical) in seen
    assert len(seen) >= 2 and all(row[1:] == (False, not optical) for row in seen)
    assert settings() == (True, True)


def test_compiled_finetune_traces_one_graph_for_every_batch_shape(monkeypatch, tiny_bert_dir, tmp_path,
                                                                  real_glue_dir):
    """Batches of several padded lengths and a shorter last batch: one compile of the training
    step (torch.compile's default traces the first shape static and a second, dynamic graph at
    the first other shape)."""
    import torch._dynamo.utils as dynamo_utils

    shapes = []
    real_call = GlueCollator.__call__

    def call(self, rows):
        batch = real_call(self, rows)
        shapes.append(tuple(batch["input_ids"].shape))
        return batch

    monkeypatch.setattr(GlueCollator, "__call__", call)
    model, tokenizer = pipeline.load_model(str(tiny_bert_dir), "sst2")
    torch._dynamo.reset()
    dynamo_utils.counters.clear()
    try:
        finetune(model, "sst2", tokenizer, glue_dir=real_glue_dir, output_dir=tmp_path / "ft", max_steps=5,
                 max_train_samples=36, per_device_train_batch_size=8, max_seq_length=64, pad_to_multiple_of=8,
                 eval_strategy="no", progress=False, compile=True)
        graphs = dynamo_utils.counters["stats"]["unique_graphs"]
    finally:
        torch._dynamo.reset()
    assert len({length for _, length in shapes}) >= 2 and len({rows for rows, _ in shapes}) == 2, shapes
    assert graphs == 1
