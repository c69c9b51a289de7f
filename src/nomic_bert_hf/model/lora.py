"""LoRA adapters for an embedder: training through sentence-transformers' PEFT support, saving, and merging.

Adapter folders are portable, and an adapter merges into a full embedder folder.

    python -m nomic_bert_hf.model.lora runs/finetune-lora/adapter runs/finetune-lora/merged

An adapter folder is a sentence-transformers folder whose weights are only the adapter's (`adapter_config.json`,
`adapter_model.safetensors`). peft records the base model as the path it was loaded from, often absolute; this
package records a Hub id, or a local base as a path relative to the adapter folder, and resolves it from there.
"""

import argparse
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from peft import LoraConfig, PeftModel, TaskType
from sentence_transformers import SentenceTransformer
from transformers import AutoModel

from nomic_bert_hf.utils.cli import console_command
from nomic_bert_hf.utils.files import atomic_output_dir, load_strict
from nomic_bert_hf.utils.remote_code import allow_remote_code

from .embedder import save_embedder

LORA_TARGETS = ("Wqkv", "out_proj", "fc11", "fc12", "fc2")
ADAPTER_CONFIG = "adapter_config.json"


def add_lora(model: SentenceTransformer, r: int = 16, alpha: int = 32, dropout: float = 0.0) -> None:
    """Give the embedder a trainable LoRA adapter on every attention and MLP projection; the base weights freeze."""
    model.add_adapter(
        LoraConfig(
            r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(LORA_TARGETS),
            task_type=TaskType.FEATURE_EXTRACTION,
        )
    )


def portable_base(base_model: str | Path, adapter_dir: str | Path) -> str:
    """How an adapter saved in `adapter_dir` names its base: a local folder relative to `adapter_dir`, anything else
    (a Hub id) as it is."""
    if Path(base_model).exists():
        return os.path.relpath(Path(base_model).resolve(), Path(adapter_dir).resolve())
    return str(base_model)


def save_adapter(
    model: SentenceTransformer, output_dir: str | Path, base_model: str | Path, overwrite: bool = False
) -> Path:
    """Save an embedder with a LoRA adapter as an adapter folder (atomically) whose `adapter_config.json` names
    `base_model` portably (see `portable_base`)."""
    output_dir = Path(output_dir)
    with atomic_output_dir(output_dir, overwrite=overwrite) as staging:
        save_embedder(model, staging, overwrite=True)
        config_file = staging / ADAPTER_CONFIG
        config = json.loads(config_file.read_text())
        config["base_model_name_or_path"] = portable_base(base_model, output_dir)
        config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return output_dir


def resolve_base(adapter_dir: str | Path, base_model: str | Path | None = None) -> str:
    """The base model of an adapter folder: `base_model` if given, else the recorded one (a relative path is taken
    relative to the adapter folder)."""
    if base_model is not None:
        return str(base_model)
    recorded = json.loads((Path(adapter_dir) / ADAPTER_CONFIG).read_text())["base_model_name_or_path"]
    local = Path(adapter_dir) / recorded
    return str(local.resolve()) if not Path(recorded).is_absolute() and local.exists() else recorded


def load_adapter_embedder(adapter_dir: str | Path, base_model: str | Path | None = None,
                          trust_remote_code: bool = False) -> SentenceTransformer:
    """An adapter folder as a `SentenceTransformer` (base weights plus adapter), its base resolved by `resolve_base`
    (sentence-transformers itself would look for a relative base from the working directory). The base's code runs
    only where it is this package's or with `trust_remote_code`."""
    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / ADAPTER_CONFIG).is_file():
        raise FileNotFoundError(f"{adapter_dir} holds no {ADAPTER_CONFIG}; it is not an adapter folder")
    with tempfile.TemporaryDirectory() as scratch:
        resolved = Path(scratch) / adapter_dir.name
        shutil.copytree(adapter_dir, resolved)
        config = json.loads((resolved / ADAPTER_CONFIG).read_text())
        config["base_model_name_or_path"] = resolve_base(adapter_dir, base_model)
        (resolved / ADAPTER_CONFIG).write_text(json.dumps(config))
        trusted = allow_remote_code(config["base_model_name_or_path"], trust_remote_code)
        return SentenceTransformer(str(resolved), trust_remote_code=trusted)


def merge_adapter(
    adapter_dir: str | Path, output_dir: str | Path, base_model: str | Path | None = None, overwrite: bool = False,
    trust_remote_code: bool = False,
) -> Path:
    """Write a full embedder folder (atomically) with the adapter's LoRA weights merged into its base's weights.
    A base whose code is not this package's is refused unless `trust_remote_code` (the merged folder ships it)."""
    allow_remote_code(resolve_base(adapter_dir, base_model), trust_remote_code, required=True)
    model = load_adapter_embedder(adapter_dir, base_model, trust_remote_code=True)
    base = load_strict(AutoModel, resolve_base(adapter_dir, base_model), trust_remote_code=True)
    model[0].model = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()  # `auto_model` reads this
    return save_embedder(model, output_dir, overwrite=overwrite)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Merge a LoRA adapter folder into a full embedder folder.")
    parser.add_argument("adapter_dir", help="adapter folder written by training/contrastive.py with lora: true")
    parser.add_argument("output_dir", help="where the merged embedder goes (must not exist unless --overwrite)")
    parser.add_argument("--base_model", "--base-model",
                        help="base model (Hub id or folder) instead of the one the adapter records")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    parser.add_argument("--trust_remote_code", "--trust-remote-code", action="store_true",
                        help="run the base's own code even where it is not this package's")
    args = parser.parse_args(argv)
    print(merge_adapter(args.adapter_dir, args.output_dir, base_model=args.base_model, overwrite=args.overwrite,
                        trust_remote_code=args.trust_remote_code))


command = console_command(main, "nomic-bert-merge-lora")  # the console script (pyproject.toml)


if __name__ == "__main__":
    command()
