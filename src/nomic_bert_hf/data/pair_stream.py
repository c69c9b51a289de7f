"""Pairs streamed from many sources, one source per global batch, resumable at any optimizer step.

The stream is sharded across processes and data-loader workers, seeded, and resumes without repeating or skipping a
row.

    stream = SingleSourceStream(sources, batch_size=32, batches_per_step=8, world_size=8, num_workers=4, seed=42)
    train_dataset = stream.dataset(start_step=resumed_step)     # a datasets.IterableDataset for the trainer

The order of sources is fixed before the first row is read: `global_batch_schedule` (the same function as the
map-style `SingleSourceBatchSampler`) lists the source of every optimizer step, each source drawn in proportion to the
global batches its rows still fill. Every process knows that list, so all processes and all accumulation steps of one
optimizer step read the same source without talking to each other.

Sharding: a source's files are shuffled (seeded) and dealt whole to the processes as far as they go round evenly
(rank r reads files r, r + R, ...); the few left over are read by every process, each keeping every R-th row. A
process's rows are shuffled within windows of `shuffle_window` rows. Its micro-batches go to its data-loader workers
in turn (torch's DataLoader takes batch i from worker i mod W), so worker w prepares and tokenizes only batches
w, w + W, ...; every worker reads its process's files (read past the others' rows), so reads grow with W while the
tokenizing, the costly part, is split. Files are read directly (pyarrow for parquet, over fsspec, `hf://` for the
Hub). Each source fills `min over processes (rows // rows per process and step)` steps; the rows past that are left
out and logged.

Resuming at step k: every reader starts where step k begins: whole files are skipped by their row counts, and at
most one shuffle window is read again.
"""

import logging
import os
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import islice

import datasets
import torch

from .hub_data import SplitInfo
from .pair_data import pair_columns, sample_negatives
from .sampler import global_batch_schedule

logger = logging.getLogger(__name__)


@dataclass
class StreamSource:
    """One source: its split, columns and task prefixes (`prompts`, column -> prompt)."""

    name: str
    split: SplitInfo
    query_column: str
    document_column: str
    negatives_column: str | None
    prompts: dict[str, str]


class SingleSourceStream:
    """See the module docstring. `batch_size` is per process and micro-batch; `batches_per_step` the gradient
    accumulation steps; `num_workers` the data-loader workers of each process (0: the main process reads)."""

    def __init__(self, sources: Sequence[StreamSource], batch_size: int, batches_per_step: int = 1,
                 world_size: int = 1, num_workers: int = 0, seed: int = 0, num_negatives: int = 0,
                 shuffle_window: int = 1024):
        self.sources = list(sources)
        self.batch_size, self.batches_per_step = batch_size, batches_per_step
        self.world_size, self.workers = world_size, max(num_workers, 1)
        self.seed, self.num_negatives, self.shuffle_window = seed, num_negatives, shuffle_window
        rows_per_step = batch_size * batches_per_step
        self.blocks = []
        for source in self.sources:
            rows = [rank_rows(source.split, source.name, seed, world_size, rank) for rank in range(world_size)]
            blocks = min(rows) // rows_per_step
            if blocks == 0:
                raise ValueError(
                    f"dataset {source.name!r} ({source.split.path}, split {source.split.split}) has {source.split.rows} "
                    f"rows, fewer than one global batch of {rows_per_step * world_size} (per-device batch size x "
                    "processes x gradient accumulation steps); lower the batch size or leave it out"
                )
            left_out = sum(rows) - blocks * rows_per_step * world_size
            if left_out:
                logger.info(f"dataset {source.name!r}: {left_out} rows do not fill a whole global batch; left out")
            self.blocks.append(blocks)
        self.schedule = global_batch_schedule(self.blocks, torch.Generator().manual_seed(seed))

    @property
    def steps(self) -> int:
        return len(self.schedule)

    def prompts(self) -> dict[str, dict[str, str]]:
        """The trainer's `prompts`: per source (the rows' `dataset_name`), the prompt of each column."""
        return {source.name: source.prompts for source in self.sources}

    def dataset(self, start_step: int = 0) -> datasets.IterableDataset:
        """The rows from optimizer step `start_step` on, as one shard per (process, worker): accelerate deals the
        shards to the processes (with `dispatch_batches` off) and datasets to the workers."""
        if not 0 <= start_step <= self.steps:
            raise ValueError(f"start_step {start_step} is outside the schedule of {self.steps} steps")
        features = datasets.Features({column: datasets.Value("string")
                                      for column in [*pair_columns(self.num_negatives), "dataset_name"]})
        stream = datasets.IterableDataset.from_generator(
            self._generate, features=features,
            gen_kwargs={"slots": list(range(self.world_size * self.workers)), "start_step": start_step},
        )
        # The rows carry their source's name for the trainer's per-source prompts; this flag tells
        # sentence-transformers the column is there on purpose (it sets the same flag when it adds one itself).
        stream._sentence_transformers_preprocessed = True
        return stream

    def _generate(self, slots: list[int], start_step: int) -> Iterator[dict]:
        for slot in slots:
            rank, worker = divmod(slot, self.workers)
            _check_reader(rank, worker, self.workers)
            yield from self._slot_rows(rank, worker, start_step)

    def _slot_rows(self, rank: int, worker: int, start_step: int) -> Iterator[dict]:
        rows_per_step = self.batch_size * self.batches_per_step
        done = Counter(self.schedule[:start_step])
        readers = {}
        for step in range(start_step, self.steps):
            index = self.schedule[step]
            if index not in readers:
                readers[index] = self._rank_reader(index, rank, done[index] * rows_per_step)
            for accumulation in range(self.batches_per_step):
                rows = list(islice(readers[index], self.batch_size))
                if len(rows) < self.batch_size:
                    raise RuntimeError(f"dataset {self.sources[index].name!r} ended before its scheduled steps")
                batch = (step - start_step) * self.batches_per_step + accumulation
                if batch % self.workers == worker:  # the others' rows are read past, not prepared
                    yield from (self._training_row(self.sources[index], row, rank, position)
                                for position, row in rows)

    def _rank_reader(self, index: int, rank: int, start: int) -> Iterator[tuple[int, dict]]:
        """The process's rows of a source from its `start`-th row on, with their positions, shuffled per window."""
        source = self.sources[index]
        window = start // self.shuffle_window
        raw = _rank_raw_rows(source.split, rank_segments(source.split, source.name, self.seed, self.world_size, rank),
                             window * self.shuffle_window)
        position, first = start, start - window * self.shuffle_window
        while chunk := list(islice(raw, self.shuffle_window)):
            random.Random(f"{self.seed}:{source.name}:{rank}:{window}").shuffle(chunk)
            for row in chunk[first:]:
                yield position, row
                position += 1
            first, window = 0, window + 1

    def _training_row(self, source: StreamSource, row: dict, rank: int, position: int) -> dict:
        out = {"query": row[source.query_column], "document": row[source.document_column], "dataset_name": source.name}
        if self.num_negatives:
            rng = random.Random(f"{self.seed}:{source.name}:{rank}:{position}")
            chosen = sample_negatives(row[source.negatives_column], self.num_negatives, rng, source.name,
                                      row=f"{position} of process {rank}")
            out.update({f"negative_{j}": text for j, text in enumerate(chosen, start=1)})
        return out


def _check_reader(rank: int, worker: int, workers: int) -> None:
    """Refuse a shard dealt to another process or worker than the one it was cut for (it would mix sources)."""
    info = torch.utils.data.get_worker_info()
    actual = (int(os.environ.get("RANK", "0")), info.id if info else 0, info.num_workers if info else 1)
    if actual != (rank, worker, workers):
        raise RuntimeError(
            f"the stream's shard for process {rank}, worker {worker} of {workers} is read by process {actual[0]}, "
            f"worker {actual[1]} of {actual[2]}: build it with the run's world size and dataloader_num_workers, and "
            "let accelerate shard it (dispatch_batches off)"
        )


def rank_segments(split: SplitInfo, name: str, seed: int, world_size: int, rank: int) -> list[tuple]:
    """What a process reads of a source, as (files, their rows, stride, offset) segments, keeping of each segment's
    rows those at `offset`, `offset + stride`, ...: the source's files in a seeded order, dealt whole to the processes
    as far as they go round evenly; the files left over, read by every process, each keeping every R-th row."""
    order = list(range(len(split.files)))
    random.Random(f"{seed}:{name}:files").shuffle(order)
    dealt = len(order) - len(order) % world_size
    segments = [(order[rank:dealt:world_size], 1, 0), (order[dealt:], world_size, rank)]
    return [([split.files[i] for i in files], [split.file_rows[i] for i in files], stride, offset)
            for files, stride, offset in segments if files]


def rank_rows(split: SplitInfo, name: str, seed: int, world_size: int, rank: int) -> int:
    """Rows a process has of a source."""
    return sum(_kept(sum(rows), stride, offset)
               for _, rows, stride, offset in rank_segments(split, name, seed, world_size, rank))


def _kept(rows: int, stride: int, offset: int) -> int:
    return max(0, rows - offset + stride - 1) // stride


def _rank_raw_rows(split: SplitInfo, segments: list[tuple], skip: int) -> Iterator[dict]:
    """The rows of a process's segments from its `skip`-th row on; whole files before it are not read."""
    for files, rows, stride, offset in segments:
        kept = _kept(sum(rows), stride, offset)
        if skip >= kept:
            skip -= kept
            continue
        raw_skip, skip = skip * stride, 0  # rows of the segment before the first one to keep
        yield from islice(_file_rows(split, files, rows, raw_skip), offset, None, stride)


def _file_rows(split: SplitInfo, files: list[str], rows: list[int], skip: int) -> Iterator[dict]:
    for file, count in zip(files, rows):
        if skip >= count:
            skip -= count
            continue
        yield from split.read(file, skip)
        skip = 0
