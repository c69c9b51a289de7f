"""Real English text from the Python standard library's docstrings. For MLM: the docstrings of a fixed list of modules.
For the contrastive tests: (query, document) pairs, the summary line of a function's or class's docstring being the
query and the rest of the docstring the document; documents of other definitions in the same module serve as mined
hard negatives (they share the module's vocabulary)."""

import ast
import json
import random
import sysconfig
from pathlib import Path

STDLIB = Path(sysconfig.get_paths()["stdlib"])
STDLIB_MODULES = (
    "argparse.py", "json/__init__.py", "pathlib.py", "collections/__init__.py", "functools.py", "textwrap.py",
    "random.py", "statistics.py", "csv.py", "logging/__init__.py", "shutil.py", "subprocess.py", "tempfile.py",
    "fractions.py", "datetime.py",
)


def stdlib_docstrings() -> list[str]:
    """About 600 docstrings (about 30k WordPiece tokens) from a fixed list of standard-library modules."""
    texts = []
    for module in STDLIB_MODULES:
        for node in ast.walk(ast.parse((STDLIB / module).read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                text = ast.get_docstring(node)
                if text and len(text.split()) >= 5:
                    texts.append(text)
    return texts


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
