"""The pipeline's stages (`training/pipeline.py`): run as processes, known when finished, given inputs, recorded.

Running a stage as its own process, knowing which stages are finished, turning the corpus manifest into stage
arguments, and recording provenance.

Every stage (training, mining, evaluation, publishing) is a process started by `run_stage`. Stages exchange files: the
pipeline writes a stage's datasets as a YAML file in its output folder (`datasets_file`) and passes its path, and each
stage's model is the previous stage's `final/` folder, passed as `--model_name_or_path`; no stage config names another
run's folder.

A stage is finished when its `final/` folder (which every stage renames into place as its last act) carries the
pipeline's record of the stage, `provenance.json`, written after it; the published folder gets its record from the
publish step itself, after validation and before its rename. A new run skips finished stages; an unfinished one
resumes from its newest complete checkpoint, or starts again in its own folder. A `publish_dir` without the record is
someone else's folder and is refused, never replaced.
"""

import contextlib
import json
import logging
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import yaml

from nomic_bert_hf.data.corpus import Corpus
from nomic_bert_hf.model.embedder_folder import weights_digest
from nomic_bert_hf.training.runs import (
    DATASETS_FILE,
    FINAL_DIR,
    newest_complete_checkpoint,
)
from nomic_bert_hf.utils.cli import INTERRUPTED
from nomic_bert_hf.utils.compute import DTYPES, compute_record
from nomic_bert_hf.utils.configs import CONFIG_FILE
from nomic_bert_hf.utils.files import atomic_file
from nomic_bert_hf.utils.provenance import PROVENANCE_FILE, environment, write_json

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = ROOT / "training" / "data" / "default"
# Keys of a recorded stage config that belong to the run that wrote it, not to its recipe.
STAGE_INTERRUPT_GRACE = 10  # seconds an interrupted pipeline waits for its stage to stop before passing SIGINT on
RUN_KEYS = ("resume_from_checkpoint", "overwrite_output_dir", "output_dir", "logging_dir", "run_name")


def completion_record(folder: Path) -> dict:
    """The pipeline's record in an output folder (`provenance.json`, written last), or {} where there is none."""
    try:
        return json.loads((folder / PROVENANCE_FILE).read_text())
    except (OSError, ValueError):
        return {}


def is_finished(stage_dir: Path, stage: str) -> bool:
    """Whether the stage's `final/` carries the pipeline's record of that stage (a `final/` the stage renamed into
    place, but whose run the pipeline never recorded, is finished again from the stage's checkpoints)."""
    return completion_record(stage_dir / FINAL_DIR).get("stage") == stage


def resume_arguments(stage_dir: Path) -> list[str]:
    """Flags that continue an interrupted stage: from its newest complete checkpoint (newer incomplete ones are named
    and skipped), or afresh in its own folder. An unrecorded `final/` is replaced once the stage finishes again."""
    if not stage_dir.is_dir() or not any(stage_dir.iterdir()):
        return []
    replace = ["--overwrite_output_dir", "true"]
    unrecorded = (stage_dir / FINAL_DIR).exists()
    if unrecorded:
        logger.info("%s has no record of its run (the pipeline stopped before writing it): finishing the stage again",
                    stage_dir / FINAL_DIR)
    checkpoint = newest_complete_checkpoint(stage_dir)
    if checkpoint is not None:
        logger.info("%s was interrupted: resuming from %s", stage_dir, checkpoint)
        return ["--resume_from_checkpoint", checkpoint, *(replace if unrecorded else [])]
    logger.info("%s has no complete checkpoint: starting the stage again", stage_dir)
    return replace


def is_published(publish_dir: Path, output_dir: Path) -> bool:
    """Whether `publish_dir` is this pipeline's finished publish step (its `provenance.json` records the publish
    stage of `output_dir`). A missing or empty folder is not; any other folder is someone else's and is refused, so
    that nothing of a user's is reported as the result, replaced or deleted (`--rerun publish` included)."""
    if not publish_dir.exists() or (publish_dir.is_dir() and not any(publish_dir.iterdir())):
        return False
    record = completion_record(publish_dir)
    recorded_output = (record.get("pipeline") or {}).get("output_dir")
    if record.get("stage") == "publish" and recorded_output and Path(recorded_output).resolve() == output_dir.resolve():
        return True
    raise FileExistsError(
        f"publish_dir {publish_dir} exists and is not a model this pipeline published (its {PROVENANCE_FILE} does not "
        f"record the publish stage of {output_dir}); nothing in it was changed: choose another --publish_dir, or "
        "move that folder away"
    )


class StageClock:
    """Where a run's minutes go: the wall seconds of each stage it ran (the whole process: start-up, data and model
    loading, the work, saving) and, for a training stage, the seconds inside the Trainer's loop (`train_runtime` in
    the `train_results.json` the stage wrote). Stages finished by an earlier run are not timed."""

    def __init__(self):
        self.seconds: dict[str, dict[str, float]] = {}

    @contextlib.contextmanager
    def timing(self, stage: str, output_dir: Path | None = None) -> Iterator[None]:
        start, started = time.monotonic(), time.time()
        yield
        entry = self.seconds.setdefault(stage, {"wall": 0.0})
        entry["wall"] = round(entry["wall"] + time.monotonic() - start, 1)
        results = output_dir / "train_results.json" if output_dir else None
        if results is not None and results.is_file() and results.stat().st_mtime >= started:  # written by this run
            entry["training_loop"] = round(json.loads(results.read_text())["train_runtime"], 1)

    def markdown(self) -> str:
        rows = ["| Stage | Wall (s) | In the training loop (s) | Start-up, data, saving (s) |", "|---|---:|---:|---:|"]
        for stage, entry in self.seconds.items():
            loop = entry.get("training_loop")
            rest = f"{entry['wall'] - loop:.1f}" if loop is not None else ""
            rows.append(f"| {stage} | {entry['wall']:.1f} | {'' if loop is None else f'{loop:.1f}'} | {rest} |")
        total = sum(entry["wall"] for entry in self.seconds.values())
        loops = sum(entry.get("training_loop", 0.0) for entry in self.seconds.values())
        rows.append(f"| total | {total:.1f} | {loops:.1f} | |")
        return "\n".join(rows)


class StageError(RuntimeError):
    """A stage's process failed; it printed its own error."""


def run_stage(program: str, arguments: list, launcher: str = "") -> None:
    """Run a stage as its own process: `program` is a script (`training/mlm.py`) or, without `.py`, a module run with
    `-m` (`nomic_bert_hf.hub.publish`); under `launcher` (e.g. torchrun, accelerate launch: both take either), or
    under this Python. A failing stage raises StageError, which stops the pipeline, and an interrupted one
    KeyboardInterrupt."""
    start = shlex.split(launcher) if launcher else [sys.executable]
    command = [*start, program] if program.endswith(".py") else [*start, "-m", program]
    command += [str(argument) for argument in arguments]
    logger.info("running %s", shlex.join(command))
    with subprocess.Popen(command, cwd=ROOT) as process:
        try:
            status = process.wait()
        except KeyboardInterrupt:  # a terminal's Ctrl-C reaches the stage too; a SIGINT sent to the pipeline alone
            try:                   # is passed on, so that the stage stops as it would on Ctrl-C
                process.wait(timeout=STAGE_INTERRUPT_GRACE)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGINT)
                process.wait()
            raise
    if status in (INTERRUPTED, -signal.SIGINT):
        raise KeyboardInterrupt
    if status != 0:
        raise StageError(f"{program} failed with exit status {status} (its error is above); run the same command "
                         "again to resume once the cause is fixed")


def datasets_file(folder: Path, stage: str, datasets: dict[str, dict]) -> Path:
    """Write a stage's `train_datasets` as `<folder>/<stage>.train_datasets.yaml`, which the stage reads through
    `--train_datasets <file>`. The datasets keep their order (the order the stage loads them in)."""
    path = folder / f"{stage}.train_datasets.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as file:
        yaml.safe_dump(datasets, file, sort_keys=False)
    return path


def pair_datasets(corpus: Corpus, stage: int) -> dict[str, dict]:
    """`train_datasets` for the contrastive stage: the corpus's pair datasets of a training stage (2 or 3)."""
    names = corpus.pair_datasets(stage=stage)
    if not names:
        raise ValueError(f"the corpus at {corpus.root} has no pair datasets for stage {stage}")
    return {name: {"path": str(Path(corpus.data_files(name)["train"][0]).parent), "task": corpus.task(name)}
            for name in names}


def recorded_config(final_dir: Path) -> dict:
    """The resolved config a stage saved with its result."""
    return yaml.safe_load((final_dir / CONFIG_FILE).read_text())


def recipe_config(config: dict) -> dict:
    """A recorded stage config without the keys that describe the run rather than the recipe."""
    return {key: value for key, value in config.items() if key not in RUN_KEYS}


def provenance(stage: str, pipeline_config: dict, corpus: Corpus | None, stage_dirs: dict[str, Path]) -> dict:
    """The record of a stage's output: the stage, and everything needed to reproduce the run: code and library
    versions, the data (the corpus manifest and its file hashes, and the datasets each finished stage read, with their
    revisions), the pipeline config (with its seed) and the resolved config of every finished stage."""
    finished = {name: path / FINAL_DIR for name, path in stage_dirs.items()
                if name == stage or is_finished(path, name)}
    return {
        "stage": stage,
        "environment": environment(ROOT),
        "compute": compute_record(DTYPES[pipeline_config.get("dtype", "float32")]),  # mining's and evaluation's
        "corpus": None if corpus is None else {
            "root": str(corpus.root),
            "name": corpus.manifest.get("name"),
            "files": {path: record["sha256"] for path, record in sorted(corpus.manifest["files"].items())},
        },
        "datasets": stage_datasets(finished),
        "pipeline": pipeline_config,
        "stages": {name: recorded_config(final) for name, final in finished.items()},
    }


def stage_datasets(finals: dict[str, Path]) -> dict[str, dict]:
    """The datasets each stage recorded reading (`datasets.json` in its final folder), by stage."""
    return {name: json.loads((final / DATASETS_FILE).read_text())
            for name, final in finals.items() if (final / DATASETS_FILE).is_file()}


def record_provenance(folder: Path, record: dict) -> None:
    """Write `provenance.json` (with the digest of the folder's weights, when it has any) into an output folder."""
    if any(folder.glob("*.safetensors")):
        record = {**record, "weights": weights_digest(folder)}
    write_json(folder / PROVENANCE_FILE, record)


def load_provenance(folder: Path) -> dict:
    path = Path(folder) / PROVENANCE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder} has no {PROVENANCE_FILE}: it was not written by training/pipeline.py")
    return json.loads(path.read_text())
