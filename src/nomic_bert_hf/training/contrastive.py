"""Nomic Embed's contrastive stages from sentence-transformers: the model to train, the loss, the evaluator.

The evaluator scores held-out retrieval; `training/contrastive.py` puts the pieces together."""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from datasets import Dataset
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainingArguments
from sentence_transformers.sentence_transformer.evaluation import (
    InformationRetrievalEvaluator,
)
from sentence_transformers.sentence_transformer.losses import (
    CachedMultipleNegativesRankingLoss,
    MatryoshkaLoss,
    MultipleNegativesRankingLoss,
)
from sentence_transformers.sentence_transformer.modules import LayerNorm, Pooling
from torch import nn
from transformers.utils import cached_file

from nomic_bert_hf.model.embedder import PROMPTS, build_embedder, freeze_matryoshka_norm
from nomic_bert_hf.tasks import task_prefixes
from nomic_bert_hf.training.runs import AutoBf16
from nomic_bert_hf.utils.files import require_found
from nomic_bert_hf.utils.remote_code import allow_remote_code

logger = logging.getLogger(__name__)


@dataclass
class ContrastiveTrainingArguments(AutoBf16, SentenceTransformerTrainingArguments):
    """sentence-transformers' training arguments with `bf16: auto`."""


def load_embedder(
    model_name_or_path: str | Path, matryoshka: bool = False, revision: str | None = None,
    trust_remote_code: bool = False,
) -> SentenceTransformer:
    """The model to train: an embedder folder (sentence-transformers layout) as it is, any other checkpoint in this
    package's layout (encoder or MLM, e.g. `nomic-bert-2048`) wrapped by `build_embedder`.

    `matryoshka=True` gives the model v1.5's LayerNorm (added after pooling where it is missing); that norm is frozen
    either way. The model's prompts are set to Nomic's (`embedder.PROMPTS`), the prefixes the training applies.
    A model whose code is not this package's is refused unless `trust_remote_code` (`remote_code.allow_remote_code`).
    """
    require_found(model_name_or_path)
    has_modules = cached_file(
        str(model_name_or_path), "modules.json", revision=revision, _raise_exceptions_for_missing_entries=False
    )
    if has_modules is None:
        return build_embedder(model_name_or_path, matryoshka=matryoshka, revision=revision,
                              trust_remote_code=trust_remote_code)
    allow_remote_code(model_name_or_path, trust_remote_code, revision, required=True)
    model = SentenceTransformer(str(model_name_or_path), trust_remote_code=True, revision=revision)
    if matryoshka and not any(isinstance(module, LayerNorm) for module in model):
        modules = list(model)
        after_pooling = next(i for i, module in enumerate(modules) if isinstance(module, Pooling)) + 1
        modules.insert(after_pooling, LayerNorm(model.get_embedding_dimension()))
        model = SentenceTransformer(modules=modules, prompts=model.prompts, similarity_fn_name=model.similarity_fn_name)
    if any(model.prompts.get(name) != prompt for name, prompt in PROMPTS.items()):
        logger.warning(f"{model_name_or_path}: setting the prompts to Nomic's task prefixes {PROMPTS}")
    model.prompts = {**model.prompts, **PROMPTS}
    freeze_matryoshka_norm(model)
    return model


class AutocastCachedMNRL(CachedMultipleNegativesRankingLoss):
    """GradCache that re-embeds its mini-batches under the autocast its forward pass ran in. sentence-transformers
    replays them with gradients in a backward hook, which runs outside the Trainer's autocast: under `bf16` that
    larger half of the step ran in fp32 (a 137M stage-2 step on AMX: 1.24x fp32 instead of what MLM gains)."""

    def forward(self, sentence_features, labels):
        device = self.model.device.type
        self.autocast = {"device_type": device, "dtype": torch.get_autocast_dtype(device),
                         "enabled": torch.is_autocast_enabled(device)}
        return super().forward(sentence_features, labels)

    def embed_minibatch(self, *args, **kwargs):
        with torch.autocast(**self.autocast):
            return super().embed_minibatch(*args, **kwargs)


def contrastive_loss(
    model: SentenceTransformer,
    scale: float = 50.0,
    cached: bool = True,
    mini_batch_size: int = 64,
    gather_across_devices: bool = True,
    matryoshka_dims: Sequence[int] = (),
) -> nn.Module:
    """Nomic's InfoNCE: cosine similarities times `scale` (50, i.e. temperature 0.02), query -> document only, over
    the in-batch documents (and hard negatives) of all processes.

    `cached=True` is GradCache (`CachedMultipleNegativesRankingLoss`): the same loss and gradients with the memory of
    `mini_batch_size` rows. With `matryoshka_dims` the loss is summed, equally weighted, over those leading dimensions
    (`MatryoshkaLoss`); dimensions wider than the model are left out with a warning.
    """
    directions = ("query_to_doc",)
    if cached:
        loss = AutocastCachedMNRL(
            model, scale=scale, mini_batch_size=mini_batch_size, gather_across_devices=gather_across_devices,
            directions=directions,
        )
    else:
        loss = MultipleNegativesRankingLoss(
            model, scale=scale, gather_across_devices=gather_across_devices, directions=directions
        )
    if not matryoshka_dims:
        return loss
    width = model.get_embedding_dimension()
    dims = [dim for dim in matryoshka_dims if dim <= width]
    if len(dims) < len(matryoshka_dims):
        wider = sorted(set(matryoshka_dims) - set(dims))
        logger.warning(f"Matryoshka dimensions {wider} exceed the model's width {width}; left out")
    if not dims:
        raise ValueError(f"no Matryoshka dimension in {list(matryoshka_dims)} fits the model's width {width}")
    return MatryoshkaLoss(model, loss, matryoshka_dims=dims)


def retrieval_evaluator(
    pairs: Dataset, name: str, task: str = "search", batch_size: int = 32, truncate_dim: int | None = None
) -> InformationRetrievalEvaluator:
    """Retrieval on held-out pairs: every query searches all held-out documents for its own (NDCG@10 is the main
    score), with the task's prefixes."""
    queries, documents = list(pairs["query"]), list(pairs["document"])
    document_ids = {text: f"d{i}" for i, text in enumerate(dict.fromkeys(documents))}
    query_ids = {text: f"q{i}" for i, text in enumerate(dict.fromkeys(queries))}
    relevant = {}
    for query, document in zip(queries, documents):
        relevant.setdefault(query_ids[query], set()).add(document_ids[document])
    query_prompt, document_prompt = task_prefixes(task)
    return InformationRetrievalEvaluator(
        queries={query_id: text for text, query_id in query_ids.items()},
        corpus={document_id: text for text, document_id in document_ids.items()},
        relevant_docs=relevant,
        name=name,
        query_prompt=query_prompt,
        corpus_prompt=document_prompt,
        batch_size=batch_size,
        truncate_dim=truncate_dim,
        show_progress_bar=False,
    )
