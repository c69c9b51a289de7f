"""Pair data prepared with an existing embedder: hard-negative mining and Nomic's consistency filtering.

Mining is sentence-transformers' `mine_hard_negatives`."""

import logging
from collections import defaultdict

import torch
from datasets import Dataset
from sentence_transformers import SentenceTransformer
from sentence_transformers.util import mine_hard_negatives

from nomic_bert_hf.utils.remote_code import allow_remote_code

logger = logging.getLogger(__name__)


def load_judge(model_name_or_path: str, *, dtype: torch.dtype = torch.float32, trust_remote_code: bool = False,
               max_seq_length: int | None = None) -> SentenceTransformer:
    """The embedder that ranks candidates for mining and filtering, computing in `dtype`, truncating at
    `max_seq_length` (default: its own limit). Its own code runs only if it is this package's or `trust_remote_code`."""
    trusted = allow_remote_code(model_name_or_path, trust_remote_code)
    model = SentenceTransformer(model_name_or_path, trust_remote_code=trusted, model_kwargs={"dtype": dtype})
    if max_seq_length:
        model.max_seq_length = max_seq_length
    return model


def mine_negatives(
    pairs: Dataset,
    model: SentenceTransformer,
    num_negatives: int = 20,
    range_min: int = 0,
    range_max: int | None = None,
    max_score: float | None = None,
    relative_margin: float | None = None,
    query_prompt: str | None = None,
    document_prompt: str | None = None,
    batch_size: int = 32,
) -> Dataset:
    """`pairs` (query, document) with a `negatives` column: the `num_negatives` documents of the dataset that `model`
    ranks highest for the query, its own document excluded (Nomic mined the top 20 with gte-base). Rows for which too
    few candidates pass the filters are dropped (and counted in the log)."""
    mined = mine_hard_negatives(
        pairs.select_columns(["query", "document"]),
        model,
        anchor_column_name="query",
        positive_column_name="document",
        num_negatives=num_negatives,
        range_min=range_min,
        range_max=range_max,
        max_score=max_score,
        relative_margin=relative_margin,
        sampling_strategy="top",
        query_prompt=query_prompt,
        corpus_prompt=document_prompt,
        output_format="n-tuple",
        batch_size=batch_size,
        verbose=False,
    )
    if len(mined) < len(pairs):
        logger.warning(f"dropped {len(pairs) - len(mined)} of {len(pairs)} pairs with fewer than {num_negatives} negatives")
    columns = [f"negative_{i}" for i in range(1, num_negatives + 1)]
    return mined.map(
        lambda batch: {"negatives": [list(row) for row in zip(*(batch[column] for column in columns))]},
        batched=True,
        remove_columns=columns,
    )


def consistency_filter(
    pairs: Dataset,
    model: SentenceTransformer,
    top_k: int = 2,
    sample_size: int = 1_000_000,
    query_prompt: str | None = None,
    document_prompt: str | None = None,
    batch_size: int = 32,
    seed: int = 0,
) -> Dataset:
    """The pairs whose document `model` ranks among the query's `top_k` when it competes with `sample_size` documents
    drawn at random from the dataset (Nomic: gte-base, top 2 of a 1M sample). A sampled copy of the pair's own
    document does not count against it."""
    documents = list(pairs["document"])
    generator = torch.Generator().manual_seed(seed)
    sample = torch.randperm(len(pairs), generator=generator)[:sample_size]
    encode = dict(batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True, show_progress_bar=False)
    queries = model.encode(list(pairs["query"]), prompt=query_prompt, **encode)
    document_embeddings = model.encode(documents, prompt=document_prompt, **encode)
    own_scores = (queries * document_embeddings).sum(-1)
    sample_embeddings = document_embeddings[sample]
    copies = defaultdict(list)  # document text -> its positions in the sample
    for position, index in enumerate(sample.tolist()):
        copies[documents[index]].append(position)
    keep = []
    for start in range(0, len(pairs), 1024):
        beaten = queries[start : start + 1024] @ sample_embeddings.T > own_scores[start : start + 1024, None]
        for row in range(len(beaten)):
            beaten[row, copies.get(documents[start + row], [])] = False
        keep.extend((start + (beaten.sum(1) < top_k).nonzero().flatten()).tolist())
    logger.info(f"kept {len(keep)} of {len(pairs)} pairs: document in the query's top {top_k} among {len(sample)}")
    return pairs.select(keep)
