"""What a saved embedder folder holds: its required files, a digest of its weights, its dimensions and size.

Evaluation uses this to describe a model to mteb (who was evaluated), publishing to check a folder before it is
uploaded and to match evaluation results to the exact weights they were computed with.
"""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from safetensors import safe_open

from nomic_bert_hf.utils.files import update_digest

SENTENCE_TRANSFORMERS_FILES = ("modules.json", "config_sentence_transformers.json", "sentence_bert_config.json")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
LAYER_NORM_MODULE = "LayerNorm"  # the Matryoshka (v1.5) layout puts a LayerNorm between pooling and normalisation


@dataclass(frozen=True)
class EmbedderInfo:
    """The facts about an embedder folder that a model's metadata and model card report."""

    dimension: int
    max_tokens: int
    matryoshka: bool
    n_parameters: int
    prompts: dict[str, str]
    weights_digest: str


def missing_embedder_files(folder: str | Path) -> list[str]:
    """The files a sentence-transformers embedder folder lacks (empty when it is complete)."""
    folder = Path(folder)
    missing = [name for name in ("config.json", *SENTENCE_TRANSFORMERS_FILES) if not (folder / name).is_file()]
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        missing.append("model.safetensors")
    if not (folder / "vocab.txt").is_file():
        missing.append("vocab.txt")
    if not (folder / "tokenizer.json").is_file() and not (folder / "tokenizer_config.json").is_file():
        missing.append("tokenizer.json")
    if (folder / "modules.json").is_file():
        for module in json.loads((folder / "modules.json").read_text()):
            if module["path"] and not (folder / module["path"]).is_dir():
                missing.append(f"{module['path']}/ (module {module['type'].rsplit('.', 1)[-1]} in modules.json)")
    return missing


def require_embedder_folder(folder: str | Path) -> Path:
    """`folder` as a Path, or a `FileNotFoundError` that names every missing file."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    missing = missing_embedder_files(folder)
    if missing:
        raise FileNotFoundError(
            f"{folder} is not a complete sentence-transformers embedder folder; missing: {', '.join(missing)}. "
            "Save the model with nomic_bert_hf.model.embedder.save_embedder (or `nomic-bert-convert --sentence_transformers`)."
        )
    return folder


def weight_files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*.safetensors") if path.is_file())


def weights_digest(folder: str | Path) -> str:
    """`sha256-` and the first 16 hex digits of a SHA-256 over every safetensors file in the folder (with their
    relative paths): the identity of the weights, used as the model revision of a local folder."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in weight_files(folder):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        update_digest(digest, path)
    return f"sha256-{digest.hexdigest()[:16]}"


def count_parameters(folder: Path) -> int:
    """Parameters stored in the folder's safetensors files, read from their headers (no tensor is loaded)."""
    total = 0
    for path in weight_files(folder):
        with safe_open(path, framework="pt") as weights:
            for name in weights.keys():
                count = 1
                for size in weights.get_slice(name).get_shape():
                    count *= size
                total += count
    return total


def embedder_info(folder: str | Path) -> EmbedderInfo:
    """Dimensions, context length, layout, size, prompts and weights digest of a complete embedder folder."""
    folder = require_embedder_folder(folder)
    config = json.loads((folder / "config.json").read_text())
    modules = json.loads((folder / "modules.json").read_text())
    pooling = next(module for module in modules if module["type"].endswith("Pooling"))
    pooling_config = json.loads((folder / pooling["path"] / "config.json").read_text())
    dimension = pooling_config.get("embedding_dimension") or pooling_config["word_embedding_dimension"]
    settings = json.loads((folder / "config_sentence_transformers.json").read_text())
    return EmbedderInfo(
        dimension=int(dimension),
        max_tokens=int(config.get("n_positions") or config.get("max_position_embeddings")),
        matryoshka=any(module["type"].endswith(LAYER_NORM_MODULE) for module in modules),
        n_parameters=count_parameters(folder),
        prompts=dict(settings.get("prompts") or {}),
        weights_digest=weights_digest(folder),
    )
