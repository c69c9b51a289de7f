"""Datasets named by Hub id, local copy or mirror: which files a split reads, their rows and columns, and the revision.

    split = inspect_split("nomic-ai/nomic-embed-supervised-data", split="fever_hn_mine", mirror="/data/hub")

A mirror is a folder holding one sub-folder per repository id, laid out as on the Hub (`README.md` and `data/`):
with `mirror="/data/hub"`, every Hub id `org/name` of a config is read from `/data/hub/org/name` instead, so one
setting points a whole recipe at a local copy. What was read is recorded by `revision`: the Hub's commit for a Hub id;
for a local copy, the commit `huggingface-cli download --local-dir` recorded, else a digest of the copy's files.
"""

import dataclasses
import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path

import datasets
import fsspec
import pyarrow.parquet as pq

from .builders import file_builder, naming_a_bad_file

logger = logging.getLogger(__name__)

DATASET_FILE_BUILDERS = ("json", "parquet")  # the builders of a dataset given as one local file
DOWNLOAD_METADATA = Path(".cache") / "huggingface" / "download"  # written by huggingface_hub's local-dir downloads
DIGEST_TAIL_BYTES = 1 << 16  # a parquet file's footer (schema, row groups, statistics) lies in its last bytes


def is_hub_id(path: str) -> bool:
    """`org/name` that is not an existing local path."""
    return not Path(path).expanduser().exists() and len(Path(path).parts) == 2 and not path.startswith((".", "/", "~"))


def resolve_path(path: str, mirror: str | None = None) -> str:
    """Where `path` is read from: a Hub id's copy under `mirror` when one is set, otherwise `path` itself."""
    if mirror is None or not is_hub_id(path):
        return path
    copy = Path(mirror).expanduser() / path
    if not copy.is_dir():
        raise FileNotFoundError(f"dataset {path}: the mirror {mirror} has no copy of it (expected the folder {copy})")
    return str(copy)


@dataclasses.dataclass
class SplitInfo:
    """One split of a dataset as it will be read: files with their rows, columns, and the revision."""

    path: str  # as configured (Hub id or local path)
    split: str
    subset: str | None
    read_from: str  # the Hub id, or the local folder (a mirror's copy)
    revision: str  # Hub commit, a local-dir download's commit, or "sha256:<digest>" of a local copy
    builder: str  # datasets' packaged builder that reads the files: parquet, json, text, ...
    files: list[str]
    file_rows: list[int]
    features: datasets.Features

    @property
    def rows(self) -> int:
        return sum(self.file_rows)

    def record(self) -> dict:
        """What provenance and plans show."""
        return {"path": self.path, "subset": self.subset, "split": self.split, "read_from": self.read_from,
                "revision": self.revision, "rows": self.rows, "files": len(self.files),
                "columns": sorted(self.features)}

    def read(self, file: str, skip: int = 0) -> Iterator[dict]:
        """The rows of one of the split's files from its `skip`-th on (parquet: whole row groups skipped unread).
        Read directly rather than through a datasets stream, which inside a data-loader worker would deal its files
        out among the workers."""
        if self.builder != "parquet":
            with naming_a_bad_file([file]):
                rows = datasets.load_dataset(self.builder, data_files=[file], split="train", features=self.features)
            yield from rows.select(range(skip, len(rows)))
            return
        with fsspec.open(file, "rb") as handle:
            parquet = pq.ParquetFile(handle)
            groups = []
            for group in range(parquet.num_row_groups):
                rows = parquet.metadata.row_group(group).num_rows
                if skip >= rows and not groups:
                    skip -= rows
                else:
                    groups.append(group)
            for batch in parquet.iter_batches(batch_size=1024, row_groups=groups) if groups else ():
                rows = batch.to_pylist()
                yield from rows[skip:]
                skip = max(0, skip - len(rows))


def inspect_split(path: str, split: str = "train", subset: str | None = None, revision: str | None = None,
                  mirror: str | None = None) -> SplitInfo:
    """Resolve a dataset split without loading it; a missing split, subset or revision is an error naming it."""
    read_from = resolve_path(path, mirror)
    try:
        if Path(read_from).is_file():  # one local file: its rows are the split asked for
            builder = datasets.load_dataset_builder(file_builder(Path(read_from), DATASET_FILE_BUILDERS),
                                                    data_files={split: read_from})
        else:
            builder = datasets.load_dataset_builder(read_from, subset, revision=revision)
    except Exception as error:  # datasets raises several types (FileNotFoundError, ValueError, hub errors)
        raise ValueError(f"dataset {path} (subset {subset}, revision {revision}): cannot be read: {error}") from error
    data_files = builder.config.data_files or {}
    if split not in data_files:
        raise ValueError(f"dataset {path}{f' subset {subset}' if subset else ''} has no split {split!r}; "
                         f"its splits are {sorted(data_files)}")
    files = list(data_files[split])
    with naming_a_bad_file(files):
        file_rows = [_count_rows(builder.name, file) for file in files]
        features = builder.info.features or _read_features(builder.name, files[0])
    return SplitInfo(path=path, split=split, subset=subset, read_from=read_from,
                     revision=_revision(read_from, revision), builder=builder.name, files=files,
                     file_rows=file_rows, features=features)


def _count_rows(builder: str, file: str) -> int:
    if builder == "parquet":
        with fsspec.open(file, "rb") as handle:
            return pq.ParquetFile(handle).metadata.num_rows
    stream = datasets.load_dataset(builder, data_files=[file], split="train", streaming=True)
    return sum(len(batch[next(iter(batch))]) for batch in stream.iter(batch_size=10_000))


def _read_features(builder: str, file: str) -> datasets.Features:
    if builder == "parquet":
        with fsspec.open(file, "rb") as handle:
            return datasets.Features.from_arrow_schema(pq.ParquetFile(handle).schema_arrow)
    stream = datasets.load_dataset(builder, data_files=[file], split="train", streaming=True)
    return stream.features or datasets.Dataset.from_list([next(iter(stream))]).features


def _revision(read_from: str, revision: str | None) -> str:
    """The commit read; for a local copy of a pinned revision, the copy must have been downloaded at that commit."""
    if is_hub_id(read_from):
        from huggingface_hub import HfApi
        from huggingface_hub.errors import OfflineModeIsEnabled

        try:
            return HfApi().dataset_info(read_from, revision=revision).sha
        except OfflineModeIsEnabled:  # reading from the local cache: the commit cannot be asked for
            logger.warning(f"dataset {read_from}: offline, so the commit read is not resolved")
            return f"{revision or 'main'} (unresolved: offline)"
    folder = Path(read_from).expanduser()
    recorded = _downloaded_commit(folder) if folder.is_dir() else None
    if revision is not None and recorded is None:
        logger.warning(f"{read_from}: the copy does not record its commit, so the pinned revision {revision} is not "
                       "checked (download it with `huggingface-cli download --local-dir` to record it)")
    if revision is not None and recorded is not None and not recorded.startswith(revision):
        raise ValueError(f"{read_from} is a copy of commit {recorded}, not of the pinned revision {revision}")
    return recorded or f"sha256:{local_digest(folder)}"


def _downloaded_commit(folder: Path) -> str | None:
    """The commit a `huggingface-cli download --local-dir` copy came from, if all its files agree on one."""
    commits = {path.read_text().splitlines()[0].strip() for path in (folder / DOWNLOAD_METADATA).rglob("*.metadata")}
    return commits.pop() if len(commits) == 1 else None


def local_digest(path: Path) -> str:
    """A digest of a local copy: each file's relative path, size, and last 64 KiB (a parquet footer, which holds the
    row groups' statistics), so that a changed, added or removed file changes it without reading hundreds of GB."""
    files = sorted(p for p in path.rglob("*") if p.is_file() and ".cache" not in p.relative_to(path).parts) \
        if path.is_dir() else [path]
    digest = hashlib.sha256()
    for file in files:
        size = file.stat().st_size
        digest.update(f"{file.relative_to(path) if path.is_dir() else file.name}\0{size}\0".encode())
        with file.open("rb") as handle:
            handle.seek(max(0, size - DIGEST_TAIL_BYTES))
            digest.update(handle.read())
    return digest.hexdigest()[:16]
