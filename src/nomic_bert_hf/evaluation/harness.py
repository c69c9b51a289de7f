"""One entry point to mteb's harness: `mteb.evaluate` with a result cache, so an interrupted run continues.

Results go to `<results_dir>/results/<model name>/<revision>/[experiments/<settings>/]<Task>.json` (mteb's layout);
a rerun skips every task already there. Beside mteb's files, `<results_dir>/task_metadata/<Task>.yaml` records each
task's type and main score, which readers need for tasks that are not in mteb's registry (local tasks).
A cached result of a local task whose data changed since (another dataset revision) is evaluated again.
"""

import logging
from collections.abc import Sequence
from pathlib import Path

import mteb
import yaml
from mteb.abstasks import AbsTask
from mteb.models.model_meta import ModelMeta
from mteb.results import ModelResult

logger = logging.getLogger(__name__)

TASK_METADATA_DIR = "task_metadata"


def model_meta_of(model) -> ModelMeta:
    return model if isinstance(model, ModelMeta) else model.mteb_model_meta


def run_folder(results_dir: str | Path, meta: ModelMeta) -> Path:
    """The folder mteb writes this model's (and experiment's) results to."""
    return mteb.ResultCache(results_dir).get_task_result_path("task", meta).parent


def record_task_metadata(results_dir: str | Path, tasks: Sequence[AbsTask]) -> None:
    folder = Path(results_dir) / TASK_METADATA_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for task in tasks:
        metadata = task.metadata
        record = {
            "name": metadata.name,
            "type": metadata.type,
            "main_score": metadata.main_score,
            "dataset": {"path": metadata.dataset["path"], "revision": metadata.dataset["revision"]},
            "reference": metadata.reference,
            "description": metadata.description,
        }
        (folder / f"{metadata.name}.yaml").write_text(yaml.safe_dump(record, sort_keys=False))


def stale_tasks(cache: mteb.ResultCache, meta: ModelMeta, tasks: Sequence[AbsTask]) -> list[AbsTask]:
    """Tasks whose cached result was computed on another revision of their data."""
    stale = []
    for task in tasks:
        cached = cache.load_task_result(task.metadata.name, meta)
        if cached is not None and cached.dataset_revision != task.metadata.revision:
            logger.warning(
                "%s: cached result is for data revision %s, the data is now %s; evaluating again",
                task.metadata.name, cached.dataset_revision, task.metadata.revision,
            )
            stale.append(task)
    return stale


def is_cached(cache: mteb.ResultCache, meta: ModelMeta, task: AbsTask) -> bool:
    cached = cache.load_task_result(task.metadata.name, meta)
    return cached is not None and not cached.get_missing_evaluations(task)


def evaluate_embedder(
    model,
    tasks: Sequence[AbsTask],
    *,
    results_dir: str | Path,
    batch_size: int = 32,
    overwrite_strategy: str = "only-missing",
    show_progress_bar: bool = True,
) -> ModelResult:
    """Evaluate `model` on `tasks` through `mteb.evaluate`, caching results in `results_dir`.

    `model` is a `ModelMeta` (loaded once, and only if some task still has to run) or a loaded mteb encoder.
    """
    cache = mteb.ResultCache(results_dir)
    record_task_metadata(results_dir, tasks)
    meta = model_meta_of(model)
    rerun = set() if overwrite_strategy == "always" else {task.metadata.name for task in stale_tasks(cache, meta, tasks)}
    to_run = [task for task in tasks
              if overwrite_strategy == "always" or task.metadata.name in rerun or not is_cached(cache, meta, task)]
    if to_run and isinstance(model, ModelMeta):
        model = model.load_model()
    results = []
    for strategy, batch in (
        ("always", [task for task in tasks if task.metadata.name in rerun]),
        (overwrite_strategy, [task for task in tasks if task.metadata.name not in rerun]),
    ):
        if batch:
            results.append(mteb.evaluate(
                model,
                batch,
                cache=cache,
                overwrite_strategy=strategy,
                encode_kwargs={"batch_size": batch_size, "show_progress_bar": show_progress_bar},
                show_progress_bar=show_progress_bar,
                co2_tracker=False,
            ))
    return ModelResult(
        model_name=meta.name,
        model_revision=meta.revision,
        task_results=[result for model_result in results for result in model_result.task_results],
        exceptions=[error for model_result in results for error in model_result.exceptions or []],
    )
