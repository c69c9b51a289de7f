"""YAML configs with command-line overrides, for every training and evaluation script.

    python training/mlm.py training/configs/mlm/tiny.yaml --learning_rate 1e-4 --output_dir runs/mlm

The first argument names a YAML file whose keys are fields of the script's dataclasses; every field can then be
overridden as `--field value`. A key or flag that no dataclass defines is an error that names it. The resolved values
are written back as YAML next to each output (`save_config`), and that file is itself a valid config.

A mapping setting (e.g. a script's `train_datasets`) is a mapping in the YAML file; on the command line it is the path
of a YAML file holding the mapping, or the mapping inline as JSON (`mapping_setting`).
"""

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml
from transformers import HfArgumentParser

from nomic_bert_hf.utils.files import atomic_file

CONFIG_FILE = "config.yaml"


def parse_config(dataclass_types: Sequence[type], args: Sequence[str] | None = None) -> tuple:
    """Instances of `dataclass_types` from an optional YAML file (first argument) and `--field value` overrides."""
    args = list(sys.argv[1:] if args is None else args)
    values, path = {}, None
    if args and not args[0].startswith("-"):
        path = Path(args.pop(0))
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        values = _read_yaml_mapping(path)
        known = {field.name for cls in dataclass_types for field in dataclasses.fields(cls) if field.init}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{path}: unknown config keys {unknown}")
    parser = HfArgumentParser(dataclass_types)
    actions = {action.dest: action for action in parser._actions}
    for key, value in values.items():
        values[key] = _typed(actions[key], value, f"{path}: {key}")
        actions[key].required = False  # argparse ignores defaults of required flags: a YAML value counts as given
    parser.set_defaults(**values)
    configs = parser.parse_args_into_dataclasses(args=args)
    for config in configs:
        for name in MUST_BE_POSITIVE:
            value = getattr(config, name, None)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value <= 0:
                given = f"{path}: {name}" if name in values and f"--{name}" not in args else f"--{name}"
                raise ValueError(f"{given}: must be positive, got {value}")
    return configs


# Settings no run can use at zero or below; checked here so a typo fails before the model loads.
MUST_BE_POSITIVE = ("learning_rate", "per_device_train_batch_size", "per_device_eval_batch_size", "batch_size",
                    "gradient_accumulation_steps", "max_seq_length")


def _read_yaml_mapping(path: Path) -> dict:
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ValueError(f"{path}: not valid YAML ({where}{getattr(error, 'problem', None) or error})") from error
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: holds a YAML {type(values).__name__}, not a mapping of settings")
    return values


def _typed(action, value, name: str):
    """A YAML value as the flag's type would read it (PyYAML reads `1e-4` as a string), or an error naming it."""
    if value is None or action.type is None or action.nargs not in (None, "?"):
        return value
    type_name = getattr(action.type, "__name__", "value")
    expected = {"int": "an integer", "float": "a number", "string_to_bool": "true or false"}.get(type_name, type_name)
    if action.type in (int, float):
        whole = not isinstance(value, float) or value.is_integer()
        if isinstance(value, bool) or not isinstance(value, (int, float, str)) or (action.type is int and not whole):
            raise ValueError(f"{name}: expected {expected}, got {value!r}")
        value = int(value) if action.type is int and not isinstance(value, str) else value
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        try:
            value = action.type(value)
        except (TypeError, ValueError, argparse.ArgumentTypeError):
            raise ValueError(f"{name}: expected {expected}, got {value!r}") from None
    if action.choices is not None and value not in action.choices:
        raise ValueError(f"{name}: {value!r} is not one of {[str(choice) for choice in action.choices]}")
    return value


def mapping_setting(name: str, value: dict | str | None) -> dict | None:
    """A mapping setting as given: a mapping (from a YAML config), inline JSON (`{...}`), or the path of a YAML file
    holding the mapping."""
    if not isinstance(value, str):
        return value
    if value.lstrip().startswith("{"):
        return json.loads(value)
    path = Path(value)
    if not path.is_file():
        raise FileNotFoundError(f"{name}: {path} does not exist (give a YAML file holding the mapping, or inline JSON)")
    mapping = yaml.safe_load(path.read_text())
    if not isinstance(mapping, dict):
        raise ValueError(f"{name}: {path} does not hold a mapping")
    return mapping


def config_dict(*configs) -> dict:
    """The fields of several config dataclasses as one plain mapping (enums and paths as strings), in the form the
    command line reads back. A Hub token is never written."""
    merged = {}
    for config in configs:
        values = config.to_dict() if hasattr(config, "to_dict") else dataclasses.asdict(config)
        merged.update({key: str(value) if isinstance(value, Path) else value for key, value in values.items()})
    merged.pop("hub_token", None)  # a secret; TrainingArguments.to_dict writes it redacted
    if merged.get("include_num_input_tokens_seen") in ("all", "no"):  # TrainingArguments normalises the flag to a
        merged["include_num_input_tokens_seen"] = merged["include_num_input_tokens_seen"] == "all"  # string; CLI: bool
    return merged


def save_config(directory: str | Path, *configs) -> Path:
    """Write the resolved configs as `config.yaml` in `directory`; the file can be passed back to the same script."""
    path = Path(directory) / CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as file:
        file.write(yaml.safe_dump(config_dict(*configs), sort_keys=True))
    return path
