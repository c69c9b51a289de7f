"""Pairs streamed from many sources with one source per global batch, sharded across processes and data-loader
workers, seeded, and resumable at any optimizer step without repeating or skipping a row.

    stream = SingleSourceStream(splits, batch_size=32, batches_per_step=8, world_size=8, num_workers=4, seed=42)
    train_dataset = stream.dataset(start_step=resumed_step)     # a datasets.IterableDataset for the trainer

The order of sources is fixed before the first row is read: `global_batch_schedule` (the same function as the
map-style `SingleSourceBatchSampler`) lists the source of every optimizer step, each source drawn in proportion to the
global batches its rows still fill. Every process knows that list, so all processes and all accumulation steps of one
optimizer step read the same source without talking to each other.

Sharding: a source's files are shuffled (seeded) and dealt to the processes (rank r reads files r, r + R, ...); a
source with fewer files than processes is read whole by every process, each keeping every R-th row. The rows of a
process are shuffled within windows of `shuffle_window` rows. Its micro-batches go to its data-loader workers in
turn (torch's DataLoader takes batch i from worker i mod W), so worker w tokenizes only batches w, w + W, ... (it
reads past the others' rows without keeping them). Each source fills `min over processes (rows // rows per process
and step)` steps; the rows past that are left out and logged.

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
        for index, source in enumerate(self.sources):
            rows = [self._rank_rows(index, rank) for rank in range(world_size)]
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
                if batch % self.workers == worker:
                    yield from rows

    def _rank_files(self, index: int, rank: int) -> tuple[list[str], list[int], int, int]:
        """Files a process reads for a source, their rows, and which of every `stride` rows it keeps (`offset`)."""
        split = self.sources[index].split
        order = list(range(len(split.files)))
        random.Random(f"{self.seed}:{self.sources[index].name}:files").shuffle(order)
        if len(order) >= self.world_size:
            mine = order[rank::self.world_size]
            return [split.files[i] for i in mine], [split.file_rows[i] for i in mine], 1, 0
        return [split.files[i] for i in order], [split.file_rows[i] for i in order], self.world_size, rank

    def _rank_rows(self, index: int, rank: int) -> int:
        _, rows, stride, offset = self._rank_files(index, rank)
        return max(0, sum(rows) - offset + stride - 1) // stride

    def _rank_reader(self, index: int, rank: int, start: int) -> Iterator[dict]:
        """The process's rows of a source from its `start`-th row on, as training rows."""
        source = self.sources[index]
        files, rows, stride, offset = self._rank_files(index, rank)
        window = start // self.shuffle_window
        skip = window * self.shuffle_window * stride  # rows of the files before the first window to read
        while files and rows[0] <= skip:
            skip -= rows.pop(0)
            files.pop(0)
        raw = islice(source.split.stream(files).skip(skip), offset, None, stride) if files else iter(())
        position, first = start, start - window * self.shuffle_window
        while chunk := list(islice(raw, self.shuffle_window)):
            random.Random(f"{self.seed}:{source.name}:{rank}:{window}").shuffle(chunk)
            for row in chunk[first:]:
                yield self._training_row(source, row, rank, position)
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
