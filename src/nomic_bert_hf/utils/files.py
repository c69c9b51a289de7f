"""Files on disk: checkpoints read safely, files hashed, outputs written so an interrupted save never looks finished."""

import contextlib
import errno
import glob
import hashlib
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from transformers import PretrainedConfig, PreTrainedModel

FULL_DISK_BYTES = 8 << 20  # free space below which a failed write is taken to have filled the disk


def read_state_dict(folder: str | Path) -> dict[str, torch.Tensor]:
    """The weights of a checkpoint folder: safetensors (single or sharded); a PyTorch `.bin` only with
    `weights_only=True`, so nothing arbitrary is unpickled."""
    folder = Path(folder)
    if (folder / "model.safetensors").is_file():
        return load_file(folder / "model.safetensors")
    if (folder / "model.safetensors.index.json").is_file():
        index = json.loads((folder / "model.safetensors.index.json").read_text())
        state_dict = {}
        for shard in sorted(set(index["weight_map"].values())):
            state_dict.update(load_file(folder / shard))
        return state_dict
    if (folder / "pytorch_model.bin").is_file():
        return torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"{folder} holds no model.safetensors, model.safetensors.index.json or pytorch_model.bin")


def load_strict(model_class: type[PreTrainedModel], path: str | Path, new_weights: tuple[str, ...] = (), **kwargs):
    """`model_class.from_pretrained` that fails, naming the keys, when the checkpoint lacks weights the model needs
    (transformers would initialise them at random). `new_weights` are name prefixes a new head may leave missing.
    Weights of the wrong shape already make transformers raise; a folder of another architecture (a BERT folder, say)
    is refused by its `model_type` before that, and a cut-short weights file by its name."""
    config_class = getattr(model_class, "config_class", None)  # None for the Auto classes
    if config_class is not None:
        model_config(path, config_class, revision=kwargs.get("revision"))
    try:
        model, info = model_class.from_pretrained(path, output_loading_info=True, **kwargs)
    except Exception as error:
        for file in sorted(Path(path).glob("*.safetensors")) if Path(path).is_dir() else ():
            try:
                safe_open(file, "pt").keys()
            except (SafetensorError, OSError):
                raise ValueError(f"{file}: not a readable safetensors file, perhaps cut short ({error})") from error
        raise
    missing = sorted(key for key in info["missing_keys"] if not key.startswith(new_weights))
    if missing:
        raise ValueError(f"{path} does not fit {model_class.__name__}: it has no weights for {', '.join(missing)}")
    return model


def require_found(path: str | Path) -> None:
    """Refuse by name a model path that can only be local (absolute, relative, or deeper than `org/name`) and does
    not exist, before a Hub lookup would report it as a malformed repository id."""
    local = Path(path).expanduser()
    if not local.exists() and (local.is_absolute() or str(path).startswith((".", "~")) or len(local.parts) > 2):
        raise FileNotFoundError(f"{path} does not exist")


def model_config(path: str | Path, config_class: type[PretrainedConfig], revision: str | None = None) -> dict:
    """The config.json mapping of a model folder or Hub id, refusing by name a path that does not exist, a folder
    with no config.json and a model of another architecture (`model_type`)."""
    require_found(path)
    if Path(path).is_dir() and not (Path(path) / "config.json").is_file():
        raise FileNotFoundError(f"{path} has no config.json: not a model folder")
    config, _ = config_class.get_config_dict(str(path), revision=revision)
    if config.get("model_type") != config_class.model_type:
        raise ValueError(f"{path} holds a {config.get('model_type')!r} model, not {config_class.model_type!r}")
    return config


@contextlib.contextmanager
def atomic_output_dir(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside `path`, renamed to `path` only once the block finishes without error.

    An existing non-empty `path` is an error unless `overwrite` is true; it is then replaced only after the new
    contents are complete, so a crash or a full disk leaves either the old folder or nothing, never a half-written one.
    """
    path = Path(path)
    if path.exists() and any(path.iterdir()) and not overwrite:
        raise FileExistsError(f"{path} already exists and is not empty; choose another output or allow overwriting")
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}.partial-{socket.gethostname()}-"
    remove_abandoned(path.parent, prefix)
    staging = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=path.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; the result should be an ordinary folder
    try:
        yield staging
        if path.exists():
            retired = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, retired)
            os.replace(staging, path)
            shutil.rmtree(retired)
        else:
            os.replace(staging, path)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def remove_abandoned(folder: Path, prefix: str) -> None:
    """Delete the staging folders `<prefix><pid>-*` and partial files `<prefix><pid>` in `folder` whose process (on
    this host) is gone: a killed save cannot clean up after itself. A live process's, or another host's, are left."""
    for staging in folder.glob(f"{glob.escape(prefix)}*"):
        pid = staging.name.removeprefix(prefix).split("-", 1)[0]
        if pid.isdigit() and not process_is_alive(int(pid)):
            if staging.is_dir():
                shutil.rmtree(staging, ignore_errors=True)
            else:
                staging.unlink(missing_ok=True)


def process_is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


@contextlib.contextmanager
def naming_a_full_disk(folder: str | Path) -> Iterator[None]:
    """Re-raise an error that a full disk caused while writing into `folder` as `OSError(ENOSPC)` naming the folder and
    the space left, the original error as its cause. Libraries do not always say so (torch.save reports a failed
    stream position, or `basic_ios::clear: iostream error`), so an error counts as a full disk when it is ENOSPC or
    when less than `FULL_DISK_BYTES` are free after it."""
    try:
        yield
    except Exception as error:
        existing = next(path for path in (Path(folder), *Path(folder).parents) if path.exists())
        free = shutil.disk_usage(existing).free
        chain, cause = [], error
        while cause is not None:
            chain.append(cause)
            cause = cause.__cause__ or cause.__context__
        if any(getattr(item, "errno", None) == errno.ENOSPC for item in chain) or free < FULL_DISK_BYTES:
            raise OSError(errno.ENOSPC, f"no space left on device writing to {folder} ({free:,} bytes free); free "
                                        "some space and run the same command again to resume") from error
        raise


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "w", opener: Callable[..., IO] = open, **kwargs) -> Iterator[IO]:
    """Yield a partial file beside `path` opened with `opener(partial, mode, **kwargs)`, renamed to `path` only once
    the block finishes without error: a reader never sees half of it, an error leaves no partial file behind, and the
    next write removes the one a killed process left."""
    path = Path(path)
    prefix = f".{path.name}.partial-{socket.gethostname()}-"
    remove_abandoned(path.parent, prefix)
    partial = path.with_name(f"{prefix}{os.getpid()}")
    try:
        with opener(partial, mode, **kwargs) as file:
            yield file
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def update_digest(digest: "hashlib._Hash", path: str | Path) -> None:
    """Feed a file's bytes to `digest`, a chunk at a time (memory stays flat for files of any size). Not
    `hashlib.file_digest`: that needs Python 3.11, and the package supports 3.10."""
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)


def sha256_file(path: str | Path) -> str:
    """The hex SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    update_digest(digest, path)
    return digest.hexdigest()
