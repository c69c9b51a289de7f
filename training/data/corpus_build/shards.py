"""Deterministic jsonl.gz shards: the same rows always give the same bytes.

Fixed key order, no timestamps or file names in the gzip header, a fixed compression level, and shard boundaries
that depend on the rows alone."""

import gzip
import hashlib
import io
import json
from pathlib import Path

COMPRESSION_LEVEL = 9
SHARD_BYTES = 8_000_000  # uncompressed bytes per shard, at most (a single larger row gets a shard of its own)


def jsonl_bytes(rows: list[dict]) -> bytes:
    return b"".join(json.dumps(row, ensure_ascii=False).encode("utf-8") + b"\n" for row in rows)


def gzip_bytes(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, compresslevel=COMPRESSION_LEVEL, mtime=0) as f:
        f.write(data)
    return buffer.getvalue()


def write_shards(directory: Path, stem: str, rows: list[dict], root: Path) -> dict[str, dict]:
    """Write `rows` as `directory/{stem}-00000.jsonl.gz`, ... ; returns {path relative to root: file record}."""
    directory.mkdir(parents=True, exist_ok=True)
    chunks, current, size = [], [], 0
    for row in rows:
        line = jsonl_bytes([row])
        if current and size + len(line) > SHARD_BYTES:
            chunks.append(current)
            current, size = [], 0
        current.append(line)
        size += len(line)
    chunks.append(current)
    written = {}
    for index, chunk in enumerate(chunks):
        path = directory / f"{stem}-{index:05d}.jsonl.gz"
        written[path.relative_to(root).as_posix()] = write_file(path, b"".join(chunk), len(chunk))
    return written


def write_file(path: Path, data: bytes, rows: int) -> dict:
    """Write gzipped `data`; the record holds the row count and the sha256 of the file and of its content."""
    compressed = gzip_bytes(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(compressed)
    return {
        "rows": rows,
        "bytes": len(compressed),
        "sha256": hashlib.sha256(compressed).hexdigest(),
        "content_sha256": hashlib.sha256(data).hexdigest(),
    }
