"""Nomic's MTEB protocol as an mteb encoder (paper section 5.2.1).

* Prompts: `search_query: ` / `search_document: ` for Retrieval and Reranking, `clustering: ` for Clustering,
  `classification: ` for Classification, PairClassification, STS and Summarization (`nomic_bert_hf.tasks`). The
  model's own prompt names (`classification`, `clustering`) are not keys mteb understands, so they are mapped onto
  mteb's keys: task types (`STS`, `Clustering`, ...) and `<task type>-<prompt type>` (`Retrieval-query`, ...), with
  bare `query` / `document` for any other task that encodes queries and documents (e.g. InstructionRetrieval). mteb
  picks the first key that exists among task name + prompt type, task name, task type + prompt type, task type,
  prompt type.
* Normalisation: embeddings are L2-normalised for every task type except classification, where the features go
  unnormalised into mteb's classifier (Nomic's `no_normalize_classification`).
* A chosen maximum sequence length (512 in the paper's MTEB runs) and, for long inputs, the dynamic NTK factor
  (`rotary_scaling_factor`) set on the model's config.
* The dtype the model computes in (`dtype`: "float32" or "bfloat16", as `nomic_bert_hf.utils.compute` chooses it).
"""

from pathlib import Path
from typing import Any

from mteb.models import SentenceTransformerEncoderWrapper

from nomic_bert_hf.tasks import mteb_prompts
from nomic_bert_hf.utils.compute import DTYPES

PROTOCOL_PROMPTS = mteb_prompts()
UNNORMALISED_TASK_TYPES = frozenset({"Classification", "MultilabelClassification"})
PROTOCOL_MAX_SEQ_LENGTH = 512


class NomicEncoder(SentenceTransformerEncoderWrapper):
    """An embedder folder or Hub model evaluated with Nomic's protocol (prompts, normalisation, sequence length).

    The model's final `Normalize` module is taken off and applied per task instead, so classification sees the
    unnormalised (for Matryoshka models: layer-normed) vectors; with `embed_dim` the vectors are truncated first.
    The `ModelMeta` of `nomic_bert_hf.evaluation.embedder_model_meta` loads it (through `quantization.load_encoder`,
    which adds a quantized search index for int8 and binary retrieval).
    """

    def __init__(
        self,
        model_name: str,
        revision: str | None = None,
        device: str | None = None,
        model_prompts: dict[str, str] | None = None,
        *,
        model_name_or_path: str | None = None,
        max_seq_length: int = PROTOCOL_MAX_SEQ_LENGTH,
        embed_dim: int | None = None,
        rotary_scaling_factor: float | None = None,
        trust_remote_code: bool = False,
        dtype: str = "float32",
        **kwargs: Any,
    ) -> None:
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer.modules import Normalize

        source = model_name_or_path or model_name
        hub_kwargs = {"trust_remote_code": trust_remote_code}
        if revision is not None and not Path(source).is_dir():  # a local folder's revision is its weights digest
            hub_kwargs["revision"] = revision
        config_kwargs = {"rotary_scaling_factor": rotary_scaling_factor} if rotary_scaling_factor else None
        model = SentenceTransformer(source, device=device, truncate_dim=embed_dim, config_kwargs=config_kwargs,
                                    model_kwargs={"dtype": DTYPES[dtype]}, **hub_kwargs, **kwargs)
        model.max_seq_length = max_seq_length
        if isinstance(model[-1], Normalize):
            del model[-1]
        model.prompts = dict(model_prompts or PROTOCOL_PROMPTS)  # as the model's own, so mteb validates, not overrides
        super().__init__(model, revision, device)

    def encode(self, inputs, *, task_metadata, hf_split, hf_subset, prompt_type=None, **kwargs):
        normalize = task_metadata.type not in UNNORMALISED_TASK_TYPES
        return super().encode(
            inputs,
            task_metadata=task_metadata,
            hf_split=hf_split,
            hf_subset=hf_subset,
            prompt_type=prompt_type,
            normalize_embeddings=normalize,
            **kwargs,
        )
