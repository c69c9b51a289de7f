"""GLUE as the Nomic Embed paper reports it (Table 2): its eight tasks, their data, and the summary of many runs.

Data comes from the Hub (`nyu-mll/glue`) or from local files in the same column format: `{data_dir}/{task}/{split}`
with suffix `.jsonl`, `.json`, `.parquet`, `.csv` or `.tsv` (split `train`, and `validation`, or for MNLI
`validation_matched`), holding the task's text columns and `label` (class id; a 0-5 similarity for STS-B).
Each task's score is the median over seeds of its main metric, for the hyperparameters with the best median.
"""

import statistics
from dataclasses import dataclass
from pathlib import Path

import datasets
from transformers import PreTrainedTokenizerBase

from nomic_bert_hf.data.builders import FILE_BUILDERS, suffixes_read_by

HUB_DATASET = "nyu-mll/glue"
LOCAL_SUFFIXES = suffixes_read_by(("json", "parquet", "csv"))


@dataclass(frozen=True)
class GlueTask:
    name: str  # the nyu-mll/glue config name
    title: str
    text_columns: tuple[str, ...]
    num_labels: int  # 1: regression
    metrics: tuple[str, ...]  # what the GLUE metric reports
    score: str  # the metric the paper's table shows
    validation_split: str = "validation"
    from_mnli: bool = False  # fine-tuned from the MNLI model, as in the paper (following RoBERTa)


TASKS = {
    task.name: task
    for task in (
        GlueTask("cola", "CoLA", ("sentence",), 2, ("matthews_correlation",), "matthews_correlation"),
        GlueTask("sst2", "SST-2", ("sentence",), 2, ("accuracy",), "accuracy"),
        GlueTask("mrpc", "MRPC", ("sentence1", "sentence2"), 2, ("accuracy", "f1"), "accuracy", from_mnli=True),
        GlueTask("stsb", "STS-B", ("sentence1", "sentence2"), 1, ("pearson", "spearmanr"), "pearson", from_mnli=True),
        GlueTask("qqp", "QQP", ("question1", "question2"), 2, ("accuracy", "f1"), "accuracy"),
        GlueTask("mnli", "MNLI", ("premise", "hypothesis"), 3, ("accuracy",), "accuracy", "validation_matched"),
        GlueTask("qnli", "QNLI", ("question", "sentence"), 2, ("accuracy",), "accuracy"),
        GlueTask("rte", "RTE", ("sentence1", "sentence2"), 2, ("accuracy",), "accuracy", from_mnli=True),
    )
}


def task_order(names: list[str], from_mnli: bool) -> list[GlueTask]:
    """The tasks in the paper's order, MNLI first when other tasks start from it."""
    unknown = sorted(set(names) - set(TASKS))
    if unknown:
        raise ValueError(f"unknown GLUE tasks {unknown}; choose from {', '.join(TASKS)}")
    tasks = [TASKS[name] for name in TASKS if name in names]
    if from_mnli and any(task.from_mnli for task in tasks):
        if "mnli" not in names:
            needing = ", ".join(task.title for task in tasks if task.from_mnli)
            raise ValueError(f"{needing} start from the MNLI model: add mnli to tasks or pass --from_mnli false")
        tasks.sort(key=lambda task: task.name != "mnli")
    return tasks


def load_task(task: GlueTask, data_dir: str | Path | None = None) -> datasets.DatasetDict:
    """`train` and `validation` splits of a task, from the Hub or from `data_dir`, checked for the columns it needs."""
    splits = {"train": "train", "validation": task.validation_split}
    if data_dir is None:
        loaded = {name: datasets.load_dataset(HUB_DATASET, task.name, split=split) for name, split in splits.items()}
    else:
        loaded = {name: _load_local(Path(data_dir) / task.name, split) for name, split in splits.items()}
    for name, dataset in loaded.items():
        missing = [column for column in (*task.text_columns, "label") if column not in dataset.column_names]
        if missing:
            raise ValueError(
                f"{task.title} {name} data lacks the columns {missing}; it has {dataset.column_names} (GLUE's own "
                f"column names are {[*task.text_columns, 'label']})"
            )
    return datasets.DatasetDict(loaded)


def _load_local(folder: Path, split: str) -> datasets.Dataset:
    files = [folder / f"{split}{suffix}" for suffix in LOCAL_SUFFIXES if (folder / f"{split}{suffix}").is_file()]
    if len(files) != 1:
        found = ", ".join(map(str, files)) or "none"
        raise FileNotFoundError(
            f"expected one {folder / split}{{{','.join(LOCAL_SUFFIXES)}}} file, found {found}"
        )
    options = {"sep": "\t"} if files[0].suffix == ".tsv" else {}
    return datasets.load_dataset(FILE_BUILDERS[files[0].suffix], data_files=str(files[0]), split="train", **options)


def tokenize_task(dataset: datasets.DatasetDict, tokenizer: PreTrainedTokenizerBase, task: GlueTask,
                  max_seq_length: int) -> datasets.DatasetDict:
    """Model inputs (sentence pairs as `[CLS] a [SEP] b [SEP]` with token types 0 and 1) and float labels for STS-B."""

    def encode(batch):
        encoded = tokenizer(*(batch[column] for column in task.text_columns), truncation=True,
                            max_length=max_seq_length)
        encoded["labels"] = [float(label) for label in batch["label"]] if task.num_labels == 1 else batch["label"]
        return encoded

    columns = dataset["train"].column_names
    return dataset.map(encode, batched=True, remove_columns=columns, desc=f"Tokenizing {task.title}")


def summarize(runs: list[dict]) -> dict:
    """Per task (in the paper's order): the median over seeds of each metric for every (learning rate, batch size), and
    the setting with the best median score. `runs` hold task, learning_rate, batch_size, seed and metrics."""
    summary = {}
    for name in [name for name in TASKS if any(run["task"] == name for run in runs)]:
        task = TASKS[name]
        settings: dict[tuple, list[dict]] = {}
        for run in runs:
            if run["task"] == name:
                settings.setdefault((run["learning_rate"], run["batch_size"]), []).append(run)
        medians = {
            setting: {metric: statistics.median(run["metrics"][metric] for run in group) for metric in task.metrics}
            for setting, group in settings.items()
        }
        best = max(medians, key=lambda setting: medians[setting][task.score])
        summary[name] = {
            "task": task.title,
            "score": medians[best][task.score],
            "score_metric": task.score,
            "metrics": medians[best],
            "learning_rate": best[0],
            "batch_size": best[1],
            "seeds": sorted(run["seed"] for run in settings[best]),
            "all_settings": [
                {"learning_rate": lr, "batch_size": bs, "median": median} for (lr, bs), median in medians.items()
            ],
        }
    return {"tasks": summary, "average": statistics.mean(task["score"] for task in summary.values())}


def markdown_table(summary: dict, model_name: str) -> str:
    """The paper's table layout (a column per task, then the average), and a row per task with every metric."""
    tasks = summary["tasks"]
    header = ["model", *(task["task"] for task in tasks.values()), "average"]
    row = [model_name, *(f"{task['score']:.3f}" for task in tasks.values()), f"{summary['average']:.3f}"]
    lines = [_row(header), _row(["---"] * len(header)), _row(row), "",
             _row(["task", "median over seeds", "learning rate", "batch size", "seeds"]), _row(["---"] * 5)]
    for task in tasks.values():
        metrics = ", ".join(f"{name} {value:.3f}" for name, value in task["metrics"].items())
        lines.append(_row([task["task"], metrics, f"{task['learning_rate']:g}", str(task["batch_size"]),
                           ", ".join(map(str, task["seeds"]))]))
    return "\n".join(lines) + "\n"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"
