"""The shipped GLUE metric module against scikit-learn and scipy on fixed vectors."""

import socket

import evaluate
import numpy as np
import pytest
import torch
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from optopass.tools.errors import DataError
from optopass.tools.glue.metrics import (
    METRIC_SCRIPT,
    compute_glue_metrics,
    load_glue_metric,
    predictions_from_logits,
)
from optopass.tools.glue.tasks import TASKS

PREDS = [0, 1, 1, 0, 1, 1, 0, 0, 1, 1]
REFS = [0, 1, 0, 0, 1, 1, 1, 0, 1, 0]
PREDS3 = [0, 1, 2, 2, 1, 0, 2, 1, 0, 0]
REFS3 = [0, 1, 2, 1, 1, 0, 2, 2, 0, 1]
SCORES = [0.1, 1.9, 2.4, 3.3, 4.8, 2.2, 0.7, 3.9]
GOLD = [0.0, 2.0, 2.5, 3.0, 5.0, 1.5, 1.0, 4.2]


def _accuracy(preds, refs):
    return {"accuracy": accuracy_score(refs, preds)}


def _accuracy_f1(preds, refs):
    return {"accuracy": accuracy_score(refs, preds), "f1": f1_score(refs, preds)}


def _matthews(preds, refs):
    return {"matthews_correlation": matthews_corrcoef(refs, preds)}


def _correlations(preds, refs):
    return {"pearson": pearsonr(preds, refs)[0], "spearmanr": spearmanr(preds, refs)[0]}


# task, predictions, references, reference implementation
CASES = [
    ("cola", PREDS, REFS, _matthews),
    ("sst2", PREDS, REFS, _accuracy),
    ("mrpc", PREDS, REFS, _accuracy_f1),
    ("stsb", SCORES, GOLD, _correlations),
    ("qqp", PREDS, REFS, _accuracy_f1),
    ("mnli", PREDS3, REFS3, _accuracy),
    ("qnli", PREDS, REFS, _accuracy),
    ("rte", PREDS, REFS, _accuracy),
    ("wnli", PREDS, REFS, _accuracy),
]


def test_every_task_has_a_case():
    assert [case[0] for case in CASES] == [task.name for task in TASKS]


@pytest.mark.parametrize("task,preds,refs,reference", CASES)
def test_metric_module_matches_sklearn_and_scipy(task, preds, refs, reference):
    metric = load_glue_metric(task)
    assert isinstance(metric, evaluate.Metric)
    assert metric.config_name == task
    scores = metric.compute(predictions=preds, references=refs)
    expected = reference(preds, refs)
    assert scores.keys() == expected.keys()
    for key, value in expected.items():
        assert scores[key] == pytest.approx(value, abs=1e-6)


@pytest.mark.parametrize("task,preds,refs,reference", CASES)
def test_metric_keys_are_the_task_table_metrics(task, preds, refs, reference):
    (spec,) = [t for t in TASKS if t.name == task]
    assert set(compute_glue_metrics(task, preds, refs)) == set(spec.metrics)


def test_metric_module_accepts_batches():
    metric = load_glue_metric("mrpc")
    metric.add_batch(predictions=PREDS[:5], references=REFS[:5])
    metric.add_batch(predictions=PREDS[5:], references=REFS[5:])
    assert metric.compute() == pytest.approx(_accuracy_f1(PREDS, REFS))


def test_load_needs_no_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(evaluate.config, "HF_EVALUATE_OFFLINE", True)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    scores = evaluate.load(str(METRIC_SCRIPT), "rte").compute(predictions=[1, 0], references=[1, 1])
    assert scores == {"accuracy": 0.5}


def test_metric_script_is_shipped_next_to_the_package():
    assert METRIC_SCRIPT.is_file()
    assert METRIC_SCRIPT.parent.name == "metric"


def test_unknown_task_is_a_data_error():
    with pytest.raises(DataError, match=r"unknown GLUE task 'glue'; allowed: cola, "):
        load_glue_metric("glue")


# --- compute_glue_metrics: logits in, metric dict out ------------------------------------------


def test_logits_are_argmaxed():
    logits = torch.tensor([[2.0, -1.0, 0.0], [0.0, 3.0, 1.0], [0.1, 0.2, 0.3]])
    assert predictions_from_logits("mnli", logits).tolist() == [0, 1, 2]
    assert compute_glue_metrics("mnli", logits, [0, 1, 1]) == pytest.approx({"accuracy": 2 / 3})


def test_bf16_logits_on_any_device_are_accepted():
    logits = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.bfloat16)
    assert compute_glue_metrics("sst2", logits, torch.tensor([1, 0])) == {"accuracy": 1.0}


def test_stsb_scores_are_squeezed():
    column = np.array(SCORES, dtype=np.float32)[:, None]
    assert predictions_from_logits("stsb", column).shape == (len(SCORES),)
    scores = compute_glue_metrics("stsb", column, GOLD)
    assert scores == pytest.approx(_correlations(SCORES, GOLD), abs=1e-6)


def test_class_ids_pass_through():
    assert compute_glue_metrics("cola", PREDS, REFS) == pytest.approx(_matthews(PREDS, REFS))


def test_metric_values_are_plain_floats():
    scores = compute_glue_metrics("qqp", np.array(PREDS), np.array(REFS))
    assert all(type(value) is float for value in scores.values())


@pytest.mark.parametrize("task,values,pattern", [
    ("sst2", [[0.1, 0.2, 0.3]], r"sst2: predictions of shape \(1, 3\) do not fit; expected "
                                r"\(n,\) or \(n, 2\)$"),
    ("stsb", [[0.1, 0.2]], r"stsb: predictions of shape \(1, 2\) do not fit"),
    ("rte", np.zeros((2, 2, 2)), r"rte: predictions of shape \(2, 2, 2\) do not fit"),
])
def test_predictions_of_the_wrong_shape(task, values, pattern):
    with pytest.raises(DataError, match=pattern):
        compute_glue_metrics(task, values, [0])


def test_predictions_and_labels_must_pair_up():
    with pytest.raises(DataError, match=r"rte: 3 predictions but 2 labels"):
        compute_glue_metrics("rte", [0, 1, 1], [0, 1])
