"""Real (query, document) pairs for the contrastive tests, from the Python standard library's docstrings: the summary
line of a function's or class's docstring is the query, the rest of the docstring the document. Documents of other
definitions in the same module serve as mined hard negatives (they share the module's vocabulary). Also the fixture
that the contrastive test modules share."""

import ast
import json
import random
import sysconfig
from pathlib import Path

import pytest
import torch

STDLIB = Path(sysconfig.get_paths()["stdlib"])


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: these models are tiny, so extra threads only add overhead, and the machines are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def docstring_pairs() -> dict[str, list[dict]]:
    """{"functions": [...], "classes": [...]}: rows with query, document, negatives (up to 8) and module."""
    pairs = {"functions": [], "classes": []}
    for module in sorted(STDLIB.glob("*.py")):
        rows = {"functions": [], "classes": []}
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8", errors="replace"))):
            if not isinstance(node, (ast.FunctionDef, ast.ClassDef)) or not (doc := ast.get_docstring(node)):
                continue
            summary, _, body = doc.partition("\n\n")
            summary, body = " ".join(summary.split()), " ".join(body.split())
            if len(summary.split()) >= 4 and 10 <= len(body.split()) <= 120:
                kind = "classes" if isinstance(node, ast.ClassDef) else "functions"
                rows[kind].append({"query": summary, "document": body, "module": module.stem})
        documents = [row["document"] for kind_rows in rows.values() for row in kind_rows]
        for kind, kind_rows in rows.items():
            for row in kind_rows:
                row["negatives"] = [text for text in documents if text != row["document"]][:8]
            pairs[kind].extend(kind_rows)
    return pairs


def write_jsonl(rows: list[dict], path: Path) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def write_pair_files(directory: Path) -> dict[str, Path]:
    """Training files for two sources (functions: search task; classes: classification) and 96 held-out function
    pairs, drawn at random; no held-out query or document occurs in the training files."""
    pairs = docstring_pairs()
    held_out = random.Random(0).sample(pairs["functions"], 96)
    seen = {row["query"] for row in held_out} | {row["document"] for row in held_out}
    files = {
        "functions": [row for row in pairs["functions"] if not {row["query"], row["document"]} & seen],
        "classes": [row for row in pairs["classes"] if not {row["query"], row["document"]} & seen],
        "held_out": held_out,
    }
    return {name: write_jsonl(rows, directory / f"{name}.jsonl") for name, rows in files.items()}
