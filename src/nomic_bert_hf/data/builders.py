"""Which `datasets` packaged builder reads a local data file, by the file's suffix; and what makes one unreadable."""

import contextlib
import gzip
import json
import zlib
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path

import pyarrow
import pyarrow.parquet as pq

# A local file's suffix -> the builder that reads it; all but parquet may also be gzipped (".jsonl.gz", ".txt.gz")
FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv", ".tsv": "csv", ".txt": "text"}


def file_builder(path: Path, builders: Collection[str]) -> str | None:
    """The builder of a local file by its suffix (a `.gz` after it allowed, except after `.parquet`), or None when
    that is not one of `builders`."""
    suffix = path.suffixes[-2] if path.suffix == ".gz" and len(path.suffixes) > 1 else path.suffix
    builder = FILE_BUILDERS.get(suffix)
    if builder not in builders or (path.suffix == ".gz" and builder == "parquet"):
        return None
    return builder


def suffixes_read_by(builders: Collection[str]) -> list[str]:
    """The suffixes (in FILE_BUILDERS' order) of the files that `builders` read."""
    return [suffix for suffix, builder in FILE_BUILDERS.items() if builder in builders]


@contextlib.contextmanager
def naming_a_bad_file(files: Iterable[str | Path]) -> Iterator[None]:
    """Turn a failure to read local data `files` (datasets' `DatasetGenerationError`, `EOFError`, pyarrow's errors,
    none of which name the file) into a one-line `ValueError` naming the first unreadable file and its problem, with
    the library's error as the cause. A failure no local file explains is raised unchanged."""
    try:
        yield
    except Exception as error:
        for file in files:
            problem = data_file_problem(Path(file)) if Path(file).is_file() else None
            if problem:
                raise ValueError(f"{file}: {problem}") from error
        raise


def data_file_problem(path: Path) -> str | None:
    """What makes a local data file unreadable (a cut-short or corrupt gzip stream or parquet file, a malformed JSON
    line), or None when it reads. Reads the whole file: call it once something has failed."""
    builder = file_builder(path, set(FILE_BUILDERS.values()))
    if builder == "parquet":
        try:
            for _ in pq.ParquetFile(path).iter_batches():
                pass
        except (OSError, pyarrow.ArrowException) as error:
            return f"not a readable parquet file, perhaps cut short ({error})"
        return None
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
            return _json_problem(handle) if builder == "json" else _read_to_end(handle)
    except (OSError, EOFError, zlib.error) as error:
        return f"the gzip stream is cut short or corrupt ({error})" if path.suffix == ".gz" else f"unreadable ({error})"


def _read_to_end(handle) -> None:
    for _ in handle:
        pass


def _json_problem(handle) -> str | None:
    """The first malformed line of JSON lines (or a whole-file JSON document that does not parse), or None."""
    text = handle.read()
    if text.lstrip().startswith("["):  # one JSON array of records
        try:
            json.loads(text)
        except json.JSONDecodeError as error:
            return f"line {error.lineno}: malformed JSON ({error.msg}, column {error.colno})"
        return None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            with contextlib.suppress(json.JSONDecodeError):  # a single pretty-printed JSON object
                json.loads(text)
                return None
            return f"line {number}: malformed JSON ({error.msg}, column {error.colno})"
        if not isinstance(row, dict):
            return f"line {number}: a JSON {type(row).__name__}, not an object of named fields"
    return None
