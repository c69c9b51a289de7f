"""NomicBERT as a sentence-transformers embedder, laid out like nomic-embed-text.

Modules: Transformer -> mean pooling over every unmasked token (prompt and special tokens included) -> for
Matryoshka models (v1.5) a LayerNorm without learnable effect (weight 1, bias 0, frozen) -> L2 normalisation.
Nomic's task prefixes (`nomic_bert_hf.tasks`) are stored as prompts, so `encode_query` / `encode_document` add them.

With `truncate_dim=d` sentence-transformers slices the normalised vector; pass `normalize_embeddings=True` as well to
get v1.5's exact recipe (layer norm, keep the first d dimensions, L2-normalise). Cosine similarities are the same
either way.
"""

import json
from pathlib import Path

from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import (
    LayerNorm,
    Normalize,
    Pooling,
    Transformer,
)

from nomic_bert_hf.configuration_nomic_bert import AUTO_MAP, NomicBertConfig
from nomic_bert_hf.modeling_nomic_bert import NomicBertModel
from nomic_bert_hf.tasks import embedder_prompts
from nomic_bert_hf.utils.files import atomic_output_dir, load_strict, model_config
from nomic_bert_hf.utils.remote_code import allow_remote_code

from .tokenization import write_vocab

PROMPTS = embedder_prompts()
MATRYOSHKA_DIMS = (768, 512, 256, 128, 64)


def build_embedder(
    model_name_or_path: str | Path,
    *,
    matryoshka: bool = False,
    max_seq_length: int = 8192,
    revision: str | None = None,
    trust_remote_code: bool = False,
) -> SentenceTransformer:
    """A `SentenceTransformer` around a checkpoint in this package's layout (encoder or MLM folder, local or Hub id).

    Nomic-format checkpoints must be converted first (`nomic-bert-convert`); a folder whose weights do not cover the
    encoder is refused rather than filled with random weights, and one whose code is not this package's is refused
    unless `trust_remote_code` (`remote_code.allow_remote_code`).
    """
    config = model_config(model_name_or_path, NomicBertConfig, revision=revision)
    if (config.get("auto_map") or {}).get("AutoModel") != AUTO_MAP["AutoModel"]:
        raise ValueError(
            f"{model_name_or_path} is a NomicBERT checkpoint in another layout (Nomic's own or transformers' native: "
            f"its auto_map is {config.get('auto_map')}); convert it with `nomic-bert-convert` first"
        )
    load_strict(NomicBertModel, model_name_or_path, revision=revision)  # missing weights: an error, not random init
    allow_remote_code(model_name_or_path, trust_remote_code, revision, required=True)
    hub = {"revision": revision, "trust_remote_code": True}
    transformer = Transformer(
        str(model_name_or_path),
        max_seq_length=max_seq_length,
        model_kwargs=hub,
        config_kwargs=hub,
        processor_kwargs=hub,
    )
    dimension = transformer.get_embedding_dimension()
    modules = [transformer, Pooling(dimension, pooling_mode="mean")]
    if matryoshka:
        modules.append(LayerNorm(dimension))
    modules.append(Normalize())
    # trust_remote_code: sentence-transformers reloads training checkpoints with the model's own flag
    model = SentenceTransformer(modules=modules, prompts=dict(PROMPTS), similarity_fn_name="cosine", trust_remote_code=True)
    freeze_matryoshka_norm(model)
    return model


def freeze_matryoshka_norm(model: SentenceTransformer) -> None:
    """Keep the Matryoshka LayerNorm at weight 1 and bias 0 (v1.5 uses a LayerNorm without affine parameters)."""
    for module in model:
        if isinstance(module, LayerNorm):
            module.requires_grad_(False)


def save_embedder(model: SentenceTransformer, output_dir: str | Path, overwrite: bool = False) -> Path:
    """Save a complete embedder folder: weights, the model's own code, tokenizer with `vocab.txt`, prompts and
    `max_seq_length`. This package's class reloads a plain `model.save` at full length too; the recorded
    `max_seq_length` is for transformers' native class, which sentence-transformers would otherwise cap at the
    config.json key `max_position_embeddings` (the trained length)."""
    with atomic_output_dir(output_dir, overwrite=overwrite) as staging:
        model.save_pretrained(str(staging))
        write_vocab(model.tokenizer, staging)
        settings_file = staging / "sentence_bert_config.json"
        settings = json.loads(settings_file.read_text())
        settings["max_seq_length"] = model.max_seq_length
        settings_file.write_text(json.dumps(settings, indent=2) + "\n")
    return Path(output_dir)
