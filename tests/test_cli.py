"""Every command as a user runs it: the installed console scripts and the repository's scripts in their own processes,
exiting 0 on success, 1 with one line naming the problem on failure, and 130 on Ctrl-C with nothing half-written."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nomic_bert_hf.model.embedder import build_embedder, save_embedder
from nomic_bert_hf.model.lora import add_lora, save_adapter
from nomic_bert_hf.utils.cli import TRACEBACK_VARIABLE, error_line

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # where pip installed the console scripts
SCRIPTS = ("training/mlm.py", "training/contrastive.py", "training/mine_negatives.py", "training/filter_pairs.py",
           "training/pipeline.py", "evaluation/mteb_eval.py", "evaluation/long_context.py", "evaluation/glue.py")


def command(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """Run a command with the user's environment (no traceback switch), from the checkout."""
    env = {key: value for key, value in os.environ.items() if key != TRACEBACK_VARIABLE}
    return subprocess.run([str(arg) for arg in args], cwd=ROOT, env=env, check=False, capture_output=True, text=True,
                          timeout=600, **kwargs)


def last_line(process) -> str:
    return process.stderr.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def embedder_dir(encoder_dir, tmp_path_factory):
    return save_embedder(build_embedder(encoder_dir), tmp_path_factory.mktemp("cli") / "nomic-embed-text")


def test_export_and_publish_exit_0_on_success_and_1_with_one_line_on_failure(embedder_dir, tmp_path):
    exported = command(BIN / "nomic-bert-export", embedder_dir, "--output_dir", tmp_path / "exported")
    assert exported.returncode == 0, exported.stderr[-2000:]  # main() returns the folder: not the exit status
    assert (tmp_path / "exported" / "onnx" / "model.onnx").is_file()
    again = command(BIN / "nomic-bert-export", tmp_path / "exported")
    assert again.returncode == 1 and "Traceback" not in again.stderr
    assert last_line(again) == (f"nomic-bert-export: error: {tmp_path / 'exported' / 'onnx'} already exists and is "
                                "not empty; choose another output or allow overwriting")
    published = command(BIN / "nomic-bert-publish", embedder_dir, "--repo_id", "me/nomic-embed-text", "--output_dir",
                        tmp_path / "published", "--dry_run")
    assert published.returncode == 0, published.stderr[-2000:]  # (main() returns the folder here too)


@pytest.mark.slow
def test_convert_merge_and_publish_refusals_exit_as_unix_tools(embedder_dir, mlm_dir, tmp_path):
    converted = command(BIN / "nomic-bert-convert", mlm_dir, tmp_path / "converted")
    assert converted.returncode == 0, converted.stderr[-2000:]
    again = command(BIN / "nomic-bert-convert", mlm_dir, tmp_path / "converted")
    assert again.returncode == 1
    assert last_line(again).startswith("nomic-bert-convert: error: ") and "converted" in last_line(again)

    model = build_embedder(embedder_dir)
    add_lora(model, r=2)
    adapter = save_adapter(model, tmp_path / "adapter", embedder_dir)
    merged = command(BIN / "nomic-bert-merge-lora", adapter, tmp_path / "merged")
    assert merged.returncode == 0, merged.stderr[-2000:]
    assert (tmp_path / "merged" / "model.safetensors").is_file()
    missing = command(BIN / "nomic-bert-merge-lora", tmp_path / "no-adapter", tmp_path / "merged-again")
    assert missing.returncode == 1 and last_line(missing).startswith("nomic-bert-merge-lora: error: ")

    refused = command(BIN / "nomic-bert-publish", tmp_path / "nowhere", "--repo_id", "me/x", "--dry_run")
    assert refused.returncode == 1 and last_line(refused).startswith("nomic-bert-publish: error: ")
    assert "nowhere" in last_line(refused)
    usage = command(BIN / "nomic-bert-export")  # argparse's own usage error keeps its status
    assert usage.returncode == 2 and "usage: nomic-bert-export" in usage.stderr


@pytest.mark.parametrize("script", ["training/mlm.py", "training/contrastive.py"])
def test_a_stage_script_names_its_bad_config_in_one_line(script, tmp_path):
    missing = command(sys.executable, script, tmp_path / "missing.yaml")
    assert missing.returncode == 1
    assert last_line(missing) == f"{Path(script).name}: error: config file {tmp_path / 'missing.yaml'} does not exist"
    assert "Traceback" not in missing.stderr


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_exits_1_with_one_line_on_an_unknown_config_key(script, tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("learning_rat: 0.1\n")
    process = command(sys.executable, script, config)
    assert process.returncode == 1
    assert last_line(process) == f"{Path(script).name}: error: {config}: unknown config keys ['learning_rat']"


def test_ctrl_c_exits_130_and_leaves_no_final_model(corpus_file, tmp_path):
    output_dir = tmp_path / "run"
    env = {key: value for key, value in os.environ.items() if key != TRACEBACK_VARIABLE}
    process = subprocess.Popen(
        [sys.executable, "training/mlm.py", "training/configs/mlm/tiny.yaml", "--train_data", str(corpus_file),
         "--output_dir", str(output_dir), "--max_steps", "100000", "--save_steps", "2", "--disable_tqdm", "true"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.time() + 300
    while not (output_dir / "checkpoint-2" / "trainer_state.json").is_file():
        assert process.poll() is None and time.time() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 130
    assert stderr.strip().splitlines()[-1] == "mlm.py: interrupted"
    assert not (output_dir / "final").exists()
    assert not [path for path in output_dir.iterdir() if ".partial" in path.name or ".staging" in path.name]


def test_the_error_line_names_the_cause():
    try:
        try:
            raise OSError(28, "No space left on device")
        except OSError as disk:
            raise RuntimeError("cannot write checkpoint-4") from disk
    except RuntimeError as error:
        assert error_line(error) == ("cannot write checkpoint-4 (caused by OSError: [Errno 28] No space left on "
                                     "device)")
    assert error_line(ValueError("first line\nmore detail")) == "first line"
    assert error_line(KeyError()) == "KeyError"
