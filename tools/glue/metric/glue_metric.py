"""The official GLUE metric of each task, as an ``evaluate`` metric module.

Load it with ``evaluate.load("<path to this file>", "<task>")``; nothing is downloaded. The file
is self-contained because ``evaluate`` copies it into its module cache before importing it.
"""

import datasets
import evaluate
import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import f1_score, matthews_corrcoef

_DESCRIPTION = """\
The official metric of each GLUE task: Matthews correlation (cola), accuracy (sst2, mnli, qnli,
rte, wnli), accuracy and F1 of the positive class (mrpc, qqp), Pearson and Spearman correlation
(stsb).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: predicted class ids, or predicted scores for stsb.
    references: gold class ids, or gold scores for stsb.
Returns: a dict with, per task,
    "matthews_correlation" (cola), "accuracy" (sst2, mnli, qnli, rte, wnli),
    "accuracy" and "f1" (mrpc, qqp), "pearson" and "spearmanr" (stsb).
Examples:
    >>> metric = evaluate.load("glue_metric.py", "mrpc")
    >>> metric.compute(predictions=[0, 1], references=[0, 1])
    {'accuracy': 1.0, 'f1': 1.0}
"""

_CITATION = """\
@inproceedings{wang2019glue,
  title={{GLUE}: A Multi-Task Benchmark and Analysis Platform for Natural Language Understanding},
  author={Wang, Alex and Singh, Amanpreet and Michael, Julian and Hill, Felix and Levy, Omer
          and Bowman, Samuel R.},
  booktitle={International Conference on Learning Representations},
  year={2019}
}
"""


def _accuracy(predictions, references):
    return {"accuracy": float((predictions == references).mean())}


def _accuracy_and_f1(predictions, references):
    return {
        **_accuracy(predictions, references),
        "f1": float(f1_score(y_true=references, y_pred=predictions)),
    }


def _correlations(predictions, references):
    return {
        "pearson": float(pearsonr(predictions, references)[0]),
        "spearmanr": float(spearmanr(predictions, references)[0]),
    }


def _matthews(predictions, references):
    return {"matthews_correlation": float(matthews_corrcoef(references, predictions))}


# task -> function of (predictions, references) numpy arrays returning the metric dict
_METRIC_OF_TASK = {
    "cola": _matthews,
    "sst2": _accuracy,
    "mrpc": _accuracy_and_f1,
    "stsb": _correlations,
    "qqp": _accuracy_and_f1,
    "mnli": _accuracy,
    "qnli": _accuracy,
    "rte": _accuracy,
    "wnli": _accuracy,
}


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class GlueMetric(evaluate.Metric):
    """The GLUE metric; ``config_name`` is the task's hub config name (``sst2``, ...)."""

    def _info(self):
        if self.config_name not in _METRIC_OF_TASK:
            allowed = ", ".join(_METRIC_OF_TASK)
            raise KeyError(f"unknown GLUE task {self.config_name!r}; allowed: {allowed}")
        value = "float32" if self.config_name == "stsb" else "int64"
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value(value), "references": datasets.Value(value)}
            ),
            format="numpy",
            reference_urls=["https://gluebenchmark.com/"],
        )

    def _compute(self, predictions, references):
        metric = _METRIC_OF_TASK[self.config_name]
        return metric(np.asarray(predictions), np.asarray(references))
