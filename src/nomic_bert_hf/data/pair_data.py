"""Pair datasets for the contrastive stages: (query, document[, negatives]) rows from local files or the Hub.

A source is one dataset with one task prefix (Nomic trains each batch on one source). `load_pairs` gives the columns
sentence-transformers' ranking losses read in order: `query`, `document`, then `negative_1` ... `negative_k`, sampled
at random (seeded) from the source's list of mined negatives (its one list-of-text column unless named). A Hub id
is read from a mirror's copy when `mirror` is set (`hub_data.resolve_path`). `nomic_bert_hf.tasks.column_prompts` maps
those columns to the source's task prefixes, for the trainer's `prompts` argument.
"""

import dataclasses
import gzip
import logging
import random
from collections.abc import Mapping
from pathlib import Path

from datasets import Dataset, Features, IterableDataset, List, Value, load_dataset

from nomic_bert_hf.tasks import TASKS
from nomic_bert_hf.utils.files import atomic_file

from .builders import file_builder, naming_a_bad_file
from .hub_data import DATASET_FILE_BUILDERS, resolve_path

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class PairSource:
    """One dataset of pairs: a local .jsonl/.jsonl.gz/.parquet file, a folder of them, or a Hub dataset id."""

    name: str
    path: str
    task: str = "search"
    split: str = "train"
    subset: str | None = None
    revision: str | None = None
    query_column: str = "query"
    document_column: str = "document"
    negatives_column: str | None = None  # None: the dataset's one column holding a list of texts
    mirror: str | None = None  # a folder with a copy of each Hub dataset at <mirror>/<org>/<name>

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"dataset {self.name!r}: unknown task {self.task!r}; choose one of {sorted(TASKS)}")


def parse_sources(specs: Mapping[str, str | Mapping], **defaults) -> list[PairSource]:
    """Sources from a config mapping `{name: path}` or `{name: {path: ..., task: ..., split: ..., ...}}`; `defaults`
    (e.g. column names) apply where a source does not set its own."""
    fields = {field.name for field in dataclasses.fields(PairSource)} - {"name"}
    sources = []
    for name, spec in specs.items():
        spec = {"path": spec} if isinstance(spec, str) else dict(spec)
        unknown = sorted(set(spec) - fields)
        if unknown or "path" not in spec:
            raise ValueError(f"dataset {name!r}: needs a `path`, may set {sorted(fields - {'path'})}; got {sorted(spec)}")
        sources.append(PairSource(name=name, **{**defaults, **spec}))
    return sources


def pair_columns(num_negatives: int = 0) -> list[str]:
    """The columns `load_pairs` gives, in the order the ranking losses read them."""
    return ["query", "document", *(f"negative_{j}" for j in range(1, num_negatives + 1))]


def load_pairs(
    source: PairSource,
    num_negatives: int = 0,
    pad_negatives: bool = False,
    seed: int = 0,
    streaming: bool = False,
) -> Dataset | IterableDataset:
    """`source` as `query`, `document` (and `negative_1..k`) columns, without rows whose query or document is empty.

    With `num_negatives=k`, k negatives are drawn at random (seeded per row) from the row's mined list; a row with
    fewer is an error unless `pad_negatives`, which fills it with other documents of the same source (drawn from the
    row's chunk of 1000 rows, so that a stream can be padded too).
    """
    raw = _load_raw(source, streaming)
    features = raw.features if raw.features is not None else Dataset.from_list([next(iter(raw))]).features
    columns = [source.query_column, source.document_column]
    require_pair_columns(source, features)
    if num_negatives:
        columns.append(negatives_column(source, features))
    pairs = raw.select_columns(columns).rename_columns(
        {old: new for old, new in zip(columns, ["query", "document", "negatives"]) if old != new}
    )
    kept = pairs.filter(_has_query_and_document, batched=True)
    if not streaming and len(kept) < len(pairs):
        dropped = len(pairs) - len(kept)
        logger.warning(f"dataset {source.name!r}: dropped {dropped} of {len(pairs)} rows with an empty query or document")
    if num_negatives:
        kept = kept.map(
            _sample_negatives,
            batched=True,
            batch_size=1000,
            with_indices=True,
            remove_columns=["negatives"],
            fn_kwargs={"k": num_negatives, "pad": pad_negatives, "seed": seed, "name": source.name},
        )
    if streaming:  # a stream does not infer its columns' types; sentence-transformers needs them
        kept = kept.cast(Features({column: Value("string") for column in pair_columns(num_negatives)}))
    return kept


def hold_out(pairs: Dataset, rows: int, seed: int = 0) -> tuple[Dataset, Dataset | None]:
    """Split `rows` pairs off at random for evaluation: (training pairs, held-out pairs or None)."""
    if rows <= 0:
        return pairs, None
    if rows >= len(pairs):
        raise ValueError(f"cannot hold out {rows} of {len(pairs)} pairs for evaluation")
    split = pairs.train_test_split(test_size=rows, seed=seed)
    return split["train"], split["test"]


def require_rows(pairs: Dataset, name: str, rows_per_step: int) -> None:
    """A source must fill at least one global batch (per-device batch x processes x accumulation steps)."""
    if len(pairs) < rows_per_step:
        raise ValueError(
            f"dataset {name!r} has {len(pairs)} pairs, fewer than one global batch of {rows_per_step} "
            "(per-device batch size x processes x gradient accumulation steps); lower the batch size or add data"
        )


def write_jsonl(rows: Dataset, path: str | Path, overwrite: bool = False) -> Path:
    """Write rows as JSON lines (`Dataset.to_json`, non-ASCII kept; gzip-compressed when the name ends in .gz),
    atomically: a partial file never sits under the final name, and an existing file is only replaced with
    `overwrite`."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; choose another output or allow overwriting")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, "wb", opener=gzip.open if path.suffix == ".gz" else open) as file:
        rows.to_json(file, force_ascii=False)
    return path


def _load_raw(source: PairSource, streaming: bool) -> Dataset | IterableDataset:
    path = Path(source.path)
    if path.is_file():
        builder = file_builder(path, DATASET_FILE_BUILDERS)
        if builder is None:
            raise ValueError(f"dataset {source.name!r}: cannot read {path}; use .jsonl, .jsonl.gz, .json or .parquet")
        with naming_a_bad_file([path]):
            return load_dataset(builder, data_files=str(path), split="train", streaming=streaming)
    if path.is_dir():
        with naming_a_bad_file(sorted(path.rglob("*"))):
            return load_dataset(str(path), split=source.split, streaming=streaming)
    looks_like_a_file = path.suffix == ".gz" or file_builder(path, DATASET_FILE_BUILDERS) is not None
    if path.is_absolute() or source.path.startswith(".") or looks_like_a_file:
        raise FileNotFoundError(f"dataset {source.name!r}: {path} does not exist")
    return load_dataset(resolve_path(source.path, source.mirror), source.subset, split=source.split,
                        revision=source.revision, streaming=streaming)


def _has_query_and_document(batch: dict[str, list]) -> list[bool]:
    pairs = zip(batch["query"], batch["document"])
    return [bool(query and query.strip() and document and document.strip()) for query, document in pairs]


def _sample_negatives(batch: dict[str, list], indices: list[int], k: int, pad: bool, seed: int, name: str) -> dict:
    columns = {f"negative_{j}": [] for j in range(1, k + 1)}
    for row, (index, mined) in enumerate(zip(indices, batch["negatives"])):
        pool = [text for other, text in enumerate(batch["document"]) if other != row] if pad else None
        chosen = sample_negatives(mined, k, random.Random(f"{seed}:{index}"), name, pad_pool=pool, row=index)
        for j, text in enumerate(chosen, start=1):
            columns[f"negative_{j}"].append(text)
    return columns


def sample_negatives(mined: list[str] | None, k: int, rng: random.Random, name: str,
                     pad_pool: list[str] | None = None, row: int | str = "") -> list[str]:
    """`k` distinct negatives drawn at random from a row's mined list (as Nomic's stage 3 did). A row with fewer is an
    error, unless `pad_pool` is given: then the rest are drawn from those documents."""
    mined = list(dict.fromkeys(text for text in mined or [] if text and text.strip()))
    if len(mined) >= k:
        return rng.sample(mined, k)
    if pad_pool is None:
        raise ValueError(
            f"dataset {name!r}: row {row} has {len(mined)} negatives but {k} are asked for; mine more "
            "(training/mine_negatives.py), lower num_negatives, or set pad_negatives to fill up with random documents"
        )
    pool = [text for text in pad_pool if text not in mined]
    if len(pool) < k - len(mined):
        raise ValueError(f"dataset {name!r}: too few documents to pad row {row} to {k} negatives")
    return mined + rng.sample(pool, k - len(mined))


def require_pair_columns(source: PairSource, features: Features) -> None:
    """A source's query and document columns must be in its data; the error names them and the columns there are."""
    missing = [column for column in (source.query_column, source.document_column) if column not in features]
    if missing:
        raise ValueError(f"dataset {source.name!r} ({source.path}) has no column {missing}; its columns are "
                         f"{list(features)}")


def negatives_column(source: PairSource, features: Features) -> str:
    """The column of mined negatives: the one named by the source, or else the dataset's only list-of-text column."""
    if source.negatives_column is not None:
        if source.negatives_column not in features:
            raise ValueError(f"dataset {source.name!r} ({source.path}) has no column {source.negatives_column!r}; "
                             f"its columns are {list(features)}")
        return source.negatives_column
    lists = [name for name, feature in features.items()
             if isinstance(feature, List) and getattr(feature.feature, "dtype", None) in ("string", "large_string")]
    if len(lists) != 1:
        found = f"several ({lists})" if lists else "none"
        raise ValueError(f"dataset {source.name!r} ({source.path}) needs one column holding a list of negative texts; "
                         f"found {found} among {list(features)}: name it with negatives_column")
    return lists[0]
