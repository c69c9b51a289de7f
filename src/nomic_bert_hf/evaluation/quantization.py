"""Retrieval with quantized embeddings (int8, binary), scored the way a vector database stores and searches them.

Calibration. int8 maps each dimension's [min, max] range onto 256 buckets, and queries and documents must share the
ranges. mteb encodes the queries in one call and the corpus in others (chunks of 50,000 documents), so quantizing
per `encode` call (sentence-transformers' `encode(precision=...)`, mteb's `precision` encode kwarg) would give the
queries other buckets than the documents (mteb's `CompressionWrapper` calibrates per call too, and scores binary
vectors as 0/1, whose cosine is not a Hamming ranking). Here the corpus is the calibration set, as in a vector
database: `QuantizedIndex`, mteb's search-index backend, receives every document embedding at once (so a corpus'
float32 embeddings are in memory together), takes the int8 ranges from them, stores the quantized documents and
quantizes each query with the same ranges.

Scoring. mteb ranks with the model's similarity function (cosine). int8: the cosine of the int8 codes. binary: the
signs as ±1 vectors; for d-dimensional ±1 vectors `dot = d - 2 * hamming` and every norm is `sqrt(d)`, so their
cosine is `1 - 2 * hamming / d` and ranks documents exactly as the Hamming distance of the packed bits does.

Only Retrieval and Reranking are quantized: quantization is a property of a search index. STS, clustering and
classification compare or fit the vectors once, with no stored collection to shrink, and have no calibration set
that queries would share; they are reported in float32 only.
"""

from collections.abc import Callable, Sequence

import numpy as np
import torch
from mteb.abstasks import AbsTask
from mteb.models import SearchEncoderWrapper
from sentence_transformers import quantize_embeddings

from .protocol import NomicEncoder

PRECISIONS = ("float32", "int8", "binary")
QUANTIZED_TASK_TYPES = frozenset({"Retrieval", "Reranking"})
SCORES_PER_CHUNK = 2**26  # query x document scores computed at once (256 MiB of float32)


def check_precisions(precisions: Sequence[str]) -> list[str]:
    """The precisions, each once, in order; a ValueError names any that is not float32, int8 or binary."""
    unknown = [precision for precision in precisions if precision not in PRECISIONS]
    if unknown or not precisions:
        raise ValueError(f"unknown precision {', '.join(map(repr, unknown)) or '(none given)'}: "
                         f"choose from {', '.join(PRECISIONS)}")
    return list(dict.fromkeys(precisions))


def quantizable(tasks: Sequence[AbsTask]) -> list[AbsTask]:
    """The tasks whose scores are reported per precision (Retrieval and Reranking)."""
    return [task for task in tasks if task.metadata.type in QUANTIZED_TASK_TYPES]


def int8_ranges(embeddings: np.ndarray) -> np.ndarray:
    """Per-dimension [min; max] of the calibration embeddings, shape (2, dim), as `quantize_embeddings` takes them."""
    return np.stack([embeddings.min(axis=0), embeddings.max(axis=0)])


def quantize(embeddings, precision: str, ranges: np.ndarray | None = None) -> torch.Tensor:
    """Embeddings quantized with `quantize_embeddings`, one int8 per dimension: the int8 code, or the sign as ±1."""
    embeddings = torch.as_tensor(embeddings).float().cpu().numpy()
    if precision == "int8":
        return torch.from_numpy(quantize_embeddings(embeddings, "int8", ranges=ranges))
    bits = np.unpackbits(quantize_embeddings(embeddings, "ubinary"), axis=-1, count=embeddings.shape[-1])
    return torch.from_numpy(2 * bits.astype(np.int8) - 1)


def best(scores, k: int, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The k highest scores per row and their column positions (+ `offset`)."""
    values, indices = torch.topk(torch.as_tensor(scores), min(k, scores.shape[1]), dim=1)
    return values, indices + offset


class QuantizedIndex:
    """mteb search backend (`IndexEncoderSearchProtocol`) holding the corpus quantized to int8 or binary, with the
    int8 ranges of the corpus applied to the queries too. Scores are the model's similarity of the codes in float32,
    computed for a slice of the corpus at a time."""

    def __init__(self, precision: str) -> None:
        if precision not in PRECISIONS[1:]:
            raise ValueError(f"QuantizedIndex quantizes to {' or '.join(PRECISIONS[1:])}, not {precision!r}")
        self.precision = precision
        self.clear()

    def add_documents(self, embeddings, idxs: list[str]) -> None:
        embeddings = torch.as_tensor(embeddings).float()
        self.ranges = int8_ranges(embeddings.cpu().numpy()) if self.precision == "int8" else None
        self.documents = quantize(embeddings, self.precision, self.ranges)
        self.ids = list(idxs)

    def search(self, embeddings, top_k: int, similarity_fn: Callable, top_ranked: dict | None = None,
               query_idx_to_id: dict[int, str] | None = None) -> tuple[list[list[float]], list[list[int]]]:
        """Top-k (scores, document positions) per query: in the whole corpus, or among the query's `top_ranked`
        documents (positions in that list)."""
        queries = quantize(embeddings, self.precision, self.ranges).float()
        if top_ranked is None:
            return self.corpus_search(queries, top_k, similarity_fn)
        position = {doc_id: i for i, doc_id in enumerate(self.ids)}
        values, indices = [], []
        for row, query in enumerate(queries):
            candidates = [position[doc_id] for doc_id in top_ranked.get(query_idx_to_id[row], [])]
            value, index = best(similarity_fn(query[None], self.documents[candidates].float()), top_k)
            values += value.tolist()
            indices += index.tolist()
        return values, indices

    def corpus_search(self, queries: torch.Tensor, k: int, similarity_fn: Callable):
        size = max(1, SCORES_PER_CHUNK // len(queries))
        found = [best(similarity_fn(queries, self.documents[start:start + size].float()), k, offset=start)
                 for start in range(0, len(self.documents), size)]
        values, order = best(torch.cat([value for value, _ in found], dim=1), k)
        return values.tolist(), torch.gather(torch.cat([index for _, index in found], dim=1), 1, order).tolist()

    def clear(self) -> None:
        self.ranges, self.documents, self.ids = None, None, []


def load_encoder(model_name: str, revision: str | None = None, *, precision: str = "float32", **kwargs):
    """mteb's loader for `embedder_model_meta`: the protocol's `NomicEncoder`, searched through a `QuantizedIndex`
    for int8 and binary."""
    encoder = NomicEncoder(model_name, revision, **kwargs)
    if precision == "float32":
        return encoder
    return SearchEncoderWrapper(encoder, index_backend=QuantizedIndex(precision))
