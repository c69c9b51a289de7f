"""YAML configs with command-line overrides."""

import json
from dataclasses import dataclass, field

import pytest

from nomic_bert_hf.utils.configs import mapping_setting, parse_config, save_config


@dataclass
class ModelArguments:
    model_name_or_path: str = "nomic-ai/nomic-bert-2048"
    max_seq_length: int = 2048


@dataclass
class DataArguments:
    datasets: list[str] = field(default_factory=lambda: ["a"])
    mlm_probability: float = 0.3


def test_yaml_then_overrides_then_round_trip(tmp_path):
    (tmp_path / "c.yaml").write_text("max_seq_length: 128\ndatasets: [x, y]\nmlm_probability: 0.15\n")
    model, data = parse_config([ModelArguments, DataArguments], [str(tmp_path / "c.yaml"), "--mlm_probability", "0.5"])
    assert (model.max_seq_length, data.datasets, data.mlm_probability) == (128, ["x", "y"], 0.5)
    saved = save_config(tmp_path / "out", model, data)
    assert parse_config([ModelArguments, DataArguments], [str(saved)]) == (model, data)


@dataclass
class RequiredArguments:
    model: str
    steps: int = 1


def test_required_fields_can_come_from_yaml(tmp_path):
    (tmp_path / "c.yaml").write_text("model: runs/final\n")
    assert parse_config([RequiredArguments], [str(tmp_path / "c.yaml")]) == (RequiredArguments("runs/final"),)
    with pytest.raises(SystemExit):  # argparse: the required flag is missing
        parse_config([RequiredArguments], ["--steps", "2"])


def test_unknown_keys_and_flags_are_named(tmp_path):
    (tmp_path / "c.yaml").write_text("max_seq_lenght: 128\n")
    with pytest.raises(ValueError, match="max_seq_lenght"):
        parse_config([ModelArguments, DataArguments], [str(tmp_path / "c.yaml")])
    with pytest.raises(ValueError, match="--learning_rat"):
        parse_config([ModelArguments, DataArguments], ["--learning_rat", "1"])
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        parse_config([ModelArguments], [str(tmp_path / "missing.yaml")])


def test_training_arguments_round_trip_without_the_hub_token(tmp_path):
    from transformers import TrainingArguments

    (args,) = parse_config([TrainingArguments], ["--output_dir", str(tmp_path), "--include_num_input_tokens_seen", "true",
                                                 "--hub_token", "secret"])
    saved = save_config(tmp_path / "run", args)
    assert "secret" not in saved.read_text() and "hub_token" not in saved.read_text()
    (again,) = parse_config([TrainingArguments], [str(saved)])
    assert again.include_num_input_tokens_seen == args.include_num_input_tokens_seen and again.hub_token is None


def test_atomic_output_dir_is_an_ordinary_folder(tmp_path):
    import os

    from nomic_bert_hf.utils.files import atomic_output_dir

    with atomic_output_dir(tmp_path / "out") as staging:
        (staging / "file").write_text("x")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o777 & ~umask


def test_interrupted_atomic_file_leaves_neither_final_nor_partial_file(tmp_path):
    from nomic_bert_hf.utils.files import atomic_file

    path = tmp_path / "out.json"
    with pytest.raises(RuntimeError, match="full disk"):
        with atomic_file(path) as file:
            file.write("half")
            raise RuntimeError("full disk")
    assert list(tmp_path.iterdir()) == []
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_file(path) as file:
            file.write("new")
            raise RuntimeError
    assert list(tmp_path.iterdir()) == [path] and path.read_text() == "old"
    with atomic_file(path) as file:
        file.write("new")
    assert list(tmp_path.iterdir()) == [path] and path.read_text() == "new"


def test_the_next_write_removes_the_partial_file_of_a_killed_process(tmp_path):
    import socket
    import subprocess
    import sys

    from nomic_bert_hf.utils.files import atomic_file

    killed = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                            check=True)
    prefix = f".out.json.partial-{socket.gethostname()}-"
    abandoned = tmp_path / f"{prefix}{killed.stdout.strip()}"  # its process has exited: nothing will finish it
    running = tmp_path / f"{prefix}1"  # pid 1 is alive: a write in progress elsewhere is left alone
    abandoned.write_text("half")
    running.write_text("half")
    with atomic_file(tmp_path / "out.json") as file:
        file.write("whole")
    assert sorted(path.name for path in tmp_path.iterdir()) == [running.name, "out.json"]


def test_streamed_sha256_is_that_of_the_whole_file(tmp_path):
    import hashlib

    from nomic_bert_hf.utils.files import sha256_file, update_digest

    data = bytes(range(256)) * 9000  # over two read chunks
    (tmp_path / "data").write_bytes(data)
    assert sha256_file(tmp_path / "data") == hashlib.sha256(data).hexdigest()
    digest = hashlib.sha256(b"prefix")
    update_digest(digest, tmp_path / "data")
    assert digest.hexdigest() == hashlib.sha256(b"prefix" + data).hexdigest()


def test_a_mapping_setting_is_a_mapping_a_yaml_file_or_inline_json(tmp_path):
    mapping = {"b": {"path": "b.jsonl", "task": "search"}, "a": {"path": "a.jsonl"}}
    (tmp_path / "datasets.yaml").write_text("b: {path: b.jsonl, task: search}\na: {path: a.jsonl}\n")
    assert mapping_setting("train_datasets", mapping) == mapping
    assert list(mapping_setting("train_datasets", str(tmp_path / "datasets.yaml")).items()) == list(mapping.items())
    assert mapping_setting("train_datasets", json.dumps(mapping)) == mapping
    with pytest.raises(FileNotFoundError, match="train_datasets: .*missing.yaml"):
        mapping_setting("train_datasets", str(tmp_path / "missing.yaml"))
