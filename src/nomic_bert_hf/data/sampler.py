"""One data source per global batch, for sentence-transformers' multi-dataset training.

Nomic Embed fills every batch from a single dataset, so that the model cannot separate positives from in-batch
negatives by telling the sources apart. sentence-transformers' `PROPORTIONAL` sampler picks one dataset per batch it
yields, but under DDP accelerate deals those batches out to the processes in turn (batch i to rank i % world_size),
and each process accumulates `gradient_accumulation_steps` of them per optimizer step: the global batch that the
loss gathers across devices would then mix sources. `SingleSourceBatchSampler` instead yields the
`world_size * gradient_accumulation_steps` batches of one optimizer step as a block from one dataset.

    args.multi_dataset_batch_sampler = single_source_sampler(args.world_size * args.gradient_accumulation_steps)
"""

import functools
import logging
from collections.abc import Iterator, Sequence
from itertools import accumulate

import torch
from sentence_transformers.base.sampler import MultiDatasetDefaultBatchSampler
from torch.utils.data import BatchSampler, ConcatDataset

logger = logging.getLogger(__name__)


def global_batch_schedule(blocks: Sequence[int], generator: torch.Generator | None) -> list[int]:
    """The source of every global batch: source i appears `blocks[i]` times, in a random order drawn with
    `generator`. Drawing the next source in proportion to the blocks it has left, without replacement, gives exactly
    this distribution."""
    sources = [index for index, count in enumerate(blocks) for _ in range(count)]
    return [sources[position] for position in torch.randperm(len(sources), generator=generator).tolist()]


class SingleSourceBatchSampler(MultiDatasetDefaultBatchSampler):
    """Yields blocks of `batches_per_step` full batches, each block from one dataset; datasets are chosen at random in
    proportion to their number of blocks (their size), without replacement (`global_batch_schedule`, which the
    streamed `SingleSourceStream` follows too).

    Rows that do not fill a whole block at the end of a dataset are left out of the epoch (a global batch is never
    partial or mixed); the per-dataset samplers (`batch_sampler` in the training arguments) decide the order of rows.
    """

    def __init__(
        self,
        dataset: ConcatDataset,
        batch_samplers: list[BatchSampler],
        generator: torch.Generator | None = None,
        seed: int = 0,
        batches_per_step: int = 1,
    ) -> None:
        super().__init__(dataset, batch_samplers, generator=generator, seed=seed)
        if batches_per_step < 1:
            raise ValueError(f"batches_per_step must be at least 1, got {batches_per_step}")
        self.batches_per_step = batches_per_step
        rows_per_step = self.batch_size * batches_per_step
        self.blocks = [len(sub_dataset) // rows_per_step for sub_dataset in dataset.datasets]
        if not any(self.blocks):
            raise ValueError(f"no dataset has the {rows_per_step} rows that one global batch needs")
        used = sum(self.blocks) * rows_per_step
        unused = sum(len(sub_dataset) for sub_dataset in dataset.datasets) - used
        if unused:
            logger.info(f"{unused} rows do not fill a whole global batch of their dataset and are left out each epoch")

    def __iter__(self) -> Iterator[list[int]]:
        if self.generator is not None and self.seed is not None:
            self.generator.manual_seed(self.seed + self.epoch)
        offsets = [0, *accumulate(len(sub_dataset) for sub_dataset in self.dataset.datasets)]
        schedule = global_batch_schedule(self.blocks, self.generator)
        batch_iterators = [iter(sampler) for sampler in self.batch_samplers]
        for source in schedule:
            block = []
            for batch in batch_iterators[source]:
                if len(batch) == self.batch_size:  # a short last batch never joins a global batch
                    block.append(batch)
                if len(block) == self.batches_per_step:
                    break
            if len(block) < self.batches_per_step:  # this dataset's sampler ran out early (e.g. NO_DUPLICATES)
                continue
            for batch in block:
                yield [index + offsets[source] for index in batch]

    def __len__(self) -> int:
        return sum(self.blocks) * self.batches_per_step


def single_source_sampler(batches_per_step: int):
    """The `multi_dataset_batch_sampler` argument for sentence-transformers' training arguments: a callable that builds
    a `SingleSourceBatchSampler` for `batches_per_step = world_size * gradient_accumulation_steps`."""
    return functools.partial(SingleSourceBatchSampler, batches_per_step=batches_per_step)
