"""One data source per global batch: the sampler, seen through accelerate's per-process sharding."""

from collections import Counter

import pytest
import torch
from accelerate.data_loader import BatchSamplerShard
from datasets import Dataset
from sentence_transformers.base.sampler import (
    DefaultBatchSampler,
    NoDuplicatesBatchSampler,
    ProportionalBatchSampler,
)
from torch.utils.data import ConcatDataset, RandomSampler

from nomic_bert_hf.data.sampler import SingleSourceBatchSampler, single_source_sampler

SIZES = {"small": 40, "medium": 100, "large": 230}
BATCH, WORLD, ACCUMULATION = 4, 2, 3


def concat(sizes=SIZES):
    """Datasets whose rows say which dataset they belong to."""
    return ConcatDataset(
        [
            Dataset.from_dict({"query": [f"{name} {i}" for i in range(n)], "document": [f"{name} doc {i}" for i in range(n)]})
            for name, n in sizes.items()
        ]
    )


def children(dataset, generator, kind=DefaultBatchSampler):
    if kind is NoDuplicatesBatchSampler:
        return [kind(sub, batch_size=BATCH, drop_last=False, generator=generator, seed=0) for sub in dataset.datasets]
    return [kind(RandomSampler(sub, generator=generator), batch_size=BATCH, drop_last=False) for sub in dataset.datasets]


def global_batches(sampler, world=WORLD, accumulation=ACCUMULATION):
    """The rows of every optimizer step, per process and micro-step, as accelerate deals the sampler's batches out."""
    per_rank = [
        list(BatchSamplerShard(sampler, num_processes=world, process_index=rank, even_batches=False))
        for rank in range(world)
    ]
    steps = min(len(batches) for batches in per_rank) // accumulation
    return [
        [batch for batches in per_rank for batch in batches[step * accumulation : (step + 1) * accumulation]]
        for step in range(steps)
    ]


def source_of(dataset, index):
    return dataset[index]["query"].split()[0]


@pytest.mark.parametrize("child_kind", [DefaultBatchSampler, NoDuplicatesBatchSampler])
def test_every_global_batch_comes_from_one_source_in_proportion_to_size(child_kind):
    dataset = concat()
    generator = torch.Generator()
    sampler = SingleSourceBatchSampler(
        dataset, children(dataset, generator, child_kind), generator=generator, seed=3, batches_per_step=WORLD * ACCUMULATION
    )
    steps = global_batches(sampler)
    rows_per_step = BATCH * WORLD * ACCUMULATION
    assert len(steps) == sum(n // rows_per_step for n in SIZES.values()) == len(sampler) // (WORLD * ACCUMULATION)
    sources = []
    for batches in steps:
        assert all(len(batch) == BATCH for batch in batches)
        step_sources = {source_of(dataset, index) for batch in batches for index in batch}
        assert len(step_sources) == 1, step_sources
        sources.append(step_sources.pop())
    # every source contributes its whole global batches, in a shuffled order
    assert Counter(sources) == {name: n // rows_per_step for name, n in SIZES.items()}
    assert sources != sorted(sources, key=list(SIZES).index)
    rows = [index for batches in steps for batch in batches for index in batch]
    assert len(rows) == len(set(rows))


def test_sentence_transformers_proportional_sampler_mixes_sources_across_processes():
    """The failure the single-source sampler exists for: ST's sampler keeps one source per batch, not per step."""
    dataset = concat()
    generator = torch.Generator()
    sampler = ProportionalBatchSampler(dataset, children(dataset, generator), generator=generator, seed=3)
    steps = global_batches(sampler)
    assert any(len({source_of(dataset, i) for batch in batches for i in batch}) > 1 for batches in steps)


def test_order_is_seeded_and_changes_with_the_epoch():
    def order(seed, epoch):
        dataset = concat()
        generator = torch.Generator()
        sampler = single_source_sampler(WORLD)(dataset, batch_samplers=children(dataset, generator), generator=generator, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert order(5, 0) == order(5, 0)
    assert order(5, 0) != order(5, 1)
    assert order(5, 0) != order(6, 0)


def test_a_dataset_too_small_for_one_global_batch_contributes_nothing():
    dataset = concat({"tiny": 10, "large": 230})
    generator = torch.Generator()
    sampler = SingleSourceBatchSampler(dataset, children(dataset, generator), generator=generator, batches_per_step=4)
    assert {source_of(dataset, index) for batch in sampler for index in batch} == {"large"}
    with pytest.raises(ValueError, match="no dataset has the 64 rows"):
        SingleSourceBatchSampler(concat({"a": 10, "b": 30}), children(concat({"a": 10, "b": 30}), generator), batches_per_step=16)
