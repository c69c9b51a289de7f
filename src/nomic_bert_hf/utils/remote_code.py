"""Whether to run the code a model folder ships (`trust_remote_code`): when the user says so, or when that code is
byte for byte this package's own, so loading the folder runs nothing the installed package does not.

A folder this project wrote (a stage's `final/`, a published embedder, a converted checkpoint) carries copies of
`configuration_nomic_bert.py` and `modeling_nomic_bert.py` and is recognised; anything else (another repository's
code, an edited copy, a folder from an older release) runs only with `--trust_remote_code true`. Without it,
transformers loads a `nomic_bert` folder with its native class.
"""

import json
import logging
from pathlib import Path

from transformers.utils import cached_file

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # where configuration_nomic_bert.py and modeling_nomic_bert.py live

logger = logging.getLogger(__name__)


def mapped_modules(auto_map: dict) -> set[str]:
    """The module names a config's `auto_map` points to (`repo--module` for another repository's code)."""
    references = []
    for value in auto_map.values():
        references.extend(value if isinstance(value, list | tuple) else [value])
    return {reference.rsplit(".", 1)[0] for reference in references if reference}


def read_optional(model_name_or_path: str | Path, file_name: str, revision: str | None) -> Path | None:
    """A file of a folder or Hub repository, or None where it has none."""
    found = cached_file(str(model_name_or_path), file_name, revision=revision,
                        _raise_exceptions_for_missing_entries=False)
    return Path(found) if found else None


def ships_package_code(model_name_or_path: str | Path, revision: str | None = None) -> bool:
    """True when every module the folder's config.json maps an Auto class to is a byte-identical copy of this
    package's own file."""
    config_file = read_optional(model_name_or_path, "config.json", revision)
    if config_file is None:
        return False
    modules = mapped_modules(json.loads(config_file.read_text()).get("auto_map") or {})
    if not modules:
        return False
    for module in modules:
        own = PACKAGE_DIR / f"{module}.py"
        if "--" in module or "." in module or not own.is_file():
            return False
        shipped = read_optional(model_name_or_path, f"{module}.py", revision)
        if shipped is None or shipped.read_bytes() != own.read_bytes():
            return False
    return True


def allow_remote_code(model_name_or_path: str | Path, trust_remote_code: bool = False,
                      revision: str | None = None, *, required: bool = False) -> bool:
    """The `trust_remote_code` to load `model_name_or_path` with: the user's `True`, else whether the folder's code
    is this package's own (`ships_package_code`). A folder shipping other code is loaded with transformers' native
    class and a warning, or refused where the caller needs the folder's own classes (`required`: training, which
    saves the code it ran)."""
    if trust_remote_code or ships_package_code(model_name_or_path, revision):
        return True
    config_file = read_optional(model_name_or_path, "config.json", revision)
    if config_file is None or not json.loads(config_file.read_text()).get("auto_map"):
        return False
    problem = (f"{model_name_or_path} ships modeling code that is not this package's "
               "(another release or an edited copy)")
    if required:
        raise ValueError(f"{problem}; pass --trust_remote_code true to run it")
    logger.warning(f"{problem}; it is not run: transformers' native class loads the model instead. "
                   "Pass --trust_remote_code true to run the folder's own code.")
    return False
