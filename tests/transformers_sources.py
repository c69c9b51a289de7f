"""transformers' own test suite helpers (`ModelTesterMixin`, `ConfigTester`), from the sdist of the installed version.

The wheel does not ship `tests/`; the sdist on PyPI does (its top-level `tests/*.py` only). `sources_dir()` downloads
the sdist of `transformers.__version__` once, with pip, and extracts its `tests/` folder into the repository's cache:

    .cache/transformers-tests/<version>/tests/

(`.cache/` is git-ignored; the conftest's HF_HOME is a temporary folder per run, so the cache lives next to it
instead of under it.) Run `python tests/transformers_sources.py` to fill it ahead of time, e.g. before going offline.

Import arrangement: the extracted folder is imported as the package `transformers_tests` (its spec is built from the
folder's path; an empty `__init__.py` is added, as in transformers' repository), never through `sys.path`. Its modules'
relative imports (`from .test_modeling_common import ...`) resolve inside it, and neither our own `tests/` folder nor
the name `tests` is touched, so pytest's collection of this repository's tests is unchanged.

The sdist's `tests/test_modeling_common.py` and `tests/test_configuration_common.py` import from three sibling modules
the sdist does not ship (`exporters/test_export.py`, `generation/test_utils.py`, `utils/test_configuration_utils.py`).
Where one is missing, a stand-in registered below supplies the imported name (see `STAND_INS`).
"""

import importlib
import importlib.util
import inspect
import os
import subprocess
import sys
import tarfile
import tempfile
import types
from pathlib import Path

import transformers

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".cache" / "transformers-tests"
PACKAGE = "transformers_tests"


class SourcesUnavailable(RuntimeError):
    """The sdist could not be downloaded (offline, or no sdist of this version on the index)."""


def download_command(version: str, dest: str | os.PathLike) -> list[str]:
    return [
        sys.executable, "-m", "pip", "download", f"transformers=={version}", "--no-deps", "--no-binary", ":all:",
        "-d", str(dest), "--timeout", "30", "--retries", "1",
    ]


def sources_dir(version: str | None = None) -> Path:
    """The `tests/` folder of transformers' sdist for `version` (default: the installed one), downloaded once."""
    version = version or transformers.__version__
    target = CACHE / version
    if (target / "tests" / "test_modeling_common.py").is_file():
        return target / "tests"
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE, prefix=f".{version}-") as scratch:
        scratch = Path(scratch)
        result = subprocess.run(download_command(version, scratch / "sdist"), capture_output=True, text=True)
        archives = sorted((scratch / "sdist").glob("transformers-*.tar.gz"))
        if result.returncode != 0 or not archives:
            output = (result.stderr or result.stdout).strip().splitlines()
            raise SourcesUnavailable(
                f"could not download the sdist of transformers {version} ({output[-1] if output else 'no archive'}); "
                f"run `python tests/transformers_sources.py` where PyPI is reachable (it runs `pip download "
                f"transformers=={version} --no-deps --no-binary :all:` and extracts its tests/ into {target})"
            )
        staging = scratch / "extracted"
        _extract_tests(archives[0], staging)
        try:
            staging.rename(target)  # atomic: a concurrent run either finds the whole folder or none of it
        except OSError:
            if not (target / "tests" / "test_modeling_common.py").is_file():
                raise
    return target / "tests"


def _extract_tests(archive: Path, destination: Path) -> None:
    """Extract `<root>/tests/**` and `<root>/pyproject.toml` (the pytest markers the tests use), nothing else."""
    destination.mkdir()
    with tarfile.open(archive) as tar:
        members = []
        for member in tar.getmembers():
            _root, _, rest = member.name.partition("/")
            if rest == "pyproject.toml" or rest.startswith("tests/"):
                member.name = rest
                members.append(member)
        if hasattr(tarfile, "data_filter"):
            tar.extractall(destination, members=members, filter="data")  # no links out, no absolute paths
        else:  # Python < 3.10.12 / 3.11.4: regular files and folders inside `destination` only
            unsafe = [m.name for m in members if not (m.isfile() or m.isdir()) or ".." in Path(m.name).parts]
            if unsafe or any(Path(m.name).is_absolute() for m in members):
                raise SourcesUnavailable(f"{archive.name}: refusing to extract {unsafe[:3]}")
            tar.extractall(destination, members=members)
    if not (destination / "tests" / "test_modeling_common.py").is_file():
        raise SourcesUnavailable(f"{archive.name} has no tests/test_modeling_common.py")
    (destination / "tests" / "__init__.py").touch()  # as in transformers' repository (the sdist leaves it out)


# ---------------------------------------------------------------- stand-ins for modules the sdist does not ship


class ExportTesterMixin:
    """Stand-in for `tests/exporters/test_export.py`, which the sdist does not ship: `ModelTesterMixin` derives from
    it, and without the real module its export tests (torch.export / ONNX / ExecuTorch) do not run."""


class GenerationTesterMixin:
    """Stand-in for `tests/generation/test_utils.py`: `ModelTesterMixin` only checks `issubclass(test, this)`, which
    must be False for a model that cannot generate."""


def _config_common_kwargs() -> dict:
    """Stand-in for `tests/utils/test_configuration_utils.config_common_kwargs`: every argument of the installed
    `PreTrainedConfig.__init__`, each with a non-default value (`ConfigTester.check_config_arguments_init` sets them
    all and checks the config keeps them; it expects `dtype` as float16)."""
    values = {
        "return_dict": False,
        "output_hidden_states": True,
        "output_attentions": True,
        "dtype": "float16",
        "chunk_size_feed_forward": 5,
        "architectures": ["BertModel"],
        "id2label": {0: "label"},
        "label2id": {"label": "0"},
        "problem_type": "regression",
        "tie_word_embeddings": False,
    }
    parameters = inspect.signature(transformers.PreTrainedConfig.__init__).parameters
    return {key: value for key, value in values.items() if key in parameters}


STAND_INS = {
    "exporters.test_export": {"ExportTesterMixin": ExportTesterMixin},
    "generation.test_utils": {"GenerationTesterMixin": GenerationTesterMixin},
    "utils.test_configuration_utils": {"config_common_kwargs": _config_common_kwargs()},
}


def _register_stand_ins(tests: Path) -> list[str]:
    """Register a stand-in for each module of `STAND_INS` whose file is missing; returns their names."""
    registered = []
    for dotted, names in STAND_INS.items():
        if (tests / (dotted.replace(".", "/") + ".py")).is_file():
            continue
        parent = PACKAGE
        for part in dotted.split(".")[:-1]:  # parent packages: the real folder if there is one, else an empty package
            name = f"{parent}.{part}"
            if name not in sys.modules and importlib.util.find_spec(name) is None:
                package = types.ModuleType(name)
                package.__path__ = []
                sys.modules[name] = package
                setattr(sys.modules[parent], part, package)
            importlib.import_module(name)
            parent = name
        module = types.ModuleType(f"{PACKAGE}.{dotted}", f"Stand-in for transformers' tests/{dotted}.py")
        module.__dict__.update(names)
        sys.modules[module.__name__] = module
        setattr(sys.modules[parent], dotted.rpartition(".")[2], module)
        registered.append(dotted)
    return registered


# Markers `test_modeling_common.py` applies at import time, declared even where pyproject.toml cannot be read.
MARKERS = ("accelerate_tests", "flash_attn_test", "flash_attn_3_test", "flash_attn_4_test", "torch_compile_test")


def _register_markers(tests: Path) -> None:
    """Declare the pytest markers transformers' tests use (its own pyproject.toml's list) in the running pytest config,
    so that this repository's `--strict-markers` accepts `@pytest.mark.flash_attn_test` and the like. pytest has no
    public accessor for the config at import time; `pytest.mark._config` is the one `--strict-markers` consults."""
    import pytest

    config = getattr(pytest.mark, "_config", None)
    if config is None:  # imported outside pytest
        return
    lines = [f"{name}: used by transformers' common tests" for name in MARKERS]
    pyproject = tests.parent / "pyproject.toml"
    try:
        import tomllib  # Python >= 3.11

        options = tomllib.loads(pyproject.read_text()).get("tool", {}).get("pytest", {}).get("ini_options", {})
        lines = [*options.get("markers", []), *lines]
    except (ImportError, OSError, ValueError):
        pass
    known = {line.split(":")[0].split("(")[0].strip() for line in config.getini("markers")}
    for line in lines:
        name = line.split(":")[0].split("(")[0].strip()
        if name not in known:
            config.addinivalue_line("markers", line)
            known.add(name)


def import_module(name: str) -> types.ModuleType:
    """Import `name` (e.g. "test_modeling_common") from transformers' sdist tests, as `transformers_tests.<name>`."""
    if PACKAGE not in sys.modules:
        tests = sources_dir()
        init = tests / "__init__.py"
        if not init.is_file():  # empty in transformers' repository, absent from the sdist
            init.write_text("")
        try:
            import pytest

            pytest.register_assert_rewrite(PACKAGE)  # detailed messages for the bare asserts of the mixins
            _register_markers(tests)
        except ImportError:
            pass
        spec = importlib.util.spec_from_file_location(PACKAGE, init, submodule_search_locations=[str(tests)])
        package = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = package
        spec.loader.exec_module(package)
        package.stand_ins = tuple(_register_stand_ins(tests))
    return importlib.import_module(f"{PACKAGE}.{name}")


if __name__ == "__main__":
    print(sources_dir())
