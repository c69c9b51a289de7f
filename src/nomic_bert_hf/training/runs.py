"""Output folders of Trainer runs: never clobbered, resumable from their checkpoints, finished by an atomic `final/`.

The rules (`prepare_output_dir`):

* a folder holding `final/` is a finished run, and a non-empty folder without it is an interrupted run or someone
  else's files: starting there is an error unless the user resumes (`--resume_from_checkpoint`) or passes
  `--overwrite_output_dir true` (then only `final/` is replaced, once the new one is complete);
* `--resume_from_checkpoint true` (or `last`) picks the newest complete `checkpoint-N` of the output folder, naming
  any newer one it skips (a save cut short by a kill or a full disk, a damaged file: `checkpoint_problem`); a named
  checkpoint with such a problem, or one of a different architecture, is refused with a message saying so.

Every checkpoint gets the resolved config (`config.yaml`) and `vocab.txt` beside the Trainer's files
(`CheckpointFilesCallback`), and `save_final_model` writes `{output_dir}/final/` in one rename (`write_final_dir`,
through which every training script saves its result with `config.yaml` and `datasets.json`).
"""

import json
import logging
import os
import re
import shutil
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import datasets
import torch
import transformers
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
    TrainerState,
    TrainingArguments,
)
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, TrainOutput

from nomic_bert_hf.model.tokenization import save_tokenizer, write_vocab
from nomic_bert_hf.utils.compute import use_bf16
from nomic_bert_hf.utils.configs import save_config
from nomic_bert_hf.utils.files import atomic_output_dir
from nomic_bert_hf.utils.provenance import write_json

logger = logging.getLogger(__name__)

FINAL_DIR = "final"
TRAINER_STATE = "trainer_state.json"
DATASETS_FILE = "datasets.json"  # in final/: the datasets a stage read, with their revisions and rows
LAST_CHECKPOINT = ("true", "last")
TORCH_ARCHIVES = (".pt", ".pth", ".bin")  # zip archives written by torch.save
# Config fields that must match for a checkpoint's weights and optimizer state to fit a model.
ARCHITECTURE_FIELDS = ("vocab_size", "n_embd", "n_layer", "n_head", "n_inner", "type_vocab_size", "activation_function")


@dataclass
class AutoBf16:
    """`bf16: auto` for a TrainingArguments class: bf16 autocast (fp32 master weights, fp32 checkpoints) where
    `nomic_bert_hf.utils.compute` finds bf16 fast (a CPU with AMX or AVX-512 BF16, a GPU with bf16), else fp32. The
    value is resolved before the Trainer reads it, so a saved config records true or false."""

    bf16: str = field(default="false", metadata={
        "help": "true | false | auto: bf16 autocast; auto where the CPU has AMX or AVX-512 BF16 (or the GPU bf16)"})

    def __post_init__(self):
        device = "cpu" if self.use_cpu or not torch.cuda.is_available() else "cuda"
        self.bf16 = use_bf16(self.bf16, device)
        super().__post_init__()


@dataclass
class RunTrainingArguments(AutoBf16, TrainingArguments):
    """transformers' TrainingArguments plus `overwrite_output_dir` and `bf16: auto`."""

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
        checkpoint = newest_complete_checkpoint(output_dir)
        if checkpoint is None:
            raise FileNotFoundError(f"--resume_from_checkpoint {resume_from_checkpoint}: {output_dir} holds no "
                                    f"complete {PREFIX_CHECKPOINT_DIR}-N folder")
        return str(checkpoint)
    checkpoint = Path(resume_from_checkpoint)
    if not checkpoint.is_dir():
        raise FileNotFoundError(f"checkpoint {checkpoint} does not exist")
    problem = checkpoint_problem(checkpoint)
    if problem:
        raise ValueError(f"checkpoint {checkpoint} cannot be resumed: {problem}. Resume from an earlier checkpoint, "
                         "or pass --resume_from_checkpoint true to take the newest complete one")
    return str(checkpoint)


def checkpoint_problem(checkpoint: Path) -> str | None:
    """What makes a checkpoint folder unusable (a save cut short by a kill or a full disk, a damaged file), or None.

    The Trainer writes `trainer_state.json` last, so its absence means an interrupted save; then every file is read as
    far as its format allows without loading it: JSON parses, a safetensors file is as long as its header says, and
    the zip archives of `torch.save` (`optimizer.pt`, `scheduler.pt`, `rng_state.pth`) pass their CRC check."""
    if not (checkpoint / TRAINER_STATE).is_file():
        return f"it has no {TRAINER_STATE} (its save was interrupted)"
    for path in sorted(checkpoint.rglob("*")):
        if not path.is_file():
            continue
        name = path.relative_to(checkpoint)
        try:
            if path.suffix == ".json":
                json.loads(path.read_text())
            elif path.suffix == ".safetensors":
                safetensors_problem = truncated_safetensors(path)
                if safetensors_problem:
                    return f"{name} is damaged: {safetensors_problem}"
            elif path.suffix in TORCH_ARCHIVES:
                with zipfile.ZipFile(path) as archive:
                    damaged = archive.testzip()
                if damaged is not None:
                    return f"{name} is damaged ({damaged} fails its CRC check)"
        except (OSError, ValueError, zipfile.BadZipFile) as error:
            return f"{name} is damaged or cut short ({error})"
    return None


def truncated_safetensors(path: Path) -> str | None:
    """Whether a safetensors file is shorter or longer than its header says (a cut-short write), as a message."""
    with open(path, "rb") as file:
        head = file.read(8)
        if len(head) < 8:
            return "shorter than its 8-byte header length"
        header_length = struct.unpack("<Q", head)[0]
        header = json.loads(file.read(header_length))
    data_end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
    expected, actual = 8 + header_length + data_end, path.stat().st_size
    return None if expected == actual else f"{actual} bytes where its header describes {expected}"


def newest_complete_checkpoint(output_dir: str | Path) -> Path | None:
    """The highest-numbered `checkpoint-N` of `output_dir` that `checkpoint_problem` finds nothing wrong with; each
    newer one skipped is logged with its problem (a resumed run saves over it when it reaches that step again)."""
    output_dir = Path(output_dir)
    numbered = [(int(match.group(1)), path) for path in output_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*")
                if path.is_dir() and (match := re.fullmatch(rf"{PREFIX_CHECKPOINT_DIR}-(\d+)", path.name))]
    for _, checkpoint in sorted(numbered, reverse=True):
        problem = checkpoint_problem(checkpoint)
        if problem is None:
            return checkpoint
        logger.warning("skipping %s: %s", checkpoint, problem)
    return None


def resumed_step(checkpoint: str | None) -> int:
    """The optimizer step a run resumes at: the checkpoint's global step (0 for a fresh run)."""
    if checkpoint is None:
        return 0
    return int(json.loads((Path(checkpoint) / TRAINER_STATE).read_text())["global_step"])


def train(trainer: Trainer, checkpoint: str | None) -> TrainOutput | None:
    """`trainer.train(resume_from_checkpoint=checkpoint)`, except from a checkpoint already at `max_steps`: that one
    is restored (weights and state) and not trained further, where transformers' loop would take one step past it.
    Returns the Trainer's output, or None for such a restore."""
    warn_if_fsdp_is_not_running(trainer)
    if checkpoint is None or trainer.args.max_steps <= 0 or resumed_step(checkpoint) < trainer.args.max_steps:
        return trainer.train(resume_from_checkpoint=checkpoint)
    logger.info("%s is at max_steps %d: taking its weights without training further", checkpoint,
                trainer.args.max_steps)
    trainer._load_from_checkpoint(checkpoint)  # the Trainer's own loader (plain, sharded, adapter or embedder)
    trainer.state = TrainerState.load_from_json(str(Path(checkpoint) / TRAINER_STATE))
    return None


def warn_if_fsdp_is_not_running(trainer: Trainer) -> None:
    """Say so when FSDP was asked for (an accelerate FSDP config, or `fsdp` in the training config) but is not
    running: accelerate shards only on GPUs and other accelerators, and trains CPU processes as DDP over gloo."""
    asked = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true" or bool(trainer.args.fsdp)
    if asked and not trainer.is_fsdp_enabled:
        logger.warning(
            "FSDP was asked for but does not run here: accelerate shards models only on GPUs and other "
            "accelerators, so these %d CPU process(es) train as DDP, each holding the whole model and optimizer",
            trainer.args.world_size,
        )


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
