"""Which `datasets` packaged builder reads a local data file, by the file's suffix."""

from collections.abc import Collection
from pathlib import Path

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
