"""GLUE metrics as a local `evaluate` module (the Hub's "glue" metric script cannot be fetched offline).

    metric = evaluate.load("evaluation/metrics/glue/glue.py", "mrpc")
    metric.compute(predictions=[1, 0, 1], references=[1, 1, 1])   # {"accuracy": 0.667, "f1": 0.8}

The metrics of the GLUE benchmark: Matthews correlation for CoLA, accuracy and F1 (of the positive class) for MRPC and
QQP, Pearson and Spearman correlation for STS-B, accuracy for the other tasks. (evaluate scans this file's imports for
dependencies: keep one import per line.)
"""

import datasets
import evaluate
from scipy.stats import pearsonr
from scipy.stats import spearmanr
from sklearn.metrics import f1_score
from sklearn.metrics import matthews_corrcoef

_CITATION = """\
@inproceedings{wang2019glue,
  title={{GLUE}: A Multi-Task Benchmark and Analysis Platform for Natural Language Understanding},
  author={Wang, Alex and Singh, Amanpreet and Michael, Julian and Hill, Felix and Levy, Omer and Bowman, Samuel R.},
  booktitle={International Conference on Learning Representations},
  year={2019}
}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: predicted labels (class ids; similarity scores for stsb).
    references: gold labels, in the same form.
Returns: a dict with "matthews_correlation" (cola), "accuracy" and "f1" (mrpc, qqp), "pearson" and "spearmanr"
    (stsb), or "accuracy" (sst2, mnli, mnli_matched, mnli_mismatched, qnli, rte, wnli, hans).
"""

CLASSIFICATION = ("sst2", "mnli", "mnli_matched", "mnli_mismatched", "qnli", "rte", "wnli", "hans")
TASKS = ("cola", "mrpc", "qqp", "stsb", *CLASSIFICATION)


@evaluate.utils.file_utils.add_start_docstrings(__doc__, _KWARGS_DESCRIPTION)
class Glue(evaluate.Metric):
    def _info(self):
        if self.config_name not in TASKS:
            raise KeyError(f"GLUE task {self.config_name!r} is unknown; use one of {', '.join(TASKS)}")
        value = datasets.Value("float32" if self.config_name == "stsb" else "int64")
        return evaluate.MetricInfo(
            description=__doc__,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": value, "references": value}),
            format="numpy",
        )

    def _compute(self, predictions, references):
        if self.config_name == "cola":
            return {"matthews_correlation": float(matthews_corrcoef(references, predictions))}
        if self.config_name == "stsb":
            return {
                "pearson": float(pearsonr(predictions, references)[0]),
                "spearmanr": float(spearmanr(predictions, references)[0]),
            }
        accuracy = float((predictions == references).mean())
        if self.config_name in ("mrpc", "qqp"):
            return {"accuracy": accuracy, "f1": float(f1_score(references, predictions))}
        return {"accuracy": accuracy}
