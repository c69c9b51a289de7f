"""mteb's description of a NomicBERT embedder (`ModelMeta`): who was evaluated, and how to load it for evaluation.

mteb files results under `results/<name>/<revision>/`; settings that differ from Nomic's protocol (another sequence
length, a Matryoshka dimension, a dynamic NTK factor, int8 or binary retrieval) go into `experiment_kwargs`, so those results land in
`.../experiments/<settings>/` and never mix with the standard run. mteb passes the same settings to the loader.

A local folder's revision is a digest of its weights (`sha256-...`); a Hub model's revision is the commit.
"""

import json
from pathlib import Path

import yaml
from huggingface_hub import snapshot_download
from mteb.models.model_meta import ModelMeta, ScoringFunction

from nomic_bert_hf.model.embedder import MATRYOSHKA_DIMS
from nomic_bert_hf.model.embedder_folder import embedder_info, weights_digest
from nomic_bert_hf.utils.compute import DTYPES
from nomic_bert_hf.utils.configs import CONFIG_FILE
from nomic_bert_hf.utils.remote_code import allow_remote_code

from .protocol import PROTOCOL_MAX_SEQ_LENGTH, PROTOCOL_PROMPTS
from .quantization import check_precisions, load_encoder

NOMIC_CITATION = """@article{nussbaum2024nomic,
  title = {Nomic Embed: Training a Reproducible Long Context Text Embedder},
  author = {Zach Nussbaum and John X. Morris and Brandon Duderstadt and Andriy Mulyar},
  journal = {Transactions on Machine Learning Research},
  year = {2025},
  eprint = {2402.01613},
  archivePrefix = {arXiv}
}"""
HUB_FILES = ["*.json", "*.safetensors", "*.py", "*.txt", "*.yaml"]


def resolve_model(model_name_or_path: str | Path, revision: str | None = None) -> tuple[Path, str]:
    """The local folder of a model and its revision: a folder's weights digest, or a Hub repository's commit."""
    path = Path(model_name_or_path)
    if path.is_dir():
        return path, weights_digest(path)
    try:
        folder = Path(snapshot_download(str(model_name_or_path), revision=revision, allow_patterns=HUB_FILES))
    except Exception as error:  # offline, unknown repository, no access: the same advice applies
        raise FileNotFoundError(
            f"{model_name_or_path} is neither a local folder nor a Hub model that could be fetched ({error}). "
            "Pass an existing folder, or a Hub id with network access (and a token for private models)."
        ) from error
    return folder, folder.name  # snapshot folders are named after the commit


def default_model_name(model_name_or_path: str | Path) -> str:
    """`org/name` as mteb requires: a Hub id as is, a local folder as `local/<folder>` (the run's name for a
    pipeline's `<run>/final` folder)."""
    path = Path(model_name_or_path)
    if not path.is_dir():
        return str(model_name_or_path)
    path = path.resolve()
    return f"local/{path.parent.name if path.name == 'final' else path.name}"


def matryoshka_dims(folder: Path, dimension: int, matryoshka: bool) -> list[int]:
    """The dimensions a Matryoshka model was trained for: its saved config's `matryoshka_dims`, else v1.5's."""
    config_file = folder / CONFIG_FILE
    if config_file.is_file():
        dims = (yaml.safe_load(config_file.read_text()) or {}).get("matryoshka_dims")
        if dims:
            return sorted({int(dim) for dim in dims}, reverse=True)
    if not matryoshka:
        return [dimension]
    return sorted({dimension, *(dim for dim in MATRYOSHKA_DIMS if dim < dimension)}, reverse=True)


def embedder_model_meta(
    model_name_or_path: str | Path,
    *,
    name: str | None = None,
    revision: str | None = None,
    max_seq_length: int = PROTOCOL_MAX_SEQ_LENGTH,
    embed_dim: int | None = None,
    rotary_scaling_factor: float | None = None,
    precision: str = "float32",
    dtype: str = "float32",
    model_prompts: dict[str, str] | None = None,
    trust_remote_code: bool = False,
    license: str = "apache-2.0",
    training_datasets: set[str] | None = None,
    adapted_from: str | None = None,
    public_training_code: str | None = None,
    public_training_data: str | bool | None = None,
) -> ModelMeta:
    """A `ModelMeta` whose loader evaluates the embedder with Nomic's protocol at `max_seq_length` tokens.

    `training_datasets` names the mteb tasks whose data the model saw (mteb flags those results as not zero-shot);
    the default, an empty set, states that it saw none. `embed_dim` evaluates a Matryoshka truncation; `precision`
    (int8, binary) searches quantized embeddings in retrieval (`nomic_bert_hf.evaluation.quantization`). `dtype`
    ("float32" or "bfloat16") is what the model computes in: not part of the results' key (mteb caches a task's
    result per model, revision and experiment), so the evaluation scripts record it beside the results. The folder's
    own code runs only where it is this package's or with `trust_remote_code` (`remote_code.allow_remote_code`).
    """
    check_precisions([precision])
    folder, revision = resolve_model(model_name_or_path, revision)
    info = embedder_info(folder)
    dims = matryoshka_dims(folder, info.dimension, info.matryoshka)
    if embed_dim is not None and embed_dim not in dims:
        raise ValueError(f"embed_dim {embed_dim} is not one of the model's dimensions {dims}")
    if max_seq_length > info.max_tokens:
        raise ValueError(f"max_seq_length {max_seq_length} exceeds the model's {info.max_tokens} positions")
    config = json.loads((folder / "config.json").read_text())
    experiment = {
        "max_seq_length": max_seq_length if max_seq_length != PROTOCOL_MAX_SEQ_LENGTH else None,
        "embed_dim": embed_dim if embed_dim != info.dimension else None,
        "rotary_scaling_factor": rotary_scaling_factor,
        "precision": precision if precision != "float32" else None,
    }
    experiment = {key: value for key, value in experiment.items() if value is not None}
    source = str(folder if Path(model_name_or_path).is_dir() else model_name_or_path)
    return ModelMeta(
        loader=load_encoder,
        loader_kwargs={
            "model_name_or_path": source,
            "model_prompts": dict(model_prompts or PROTOCOL_PROMPTS),
            "max_seq_length": PROTOCOL_MAX_SEQ_LENGTH,
            "trust_remote_code": allow_remote_code(folder, trust_remote_code),
            "dtype": dtype,
        },
        name=name or default_model_name(model_name_or_path),
        revision=revision,
        release_date=None,
        languages=["eng-Latn"],
        n_parameters=info.n_parameters,
        n_embedding_parameters=int(config.get("vocab_size", 0)) * info.dimension or None,
        memory_usage_mb=round(info.n_parameters * DTYPES[dtype].itemsize / 2**20),
        max_tokens=info.max_tokens,
        embed_dim=dims if len(dims) > 1 else info.dimension,
        license=license,
        open_weights=True,
        public_training_code=public_training_code,
        public_training_data=public_training_data,
        framework=["Sentence Transformers", "PyTorch", "Transformers", "safetensors"],
        reference=None if Path(model_name_or_path).is_dir() else f"https://huggingface.co/{model_name_or_path}",
        similarity_fn_name=ScoringFunction.COSINE,
        use_instructions=True,
        training_datasets=set() if training_datasets is None else set(training_datasets),
        adapted_from=adapted_from,
        citation=NOMIC_CITATION,
        experiment_kwargs=experiment or None,
    )
