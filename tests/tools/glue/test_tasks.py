"""The GLUE task table matches the hub's configs, columns and label ids."""

import pytest

from optopass.tools.errors import DataError
from optopass.tools.glue.tasks import GLUE_TASKS, TASKS, get_task

# task, text columns, label names (hub id order), num_labels, validation splits, headline metric
HUB_TASKS = [
    ("cola", ("sentence",), ("unacceptable", "acceptable"), 2, ("validation",),
     "matthews_correlation"),
    ("sst2", ("sentence",), ("negative", "positive"), 2, ("validation",), "accuracy"),
    ("mrpc", ("sentence1", "sentence2"), ("not_equivalent", "equivalent"), 2, ("validation",),
     "accuracy"),
    ("stsb", ("sentence1", "sentence2"), (), 1, ("validation",), "spearmanr"),
    ("qqp", ("question1", "question2"), ("not_duplicate", "duplicate"), 2, ("validation",),
     "accuracy"),
    ("mnli", ("premise", "hypothesis"), ("entailment", "neutral", "contradiction"), 3,
     ("validation_matched", "validation_mismatched"), "accuracy"),
    ("qnli", ("question", "sentence"), ("entailment", "not_entailment"), 2, ("validation",),
     "accuracy"),
    ("rte", ("sentence1", "sentence2"), ("entailment", "not_entailment"), 2, ("validation",),
     "accuracy"),
    ("wnli", ("sentence1", "sentence2"), ("not_entailment", "entailment"), 2, ("validation",),
     "accuracy"),
]

# task, folder, files per split, header
LAYOUTS = [
    ("cola", "CoLA", {"train": "train.tsv", "validation": "dev.tsv"}, False),
    ("sst2", "SST-2", {"train": "train.tsv", "validation": "dev.tsv"}, True),
    ("mrpc", "MRPC", {"train": "train.tsv", "validation": "dev.tsv"}, True),
    ("stsb", "STS-B", {"train": "train.tsv", "validation": "dev.tsv"}, True),
    ("qqp", "QQP", {"train": "train.tsv", "validation": "dev.tsv"}, True),
    ("mnli", "MNLI", {"train": "train.tsv", "validation_matched": "dev_matched.tsv",
                      "validation_mismatched": "dev_mismatched.tsv"}, True),
    ("qnli", "QNLI", {"train": "train.tsv", "validation": "dev.tsv"}, True),
    ("rte", "RTE", {"train": "train.tsv", "validation": "dev.tsv"}, True),
    ("wnli", "WNLI", {"train": "train.tsv", "validation": "dev.tsv"}, True),
]


def test_table_holds_the_nine_hub_configs_in_order():
    assert [task.name for task in TASKS] == [row[0] for row in HUB_TASKS]
    assert list(GLUE_TASKS) == [row[0] for row in HUB_TASKS]


@pytest.mark.parametrize("name,text,labels,num_labels,validation,headline", HUB_TASKS)
def test_task_matches_hub(name, text, labels, num_labels, validation, headline):
    task = get_task(name)
    assert task.text_columns == text
    assert task.label_names == labels
    assert task.num_labels == num_labels
    assert task.is_regression == (name == "stsb")
    assert task.validation_splits == validation
    assert task.headline_metric == headline


@pytest.mark.parametrize("name,folder,files,has_header", LAYOUTS)
def test_layout_matches_classic_glue_data(name, folder, files, has_header):
    layout = get_task(name).layout
    assert layout.folder == folder
    assert dict(layout.files) == files
    assert layout.has_header == has_header
    assert len(layout.text_columns) == len(get_task(name).text_columns)


def test_mrpc_and_qqp_also_report_f1_and_stsb_pearson():
    assert get_task("mrpc").metrics == ("accuracy", "f1")
    assert get_task("qqp").metrics == ("accuracy", "f1")
    assert get_task("stsb").metrics == ("spearmanr", "pearson")


def test_hub_splits_pair_each_validation_split_with_a_test_split():
    assert get_task("mnli").hub_splits == (
        "train", "validation_matched", "validation_mismatched", "test_matched", "test_mismatched"
    )
    assert get_task("rte").hub_splits == ("train", "validation", "test")


def test_file_name_is_none_for_a_split_without_a_file():
    assert get_task("sst2").layout.file_name("validation") == "dev.tsv"
    assert get_task("sst2").layout.file_name("test") is None


def test_unknown_task_names_the_allowed_ones():
    with pytest.raises(DataError, match=r"unknown GLUE task 'sst-2'; allowed: cola, sst2, .*wnli"):
        get_task("sst-2")
