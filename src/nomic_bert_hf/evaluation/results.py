"""mteb's result files read back and summarised: per task, task type, sequence length and embedding precision.

mteb writes bare `NaN` into its JSON (metrics that are undefined for a task, such as nAUC with a single relevant
document); Python's and pydantic's JSON readers accept it, and every table here shows a missing or undefined score as
`n/a` instead of propagating NaN into averages or the model card.
"""

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean

import mteb
import yaml
from mteb.results import TaskResult

from .harness import TASK_METADATA_DIR
from .protocol import PROTOCOL_MAX_SEQ_LENGTH
from .quantization import PRECISIONS

LENGTH_KEYS = {"max_seq_length", "rotary_scaling_factor"}  # experiments that only change the context length


@dataclass(frozen=True)
class EvaluationRun:
    """The results of one model revision under one setting (`experiment` is empty for Nomic's standard protocol)."""

    model_name: str
    revision: str
    experiment: dict
    folder: Path
    results: dict[str, TaskResult] = field(default_factory=dict)

    def score(self, task: str) -> float | None:
        """The main score mteb computed for `task` (mean over splits and subsets), None where it is undefined."""
        result = self.results.get(task)
        if result is None:
            return None
        value = float(result.get_score())  # mteb's own main score; NaN (undefined) becomes None, shown as n/a
        return value if math.isfinite(value) else None

    @property
    def max_seq_length(self) -> int:
        return int(self.experiment.get("max_seq_length", PROTOCOL_MAX_SEQ_LENGTH))

    @property
    def precision(self) -> str:
        return self.experiment.get("precision", PRECISIONS[0])


def find_runs(results_dir: str | Path, *, revision: str | None = None,
              model_name: str | None = None) -> list[EvaluationRun]:
    """Every run in an mteb result cache, optionally only those of one revision and/or model name.

    mteb's `ResultCache.load_results` reads the cache (standard and experiment folders, `model_meta.json`, task
    results); kept here: one `EvaluationRun` per (model, revision, experiment) with its folder and experiment settings,
    in folder order (standard runs first), since mteb's tables key on the model name only and would merge experiments.
    """
    if not (Path(results_dir) / "results").is_dir():  # ResultCache would create the folder
        return []
    cache = mteb.ResultCache(results_dir)
    loaded = cache.load_results(include_remote=False, load_experiments="match_name")
    runs = [
        EvaluationRun(result.model_name, result.model_revision, dict(result.model_meta.experiment_kwargs or {}),
                      cache.get_task_result_path(result.task_results[0].task_name, result.model_meta).parent,
                      {task.task_name: task for task in sorted(result.task_results, key=lambda task: task.task_name)})
        for result in loaded
        if (revision is None or result.model_revision == revision)
        and (model_name is None or result.model_name == model_name)
    ]
    return sorted(runs, key=lambda run: (bool(run.experiment), run.folder))


def task_info(results_dir: str | Path, task_name: str) -> dict:
    """Type and main score of a task: as recorded at evaluation time, else from mteb's registry.

    Kept: mteb's `BenchmarkResults` looks task types up in its registry only, which lacks the local tasks."""
    record = Path(results_dir) / TASK_METADATA_DIR / f"{task_name}.yaml"
    if record.is_file():
        return yaml.safe_load(record.read_text())
    try:
        metadata = mteb.get_task(task_name).metadata
    except KeyError:
        return {"name": task_name, "type": "Unknown", "main_score": "main_score", "dataset": {}}
    return {"name": task_name, "type": metadata.type, "main_score": metadata.main_score,
            "dataset": dict(metadata.dataset), "reference": metadata.reference}


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    """Kept: mteb gives DataFrames; the card and results.md want these exact tables, n/a for undefined scores."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def task_rows(run: EvaluationRun, results_dir: str | Path) -> list[dict]:
    """One row per task: name, type, main metric and score."""
    rows = []
    for task in sorted(run.results):
        info = task_info(results_dir, task)
        rows.append({"task": task, "type": info["type"], "metric": info["main_score"], "score": run.score(task),
                     "dataset": info.get("dataset") or {}})
    return sorted(rows, key=lambda row: (row["type"], row["task"]))


def category_rows(task_table: list[dict]) -> list[dict]:
    """Mean main score per task type, then the mean over all tasks (as MTEB averages); undefined scores left out.

    Kept: mteb's `get_aggregated_scores` gives no per-type rows and is None as soon as one score is NaN."""
    by_type = defaultdict(list)
    for row in task_table:
        if row["score"] is not None:
            by_type[row["type"]].append(row["score"])
    rows = [{"type": task_type, "tasks": len(scores), "score": mean(scores)}
            for task_type, scores in sorted(by_type.items())]
    every = [score for scores in by_type.values() for score in scores]
    if every:
        rows.append({"type": "Average", "tasks": len(every), "score": mean(every)})
    return rows


def length_scores(runs: list[EvaluationRun]) -> dict[str, dict[int, float | None]]:
    """task -> {sequence length: score} for the tasks evaluated at a length other than the standard one (the
    standard run supplies their 512-token column). Runs that also change other settings are left out.
    Kept: mteb's `to_dataframe` keys on the model name, so it has no column per experiment."""
    length_runs = [run for run in runs if set(run.experiment) <= LENGTH_KEYS]
    long_tasks = {task for run in length_runs if "max_seq_length" in run.experiment for task in run.results}
    table: dict[str, dict[int, float | None]] = {task: {} for task in sorted(long_tasks)}
    for run in sorted(length_runs, key=lambda run: run.max_seq_length):
        for task in long_tasks & set(run.results):
            table[task][run.max_seq_length] = run.score(task)
    return table


def other_settings(experiment: dict | None) -> dict:
    """An experiment's settings other than the embedding precision."""
    return {key: value for key, value in (experiment or {}).items() if key != "precision"}


def precision_scores(runs: list[EvaluationRun], settings: dict | None = None) -> dict[str, dict[str, float | None]]:
    """task -> {precision: score} for the tasks evaluated on quantized embeddings, among the runs whose other
    settings are `settings` (default: Nomic's protocol); the float32 run of those settings supplies that column.
    Kept, as `length_scores`: mteb's tables have no column per experiment."""
    precision_runs = [run for run in runs if other_settings(run.experiment) == (settings or {})]
    quantized_tasks = {task for run in precision_runs if "precision" in run.experiment for task in run.results}
    table: dict[str, dict[str, float | None]] = {task: {} for task in sorted(quantized_tasks)}
    for run in precision_runs:
        for task in quantized_tasks & set(run.results):
            table[task][run.precision] = run.score(task)
    return table


def column_mean(table: dict[str, dict[str, float | None]], precision: str) -> float | None:
    """The mean over every task, None unless every task has a score."""
    values = [scores.get(precision) for scores in table.values()]
    return mean(values) if values and None not in values else None


def markdown_precision_table(table: dict[str, dict[str, float | None]]) -> str:
    """Main score per task and precision (x100), each quantized score's difference to float32, and the means."""
    reference = PRECISIONS[0]
    precisions = [precision for precision in PRECISIONS if any(precision in scores for scores in table.values())]
    headers = ["Task"]
    for precision in precisions:
        headers += [precision] if precision == reference else [precision, f"{precision} - {reference}"]

    def cells(scores: dict[str, float | None]) -> list[str]:
        row = []
        for precision in precisions:
            row.append(percent(scores.get(precision)))
            if precision != reference:
                value, base = scores.get(precision), scores.get(reference)
                row.append("n/a" if value is None or base is None else f"{100 * (value - base):+.2f}")
        return row

    means = {precision: column_mean(table, precision) for precision in precisions}
    rows = [[task, *cells(scores)] for task, scores in table.items()]
    return markdown_table(headers, rows + [["Mean", *cells(means)]])


def markdown_task_table(rows: list[dict]) -> str:
    return markdown_table(["Task", "Type", "Metric", "Score"],
                          [[row["task"], row["type"], row["metric"], percent(row["score"])] for row in rows])


def markdown_category_table(rows: list[dict]) -> str:
    return markdown_table(["Task type", "Tasks", "Mean score"],
                          [[row["type"], str(row["tasks"]), percent(row["score"])] for row in rows])


def markdown_length_table(table: dict[str, dict[int, float | None]]) -> str:
    lengths = sorted({length for scores in table.values() for length in scores})
    rows = [[task, *(percent(scores.get(length)) for length in lengths)] for task, scores in table.items()]
    means = []
    for length in lengths:
        values = [scores[length] for scores in table.values() if scores.get(length) is not None]
        means.append(percent(mean(values)) if len(values) == len(table) else "n/a")
    rows.append(["Mean", *means])
    return markdown_table(["Task", *(f"{length} tokens" for length in lengths)], rows)
