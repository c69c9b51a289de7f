"""Checkpoints cut short or damaged on disk (a kill or a full disk during a save, a corrupted file): each problem is
named, a resume falls back to the newest complete checkpoint and still ends with the weights of an uninterrupted run,
and a run resumed at its last step trains no step past max_steps."""

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from nomic_bert_hf.training.runs import checkpoint_problem, newest_complete_checkpoint, prepare_output_dir

ROOT = Path(__file__).resolve().parents[1]
TINY_CONFIG = ROOT / "training" / "configs" / "mlm" / "tiny.yaml"
STEPS = ["--max_steps", "6", "--save_steps", "2", "--disable_tqdm", "true"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run(mlm_script, corpus, output_dir, *overrides):
    return mlm_script.main([str(TINY_CONFIG), "--train_data", str(corpus), "--output_dir", str(output_dir), *STEPS,
                            *overrides])


@pytest.fixture(scope="module")
def uninterrupted(mlm_script, corpus_file, tmp_path_factory):
    """A finished six-step run with checkpoints at steps 2, 4 and 6, ending mid-epoch (at an epoch's end
    transformers' loop would stop by itself, hiding a step taken past max_steps)."""
    output_dir = tmp_path_factory.mktemp("checkpoints") / "run"
    run(mlm_script, corpus_file, output_dir)
    return output_dir


def cut_short(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def same_weights(a: Path, b: Path) -> bool:
    first, second = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    return first.keys() == second.keys() and all(torch.equal(first[key], second[key]) for key in first)


@pytest.mark.parametrize(
    ("damage", "file", "problem"),
    [
        (cut_short, "model.safetensors", r"model.safetensors is damaged: \d+ bytes where its header describes \d+"),
        (cut_short, "optimizer.pt", "optimizer.pt is damaged or cut short"),
        (flip_a_byte, "optimizer.pt", r"optimizer.pt is damaged \(.+ fails its CRC check\)"),
        (cut_short, "scheduler.pt", "scheduler.pt is damaged or cut short"),
        (cut_short, "trainer_state.json", "trainer_state.json is damaged or cut short"),
        (Path.unlink, "trainer_state.json", r"it has no trainer_state.json \(its save was interrupted\)"),
    ],
)
def test_a_damaged_checkpoint_is_named_and_skipped(uninterrupted, tmp_path, damage, file, problem, caplog):
    output_dir = tmp_path / "run"
    shutil.copytree(uninterrupted, output_dir)
    assert checkpoint_problem(output_dir / "checkpoint-6") is None
    damage(output_dir / "checkpoint-6" / file)
    assert checkpoint_problem(output_dir / "checkpoint-6") is not None
    with caplog.at_level(logging.WARNING, logger="nomic_bert_hf"):
        assert newest_complete_checkpoint(output_dir) == output_dir / "checkpoint-4"
    assert any("skipping" in message and "checkpoint-6" in message for message in caplog.messages)
    with pytest.raises(ValueError, match=rf"checkpoint-6 cannot be resumed: {problem}"):
        prepare_output_dir(output_dir, str(output_dir / "checkpoint-6"), overwrite=True)


def test_resume_falls_back_to_the_last_complete_checkpoint_and_gives_the_same_weights(
        uninterrupted, mlm_script, corpus_file, tmp_path):
    output_dir = tmp_path / "run"
    shutil.copytree(uninterrupted, output_dir, ignore=shutil.ignore_patterns("final"))
    cut_short(output_dir / "checkpoint-6" / "model.safetensors")  # as a kill or a full disk during its save leaves it
    resumed = run(mlm_script, corpus_file, output_dir, "--resume_from_checkpoint", "true")
    assert same_weights(resumed, uninterrupted / "final")
    assert checkpoint_problem(output_dir / "checkpoint-6") is None  # saved over when the run reached step 6 again


def test_a_run_resumed_at_max_steps_trains_no_further(uninterrupted, mlm_script, corpus_file, tmp_path):
    output_dir = tmp_path / "run"
    shutil.copytree(uninterrupted, output_dir, ignore=shutil.ignore_patterns("final"))  # killed after its last save
    resumed = run(mlm_script, corpus_file, output_dir, "--resume_from_checkpoint", "true")
    assert sorted(path.name for path in output_dir.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4",
                                                                             "checkpoint-6"]
    assert json.loads((output_dir / "trainer_state.json").read_text())["global_step"] == 6
    assert same_weights(resumed, uninterrupted / "final")


def test_a_full_disk_is_named_and_the_run_resumes_elsewhere_with_the_same_weights(
        uninterrupted, mlm_script, corpus_file, small_disk, tmp_path):
    with pytest.raises(OSError, match=rf"no space left on device writing to {small_disk / 'run'} \(0 bytes free\)"):
        run(mlm_script, corpus_file, small_disk / "run")
    assert not (small_disk / "run" / "final").exists()  # nothing a later run could take as finished
    assert checkpoint_problem(small_disk / "run" / "checkpoint-4") is not None  # the save the disk cut short
    moved = tmp_path / "moved"
    shutil.copytree(small_disk / "run", moved)  # the user frees space, here by moving the run to a larger disk
    resumed = run(mlm_script, corpus_file, moved, "--resume_from_checkpoint", "true")
    assert same_weights(resumed, uninterrupted / "final")
