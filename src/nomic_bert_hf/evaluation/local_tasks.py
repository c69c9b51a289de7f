"""mteb tasks whose data are local jsonl files, so that evaluation runs offline through the same `mteb.evaluate` call.

A task is a folder (or a class naming one in `data_dir`):

* Retrieval: `queries.jsonl` ({"id", "text"}), `corpus.jsonl` ({"id", "title", "text"}), `qrels.jsonl`
  ({"query_id", "doc_id", "score"}); main score nDCG@10.
* STS: `test.jsonl` ({"sentence1", "sentence2", "score"}); main score Spearman correlation of cosine similarities.
* Classification: `train.jsonl` and `test.jsonl` ({"text", "label"}); a classifier is fitted on the train embeddings
  (mteb's protocol); main score accuracy.

Files may be gzipped (`.jsonl.gz`). An optional `task.yaml` sets `name`, `type`, `description`, `main_score`,
`reference`, `license`, `domains`; otherwise the folder name is the task name and the files decide the type. The
dataset revision mteb records is a digest of the data files, so results always say which data they came from.

    class ManPageRetrieval(LocalRetrievalTask):
        metadata = local_task_metadata("ManPageRetrieval", "Retrieval", "data/eval/manpages", "Man page search")
        data_dir = "data/eval/manpages"
"""

import gzip
import hashlib
import json
from pathlib import Path
from typing import ClassVar

import yaml
from datasets import Dataset, DatasetDict
from mteb.abstasks.classification import AbsTaskClassification
from mteb.abstasks.retrieval import AbsTaskRetrieval
from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData
from mteb.abstasks.sts import AbsTaskSTS
from mteb.abstasks.task_metadata import TaskMetadata

from nomic_bert_hf.utils.files import update_digest

SPLIT = "test"
TASK_FILE = "task.yaml"
DEFAULT_MAIN_SCORES = {"Retrieval": "ndcg_at_10", "STS": "cosine_spearman", "Classification": "accuracy"}
CATEGORIES = {"Retrieval": "t2t", "STS": "t2t", "Classification": "t2c"}
FILES = {
    "Retrieval": ("queries", "corpus", "qrels"),
    "STS": ("test",),
    "Classification": ("train", "test"),
}
COLUMNS = {
    "queries": ("id", "text"),
    "corpus": ("id", "text"),
    "qrels": ("query_id", "doc_id", "score"),
    "STS": ("sentence1", "sentence2", "score"),
    "Classification": ("text", "label"),
}


def data_file(data_dir: str | Path, stem: str) -> Path:
    """`<stem>.jsonl` or `<stem>.jsonl.gz` in `data_dir`."""
    for suffix in (".jsonl", ".jsonl.gz"):
        path = Path(data_dir) / f"{stem}{suffix}"
        if path.is_file():
            return path
    raise FileNotFoundError(f"{data_dir} has no {stem}.jsonl (or {stem}.jsonl.gz)")


def read_jsonl(path: Path, columns: tuple[str, ...]) -> list[dict]:
    """The rows of a jsonl file; a row without one of `columns` is an error naming the file and line."""
    opener = gzip.open if path.suffix == ".gz" else open
    rows = []
    with opener(path, "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            missing = [column for column in columns if column not in row]
            if missing:
                raise ValueError(f"{path}:{number} lacks {missing} (it has {sorted(row)})")
            rows.append(row)
    if not rows:
        raise ValueError(f"{path} holds no rows")
    return rows


def data_revision(data_dir: str | Path, task_type: str) -> str:
    """`sha256-` and 16 hex digits over the task's data files: the dataset revision mteb records."""
    digest = hashlib.sha256()
    for stem in FILES[task_type]:
        update_digest(digest, data_file(data_dir, stem))
    return f"sha256-{digest.hexdigest()[:16]}"


def local_task_metadata(
    name: str,
    task_type: str,
    data_dir: str | Path,
    description: str | None = None,
    *,
    main_score: str | None = None,
    reference: str | None = None,
    license: str | None = None,
    domains: list[str] | None = None,
) -> TaskMetadata:
    """The `TaskMetadata` of a local task of `task_type` (Retrieval, STS or Classification)."""
    if task_type not in FILES:
        raise ValueError(f"local tasks are of type {sorted(FILES)}, not {task_type!r}")
    return TaskMetadata(
        name=name,
        description=description or f"{task_type} on the local data in {Path(data_dir).name}",
        dataset={"path": str(Path(data_dir)), "revision": data_revision(data_dir, task_type)},
        type=task_type,
        category=CATEGORIES[task_type],
        modalities=["text"],
        reference=reference,
        eval_splits=[SPLIT],
        eval_langs=["eng-Latn"],
        main_score=main_score or DEFAULT_MAIN_SCORES[task_type],
        domains=domains,
        license=license,
    )


class LocalRetrievalTask(AbsTaskRetrieval):
    """Retrieval over local `queries.jsonl`, `corpus.jsonl` and `qrels.jsonl` (qrels with score > 0 are relevant)."""

    data_dir: ClassVar[str | Path]

    def load_data(self, num_proc: int | None = None, **kwargs) -> None:
        if self.data_loaded:
            return
        queries = read_jsonl(data_file(self.data_dir, "queries"), COLUMNS["queries"])
        corpus = read_jsonl(data_file(self.data_dir, "corpus"), COLUMNS["corpus"])
        qrels: dict[str, dict[str, int]] = {}
        for row in read_jsonl(data_file(self.data_dir, "qrels"), COLUMNS["qrels"]):
            qrels.setdefault(str(row["query_id"]), {})[str(row["doc_id"])] = int(row["score"])
        split = RetrievalSplitData(
            queries=Dataset.from_list([{"id": str(row["id"]), "text": row["text"]} for row in queries]),
            corpus=Dataset.from_list(
                [{"id": str(row["id"]), "title": row.get("title") or "", "text": row["text"]} for row in corpus]
            ),
            relevant_docs=qrels,
            top_ranked=None,
        )
        self.dataset = {"default": {SPLIT: split}}
        self.data_loaded = True


class LocalSTSTask(AbsTaskSTS):
    """Semantic similarity of local sentence pairs (`test.jsonl`); the score range is read from the data."""

    data_dir: ClassVar[str | Path]

    def load_data(self, num_proc: int | None = None, **kwargs) -> None:
        if self.data_loaded:
            return
        rows = read_jsonl(data_file(self.data_dir, "test"), COLUMNS["STS"])
        scores = [float(row["score"]) for row in rows]
        self.min_score, self.max_score = min(scores), max(scores)
        if self.min_score == self.max_score:
            raise ValueError(f"{self.data_dir}: every pair has the score {self.min_score}; nothing to correlate")
        pairs = [{"sentence1": row["sentence1"], "sentence2": row["sentence2"], "score": float(row["score"])}
                 for row in rows]
        self.dataset = DatasetDict({SPLIT: Dataset.from_list(pairs)})
        self.data_loaded = True


class LocalClassificationTask(AbsTaskClassification):
    """Classification of local texts: `train.jsonl` fits mteb's classifier, `test.jsonl` scores it. Labels may be
    strings; they are numbered in sorted order."""

    data_dir: ClassVar[str | Path]

    def load_data(self, num_proc: int | None = None, **kwargs) -> None:
        if self.data_loaded:
            return
        splits = {split: read_jsonl(data_file(self.data_dir, split), COLUMNS["Classification"])
                  for split in ("train", SPLIT)}
        labels = sorted({str(row["label"]) for rows in splits.values() for row in rows})
        ids = {label: number for number, label in enumerate(labels)}
        self.dataset = DatasetDict({
            split: Dataset.from_list([{"text": row["text"], "label": ids[str(row["label"])]} for row in rows])
            for split, rows in splits.items()
        })
        self.data_loaded = True


TASK_CLASSES = {"Retrieval": LocalRetrievalTask, "STS": LocalSTSTask, "Classification": LocalClassificationTask}


def detect_task_type(data_dir: Path) -> str:
    """Which kind of local task a folder holds, from its files."""
    for task_type in ("Retrieval", "Classification", "STS"):
        try:
            for stem in FILES[task_type]:
                data_file(data_dir, stem)
        except FileNotFoundError:
            continue
        return task_type
    raise FileNotFoundError(
        f"{data_dir} is not a local task folder: it needs queries/corpus/qrels.jsonl (Retrieval), "
        "train.jsonl and test.jsonl (Classification) or test.jsonl (STS)"
    )


def load_local_task(data_dir: str | Path):
    """An instance of a task class declared for the folder `data_dir` (its `task.yaml` or its files decide)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"local task folder {data_dir} does not exist")
    settings = yaml.safe_load((data_dir / TASK_FILE).read_text()) if (data_dir / TASK_FILE).is_file() else {}
    task_type = settings.pop("type", None) or detect_task_type(data_dir)
    name = settings.pop("name", None) or data_dir.name
    metadata = local_task_metadata(name, task_type, data_dir, settings.pop("description", None), **settings)
    task_class = type(name.replace("-", "_"), (TASK_CLASSES[task_type],), {"metadata": metadata, "data_dir": data_dir})
    return task_class()
