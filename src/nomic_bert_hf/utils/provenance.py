"""What a trained model needs recorded to be reproduced: code version, library versions, data hashes, configs, seeds."""

import importlib.metadata
import json
import platform
import subprocess
import sys
from pathlib import Path

from .files import atomic_file

LIBRARIES = ("torch", "transformers", "sentence-transformers", "datasets", "accelerate", "peft", "mteb", "evaluate",
             "huggingface-hub", "safetensors", "tokenizers", "numpy")
PROVENANCE_FILE = "provenance.json"


def git_commit(directory: Path) -> dict:
    """The checkout's commit and whether its tracked files differ from it (None outside a git checkout)."""
    def git(*args):
        return subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True, check=True).stdout
    try:
        return {"commit": git("rev-parse", "HEAD").strip(), "dirty": bool(git("status", "--porcelain", "-uno").strip())}
    except (subprocess.CalledProcessError, FileNotFoundError):
        return {"commit": None, "dirty": None}


def environment(directory: Path) -> dict:
    """Package, git, Python, platform and library versions."""
    versions = {}
    for library in ("nomic-bert-hf", *LIBRARIES):
        try:
            versions[library] = importlib.metadata.version(library)
        except importlib.metadata.PackageNotFoundError:
            versions[library] = None
    return {"git": git_commit(directory), "python": sys.version.split()[0], "platform": platform.platform(),
            "versions": versions}


def write_json(path: Path, record: dict) -> None:
    """Write a JSON file atomically (a reader never sees half of it)."""
    with atomic_file(path) as file:
        file.write(json.dumps(record, indent=2, sort_keys=True) + "\n")
