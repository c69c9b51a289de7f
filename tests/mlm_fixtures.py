"""Fixtures for the MLM tests (imported by the test modules): real English text (the docstrings of Python's
standard library) and training/mlm.py as a module."""

import ast
import importlib.util
import json
import sysconfig
from pathlib import Path

import pytest
import torch

STDLIB_MODULES = (
    "argparse.py", "json/__init__.py", "pathlib.py", "collections/__init__.py", "functools.py", "textwrap.py",
    "random.py", "statistics.py", "csv.py", "logging/__init__.py", "shutil.py", "subprocess.py", "tempfile.py",
    "fractions.py", "datetime.py",
)


def stdlib_docstrings() -> list[str]:
    """About 600 docstrings (about 30k WordPiece tokens) from a fixed list of standard-library modules."""
    library = Path(sysconfig.get_paths()["stdlib"])
    texts = []
    for module in STDLIB_MODULES:
        for node in ast.walk(ast.parse((library / module).read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                text = ast.get_docstring(node)
                if text and len(text.split()) >= 5:
                    texts.append(text)
    return texts


@pytest.fixture(scope="session")
def corpus_file(tmp_path_factory) -> Path:
    """The docstrings as JSON lines with a `text` column (and a `source` column the loader must ignore)."""
    path = tmp_path_factory.mktemp("corpus") / "docstrings.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        for number, text in enumerate(stdlib_docstrings()):
            handle.write(json.dumps({"text": text, "source": f"doc{number}"}) + "\n")
    return path


@pytest.fixture(scope="session")
def mlm_script():
    """training/mlm.py as a module, so tests call its main() in-process."""
    spec = importlib.util.spec_from_file_location("mlm_script", Path(__file__).parents[1] / "training" / "mlm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def small_corpus_file(tmp_path_factory) -> Path:
    """About 1,000 words of docstrings (about 35 sequences of 64 tokens), so a tiny run crosses epochs quickly."""
    texts, words = [], 0
    for text in stdlib_docstrings():
        if words >= 1000:
            break
        texts.append(text)
        words += len(text.split())
    path = tmp_path_factory.mktemp("small-corpus") / "docstrings.jsonl"
    path.write_text("".join(json.dumps({"text": text}) + "\n" for text in texts), encoding="utf-8")
    return path


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from threads, and on a shared 2-core machine two threads per process make in-process
    training runs several times slower; restored after the module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
