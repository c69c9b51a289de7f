"""Output folders of Trainer runs: never clobbered, resumable from their checkpoints, finished by an atomic `final/`.

The rules (`prepare_output_dir`):

* a folder holding `final/` is a finished run, and a non-empty folder without it is an interrupted run or someone
  else's files: starting there is an error unless the user resumes (`--resume_from_checkpoint`) or passes
  `--overwrite_output_dir true` (then only `final/` is replaced, once the new one is complete);
* `--resume_from_checkpoint true` (or `last`) picks the newest `checkpoint-N` of the output folder; a checkpoint whose
  save was interrupted, or one of a different architecture, is refused with a message saying so.

Every checkpoint gets the resolved config (`config.yaml`) and `vocab.txt` beside the Trainer's files
(`CheckpointFilesCallback`), and `save_final_model` writes `{output_dir}/final/` in one rename (`write_final_dir`,
through which every training script saves its result with `config.yaml` and `datasets.json`).
"""

import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import datasets
import transformers
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

from nomic_bert_hf.model.tokenization import save_tokenizer, write_vocab
from nomic_bert_hf.utils.configs import save_config
from nomic_bert_hf.utils.files import atomic_output_dir
from nomic_bert_hf.utils.provenance import write_json

logger = logging.getLogger(__name__)

FINAL_DIR = "final"
TRAINER_STATE = "trainer_state.json"
DATASETS_FILE = "datasets.json"  # in final/: the datasets a stage read, with their revisions and rows
LAST_CHECKPOINT = ("true", "last")
# Config fields that must match for a checkpoint's weights and optimizer state to fit a model.
ARCHITECTURE_FIELDS = ("vocab_size", "n_embd", "n_layer", "n_head", "n_inner", "type_vocab_size", "activation_function")


@dataclass
class RunTrainingArguments(TrainingArguments):
    """transformers' TrainingArguments plus `overwrite_output_dir`."""

    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Train in a non-empty output_dir and replace its final results"}
    )


def setup_logging(args: TrainingArguments, *names: str) -> None:
    """Log this package's and the script's messages (`names`) at INFO on the main process; `--log_level` also sets
    transformers' and datasets' verbosity."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("nomic_bert_hf", *names):
        logging.getLogger(name).setLevel(logging.INFO if args.should_log else logging.WARNING)
    if args.log_level != "passive":
        datasets.utils.logging.set_verbosity(args.get_process_log_level())
        transformers.utils.logging.set_verbosity(args.get_process_log_level())


def prepare_output_dir(output_dir: str | Path, resume_from_checkpoint: str | None, overwrite: bool,
                       resumable: bool = True) -> str | None:
    """Check `output_dir` against the rules above; return the checkpoint to resume from, or None. `resumable`: whether
    the script can continue an interrupted run (it decides what the error suggests)."""
    output_dir = Path(output_dir)
    finished = output_dir / FINAL_DIR
    if finished.exists() and not overwrite:
        raise FileExistsError(
            f"{output_dir} holds a finished run ({finished}); choose another output_dir or pass "
            "--overwrite_output_dir true to train again and replace it"
        )
    if resume_from_checkpoint is None or resume_from_checkpoint.lower() in ("", "false", "none"):
        if output_dir.is_dir() and any(output_dir.iterdir()) and not overwrite:
            resume = "continue its run with --resume_from_checkpoint true, " if resumable else ""
            raise FileExistsError(
                f"{output_dir} is not empty; {resume}choose another output_dir, or pass --overwrite_output_dir true "
                "to write there anyway"
            )
        return None
    if resume_from_checkpoint.lower() in LAST_CHECKPOINT:
        checkpoint = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
        if checkpoint is None:
            raise FileNotFoundError(f"--resume_from_checkpoint {resume_from_checkpoint}: {output_dir} holds no "
                                    f"{PREFIX_CHECKPOINT_DIR}-N folder")
    else:
        checkpoint = resume_from_checkpoint
    if not Path(checkpoint).is_dir():
        raise FileNotFoundError(f"checkpoint {checkpoint} does not exist")
    if not (Path(checkpoint) / TRAINER_STATE).is_file():
        raise ValueError(
            f"checkpoint {checkpoint} is incomplete (no {TRAINER_STATE}: its save was interrupted?); resume from an "
            "earlier checkpoint"
        )
    return str(checkpoint)


def resumed_step(checkpoint: str | None) -> int:
    """The optimizer step a run resumes at: the checkpoint's global step (0 for a fresh run)."""
    if checkpoint is None:
        return 0
    return int(json.loads((Path(checkpoint) / TRAINER_STATE).read_text())["global_step"])


def check_resume_compatible(checkpoint: str | Path, model: PreTrainedModel) -> None:
    """Refuse a checkpoint written by another model class or architecture than `model` (the Trainer would load what
    fits and silently keep the rest at random)."""
    config_file = Path(checkpoint) / "config.json"
    if not config_file.is_file():
        raise ValueError(f"checkpoint {checkpoint} has no config.json; it was not written by this training script")
    saved = json.loads(config_file.read_text())
    expected = model.config.to_dict()
    different = [
        f"{key} {saved.get(key)!r} (this run: {expected.get(key)!r})"
        for key in ARCHITECTURE_FIELDS if saved.get(key) != expected.get(key)
    ]
    if saved.get("architectures") != [type(model).__name__]:
        different.insert(0, f"architectures {saved.get('architectures')} (this run: {[type(model).__name__]})")
    if different:
        raise ValueError(
            f"checkpoint {checkpoint} is of another architecture: {'; '.join(different)}. Resume with the config it "
            "was trained with (its config.yaml), or start a new run in another output_dir"
        )


class CheckpointFilesCallback(TrainerCallback):
    """Write the resolved config (`config.yaml`) and `vocab.txt` into every checkpoint the Trainer saves."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, *configs):
        self.tokenizer = tokenizer
        self.configs = configs

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            checkpoint = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
            save_config(checkpoint, *self.configs)
            write_vocab(self.tokenizer, checkpoint)


class MaskingEpochCallback(TrainerCallback):
    """Tell a `MaskingCollator` which epoch is starting, so each epoch draws new masks (also after a resume).
    Data-loader workers copy the collator when an epoch starts; persistent workers would keep the first epoch's."""

    def __init__(self, collator):
        self.collator = collator

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.collator.epoch = int(state.epoch + 1e-6)  # state.epoch is fractional after a mid-epoch resume


def save_final_model(trainer: Trainer, tokenizer: PreTrainedTokenizerBase, *configs, overwrite: bool = False,
                     datasets_read: dict | None = None) -> Path:
    """Write `{output_dir}/final/`: weights (safetensors), the model's code, tokenizer with `vocab.txt`, `config.yaml`,
    and `datasets.json` (`datasets_read`: the datasets and revisions the run read).

    Every process must call this (FSDP and DeepSpeed gather the weights collectively); the main process writes a
    staging folder and renames it into place, so `final/` is either complete or absent.
    """
    output_dir = Path(trainer.args.output_dir)
    staging = output_dir / f".{FINAL_DIR}.staging"
    if trainer.is_world_process_zero() and staging.exists():
        shutil.rmtree(staging)  # left behind by a crash during an earlier save; never a user's folder
    trainer.accelerator.wait_for_everyone()
    trainer.save_model(str(staging))
    final = output_dir / FINAL_DIR
    if trainer.is_world_process_zero():
        (staging / "training_args.bin").unlink(missing_ok=True)  # a pickle; config.yaml records the same settings
        save_tokenizer(tokenizer, staging)
        write_final_dir(output_dir, partial(move_contents, staging), *configs, overwrite=overwrite,
                        datasets_read=datasets_read)
        staging.rmdir()
        logger.info("Saved the final model to %s", final)
    trainer.accelerator.wait_for_everyone()
    return final


def write_final_dir(output_dir: str | Path, write_model: Callable[[Path], object], *configs, overwrite: bool = False,
                    datasets_read: dict | None = None) -> Path:
    """Write `{output_dir}/final/` in one rename (complete or absent): the model (`write_model` fills the folder), the
    resolved config (`config.yaml`) and `datasets.json` (`datasets_read`: the datasets and revisions the run read).
    Every training script finishes through it, on the main process."""
    final = Path(output_dir) / FINAL_DIR
    with atomic_output_dir(final, overwrite=overwrite) as folder:
        write_model(folder)
        save_config(folder, *configs)
        if datasets_read is not None:
            write_json(folder / DATASETS_FILE, datasets_read)
    return final


def move_contents(source: Path, target: Path) -> None:
    for item in source.iterdir():
        os.replace(item, target / item.name)
