"""The repository's scripts (training/*.py, evaluation/*.py) as modules, so tests call their main() in-process."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def load_script(relative_path: str) -> ModuleType:
    """The script at `relative_path` (from the repository root) as a new module, executed as `python <script>` would
    execute it: with the script's folder first on sys.path, so that it imports its sibling modules."""
    path = ROOT / relative_path
    spec = importlib.util.spec_from_file_location(f"{path.stem}_script", path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module
