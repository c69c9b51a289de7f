"""Convert NomicBERT checkpoints between three layouts.

* `nomic`: as Nomic published them (GPT-2-style config keys only, code fetched from nomic-ai/nomic-bert-2048, which
  needs network access and einops).
* `package`: this package's layout. Same weight names; a config.json that carries both Nomic's keys and transformers'
  native keys; the model's own code next to the weights; the tokenizer with `vocab.txt` and `model_max_length`
  = `n_positions`. An encoder folder in this layout loads with `trust_remote_code=True` (bundled code) and without
  it (transformers' native `nomic_bert`).
* `native`: written by transformers' native class, config.json in its keys only. Only needed for MLM and
  classification checkpoints, which native transformers cannot read in the other layouts (it expects its `nomic_bert.`
  prefix and biases in the MLM head; those biases are written as zeros, which leaves the outputs unchanged). The weight
  names stay Nomic's under that prefix: transformers' `nomic_bert` conversion mapping renames them (and splits `Wqkv`
  into q/k/v) on load, and reverts that on save.

    nomic-bert-convert nomic-ai/nomic-embed-text-v1.5 nomic-embed-text-v1.5 --sentence_transformers --matryoshka
    nomic-bert-convert nomic-ai/nomic-bert-2048 nomic-bert-2048 --n_positions 8192 --rotary_scaling_factor 2
    nomic-bert-convert nomic-bert-2048 nomic-bert-2048-native --to native
"""

import argparse
import json
import re
import tempfile
from pathlib import Path

import torch
from huggingface_hub import snapshot_download
from safetensors.torch import save_file
from transformers import AutoTokenizer, PreTrainedModel

from nomic_bert_hf.configuration_nomic_bert import NATIVE_ONLY_KEYS, NomicBertConfig
from nomic_bert_hf.modeling_nomic_bert import (
    NomicBertForPreTraining,
    NomicBertForSequenceClassification,
    NomicBertModel,
)
from nomic_bert_hf.utils.cli import console_command
from nomic_bert_hf.utils.files import atomic_output_dir, read_state_dict

from .embedder import build_embedder, save_embedder
from .tokenization import bert_uncased_tokenizer, save_tokenizer

NOMIC_CODE = "nomic-ai/nomic-bert-2048--{}_hf_nomic_bert.{}"
NOMIC_AUTO_MAP = {
    "AutoConfig": NOMIC_CODE.format("configuration", "NomicBertConfig"),
    "AutoModel": NOMIC_CODE.format("modeling", "NomicBertModel"),
    "AutoModelForMaskedLM": NOMIC_CODE.format("modeling", "NomicBertForPreTraining"),
    "AutoModelForSequenceClassification": NOMIC_CODE.format("modeling", "NomicBertForSequenceClassification"),
}
NATIVE_KEYS = (*NATIVE_ONLY_KEYS, "vocab_size", "type_vocab_size", "pad_token_id", "initializer_range",
               "tie_word_embeddings", "id2label", "label2id", "problem_type")


def fetch(source: str, revision: str | None = None) -> Path:
    """A local checkpoint folder, or the config, tokenizer and weights of a Hub repository (safetensors preferred)."""
    if Path(source).is_dir():
        return Path(source)
    folder = Path(snapshot_download(source, revision=revision, allow_patterns=["*.json", "*.safetensors", "vocab.txt"]))
    if not any(folder.glob("*.safetensors")):
        folder = Path(snapshot_download(source, revision=revision, allow_patterns=["*.json", "pytorch_model.bin"]))
    return folder


def model_class_for(state_dict: dict) -> type[PreTrainedModel]:
    """Which head a checkpoint holds, from its weight names."""
    if any(key.startswith("cls.predictions.") for key in state_dict):
        return NomicBertForPreTraining
    if "classifier.weight" in state_dict:
        return NomicBertForSequenceClassification
    return NomicBertModel


def load_checkpoint(folder: Path, **config_overrides) -> PreTrainedModel:
    """Build this package's model for a checkpoint in Nomic's or this package's layout, every weight accounted for."""
    config_dict = json.loads((folder / "config.json").read_text())
    state_dict = read_state_dict(folder)
    model_class = model_class_for(state_dict)
    if model_class is NomicBertForSequenceClassification:
        config_dict["num_labels"] = state_dict["classifier.weight"].shape[0]
    model = model_class(NomicBertConfig(**{**config_dict, **config_overrides}))
    result = model.load_state_dict(state_dict, strict=False)
    missing = sorted(set(result.missing_keys) - set(getattr(model, "_tied_weights_keys", None) or {}))
    if missing or result.unexpected_keys:
        raise ValueError(
            f"{folder} does not fit {model_class.__name__}: missing {missing or 'nothing'}, "
            f"unexpected {sorted(result.unexpected_keys) or 'nothing'}"
        )
    return model.eval()


def load_tokenizer(folder: Path, model_max_length: int):
    """The checkpoint's own tokenizer if it has one, otherwise the bert-base-uncased one shipped with this package."""
    if (folder / "tokenizer.json").is_file() or (folder / "vocab.txt").is_file():
        return AutoTokenizer.from_pretrained(folder, model_max_length=model_max_length)
    return bert_uncased_tokenizer(model_max_length)


def to_package(model: PreTrainedModel, tokenizer, output: Path, overwrite: bool = False) -> None:
    with atomic_output_dir(output, overwrite) as staging:
        model.save_pretrained(staging)
        save_tokenizer(tokenizer, staging)


def to_nomic(model: PreTrainedModel, tokenizer, output: Path, overwrite: bool = False) -> None:
    """Nomic's published layout: its config keys only, its remote code, tied weights stored twice as it did."""
    config = {key: value for key, value in model.config.to_dict().items() if key not in NATIVE_ONLY_KEYS}
    config.update(auto_map=NOMIC_AUTO_MAP, architectures=[type(model).__name__])
    with atomic_output_dir(output, overwrite) as staging:
        (staging / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        save_file({key: value.contiguous().clone() for key, value in model.state_dict().items()},
                  staging / "model.safetensors", metadata={"format": "pt"})
        save_tokenizer(tokenizer, staging)


def to_native(model: PreTrainedModel, tokenizer, output: Path, overwrite: bool = False) -> None:
    """transformers' native class, its weights loaded through transformers' own `nomic_bert` conversion mapping."""
    import transformers

    native_name = {
        NomicBertModel: "NomicBertModel",
        NomicBertForPreTraining: "NomicBertForMaskedLM",
        NomicBertForSequenceClassification: "NomicBertForSequenceClassification",
    }[type(model)]
    config_dict = model.config.to_dict()
    native_config = transformers.NomicBertConfig(
        **{key: config_dict[key] for key in NATIVE_KEYS if key in config_dict},
        classifier_dropout=model.config.classifier_dropout if model.config.classifier_dropout is not None
        else model.config.embd_pdrop,
    )
    # transformers' `nomic_bert` conversion mapping (conversion_mapping.py) does every rename but this prefix, and a
    # `key_mapping=` for it would be reverted by save_pretrained, writing `bert.` again.
    state_dict = {re.sub(r"^bert\.", "nomic_bert.", key): value for key, value in model.state_dict().items()}
    if isinstance(model, NomicBertForPreTraining):
        state_dict["cls.predictions.transform.dense.bias"] = torch.zeros(model.config.n_embd)
        state_dict["cls.predictions.bias"] = torch.zeros(model.config.vocab_size)
    native, info = getattr(transformers, native_name).from_pretrained(
        None, config=native_config, state_dict=state_dict, output_loading_info=True
    )
    if any(info.values()):
        raise ValueError(f"the weights do not fit transformers' {native_name}: {info}")
    with atomic_output_dir(output, overwrite) as staging:
        native.save_pretrained(staging)
        save_tokenizer(tokenizer, staging)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="nomic-bert-convert", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="checkpoint folder or Hugging Face Hub id")
    parser.add_argument("output", help="folder to write (must not exist unless --overwrite)")
    parser.add_argument("--to", choices=("package", "nomic", "native"), default="package")
    parser.add_argument("--revision", help="Hub revision (branch, tag or commit) of the source")
    parser.add_argument("--sentence_transformers", "--sentence-transformers", action="store_true",
                        help="write a sentence-transformers embedder folder (package layout, prompts stored)")
    parser.add_argument("--matryoshka", action="store_true", help="with --sentence-transformers: v1.5's LayerNorm")
    parser.add_argument("--n_positions", "--n-positions", type=int, help="longest input to accept (e.g. 8192)")
    parser.add_argument("--rotary_scaling_factor", "--rotary-scaling-factor", type=float,
                        help="dynamic NTK factor above 2048 tokens (e.g. 2)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    args = parser.parse_args(argv)
    if args.matryoshka and not args.sentence_transformers:
        parser.error("--matryoshka needs --sentence_transformers")
    if args.sentence_transformers and args.to != "package":
        parser.error("--sentence_transformers writes the package layout; drop --to")

    source = fetch(args.source, args.revision)
    overrides = {"n_positions": args.n_positions, "rotary_scaling_factor": args.rotary_scaling_factor}
    model = load_checkpoint(source, **{key: value for key, value in overrides.items() if value is not None})
    tokenizer = load_tokenizer(source, model.config.n_positions)
    output = Path(args.output)
    if args.sentence_transformers:
        with tempfile.TemporaryDirectory() as scratch:
            encoder_dir = Path(scratch, "encoder")
            to_package(model, tokenizer, encoder_dir)
            embedder = build_embedder(encoder_dir, matryoshka=args.matryoshka, max_seq_length=model.config.n_positions)
            save_embedder(embedder, output, overwrite=args.overwrite)
    else:
        {"package": to_package, "nomic": to_nomic, "native": to_native}[args.to](model, tokenizer, output, args.overwrite)
    print(f"wrote {output} ({args.to} layout, {type(model).__name__})")


command = console_command(main, "nomic-bert-convert")  # the console script (pyproject.toml)


if __name__ == "__main__":
    command()
