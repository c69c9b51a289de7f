"""The layers of ARCHITECTURE.md: no library module imports a layer above its own, the remote-code files import only
torch and transformers, and the library never imports or runs the scripts."""

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "nomic_bert_hf"
SCRIPT_FOLDERS = (REPO / "training", REPO / "evaluation")
REMOTE_CODE = ("configuration_nomic_bert", "modeling_nomic_bert")
REMOTE_CODE_IMPORTS = {"torch", "transformers"}
# Lower layers first; a module may import its own subpackage and any layer below its own.
LAYERS = (
    {"remote code"},
    {"tasks", "utils"},
    {"model", "data"},
    {"training", "evaluation", "serving"},
    {"hub"},
)


def unit_of(module: str) -> str:
    """A module's unit: its subpackage under nomic_bert_hf, its own name for a top-level module, or "remote code"."""
    parts = module.split(".")
    if len(parts) == 1:
        return "__init__"
    return "remote code" if parts[1] in REMOTE_CODE else parts[1]


def layer_of(unit: str) -> int:
    if unit == "__init__":
        return 0
    return next(index for index, units in enumerate(LAYERS) if unit in units)


def module_name(path: Path, package: Path) -> str:
    relative = path.relative_to(package.parent).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    return ".".join(parts)


def imports(path: Path, package: Path) -> list[str]:
    """Every module a file imports, relative imports resolved."""
    name = module_name(path, package)
    here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = here[: len(here) - node.level + 1] if node.level else []
            target = ".".join([*base, node.module] if node.module else base)
            found.append(target)
            if node.module is None:  # `from . import x` imports the module x
                found += [f"{target}.{alias.name}" for alias in node.names]
    return found


def upward_imports(package: Path) -> list[str]:
    """`module -> imported` for every import of a higher layer, or of a sibling unit of the same layer."""
    problems = []
    for path in sorted(package.rglob("*.py")):
        name = module_name(path, package)
        unit = unit_of(name)
        for target in imports(path, package):
            if not target.startswith(package.name + ".") or unit == "__init__":
                continue
            target_unit = unit_of(target)
            if target_unit != unit and layer_of(target_unit) >= layer_of(unit):
                problems.append(f"{name} -> {target}")
    return problems


def script_modules() -> set[str]:
    return {path.stem for folder in SCRIPT_FOLDERS for path in folder.glob("*.py")}


def test_every_library_module_sits_in_a_layer():
    units = {unit_of(module_name(path, PACKAGE)) for path in PACKAGE.rglob("*.py")} - {"__init__"}
    assert units <= set().union(*LAYERS), units - set().union(*LAYERS)


def test_no_module_imports_upward():
    assert upward_imports(PACKAGE) == []


def test_the_check_catches_an_upward_import(tmp_path):
    package = tmp_path / "nomic_bert_hf"
    (package / "model").mkdir(parents=True)
    (package / "hub").mkdir()
    (package / "model" / "embedder.py").write_text("from ..hub.publish import main\n")
    (package / "hub" / "publish.py").write_text("from nomic_bert_hf.model.embedder import x\n")
    assert upward_imports(package) == ["nomic_bert_hf.model.embedder -> nomic_bert_hf.hub.publish"]


@pytest.mark.parametrize("name", REMOTE_CODE)
def test_remote_code_imports_only_torch_and_transformers(name):
    path = PACKAGE / f"{name}.py"
    outside = {target.split(".")[0] for target in imports(path, PACKAGE)} - set(sys.stdlib_module_names)
    assert outside - {"nomic_bert_hf"} <= REMOTE_CODE_IMPORTS
    assert {target for target in imports(path, PACKAGE) if target.startswith("nomic_bert_hf")} <= {
        f"nomic_bert_hf.{other}" for other in REMOTE_CODE}


def test_the_library_never_imports_or_runs_a_script():
    scripts = script_modules()
    assert {"pipeline", "stages", "mlm", "contrastive", "mteb_eval"} <= scripts
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {target.split(".")[0] for target in imports(path, PACKAGE)}
        assert not imported & scripts, f"{path} imports the script(s) {imported & scripts}"
        strings = [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)]
        script_paths = [s for s in strings if s.endswith(".py") and s.startswith(("training/", "evaluation/"))]
        assert not script_paths, f"{path} names the script(s) {script_paths}"


UNPICKLERS = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}
CODE_DIRS = ("src", "training", "evaluation", "benchmarks", "tests")


def unsafe_loads(path: Path) -> list[str]:
    """An unpickling import, a `torch.load` without `weights_only=True`, or `weights_only=False`, with its line."""
    problems = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            problems += [f"{path}:{node.lineno} imports {module}" for module in modules
                         if module.split(".")[0] in UNPICKLERS]
        if isinstance(node, ast.keyword) and node.arg == "weights_only" and not (
                isinstance(node.value, ast.Constant) and node.value.value is True):
            problems.append(f"{path}:{node.value.lineno} weights_only={ast.unparse(node.value)}")
        if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("torch.load") and not any(
                keyword.arg == "weights_only" for keyword in node.keywords):
            problems.append(f"{path}:{node.lineno} torch.load without weights_only=True")
    return problems


def test_nothing_is_unpickled_and_every_torch_load_takes_weights_only():
    paths = [path for folder in CODE_DIRS for path in (REPO / folder).rglob("*.py")]
    assert len(paths) > 100
    assert [problem for path in paths for problem in unsafe_loads(path)] == []


def test_the_unpickling_check_finds_each_kind(tmp_path):
    script = tmp_path / "bad.py"
    script.write_text("import pickle\nfrom dill import loads\nimport torch\ntorch.load('a.pt')\n"
                      "torch.load('b.pt', weights_only=False)\nload_state(weights_only=True)\n")
    assert [problem.split(" ", 1)[1] for problem in unsafe_loads(script)] == [
        "imports pickle", "imports dill", "torch.load without weights_only=True", "weights_only=False"]
