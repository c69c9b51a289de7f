"""Shared fixtures: tiny NomicBERT checkpoints written to temporary folders, corpora of real text, training/mlm.py as
a module, and an offline, sandboxed HF cache."""

import json
import os
import subprocess
import tempfile

# Before any Hugging Face import: nothing may reach the network or write to the user's home.
_SANDBOX = tempfile.mkdtemp(prefix="nomic-bert-hf-tests-")
os.environ.setdefault("HF_HOME", os.path.join(_SANDBOX, "hf"))
os.environ.setdefault("MTEB_CACHE", os.path.join(_SANDBOX, "mteb"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402
from docstrings import stdlib_docstrings  # noqa: E402
from script_loader import load_script  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from nomic_bert_hf import NomicBertConfig, NomicBertForPreTraining, NomicBertModel  # noqa: E402
from nomic_bert_hf.model.tokenization import bert_uncased_tokenizer, save_tokenizer  # noqa: E402

TINY = dict(n_embd=32, n_layer=2, n_head=4, n_inner=64, rotary_scaling_factor=2.0)


def tiny_config(**overrides) -> NomicBertConfig:
    """The tiny test architecture (hidden 32, 2 layers, 4 heads) with the real 30528-token vocabulary."""
    return NomicBertConfig(**{**TINY, **overrides})


def sharpen(model: torch.nn.Module, factor: float = 15.0) -> torch.nn.Module:
    """Scale the attention projections so that attention depends strongly on position (a random init attends almost
    uniformly, which would hide RoPE mistakes)."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("attn.Wqkv.weight"):
                parameter.mul_(factor)
    return model


def random_ids(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(1000, 30000, (batch, length), generator=generator)


@pytest.fixture(scope="session")
def tokenizer():
    return bert_uncased_tokenizer()


@pytest.fixture(scope="session")
def encoder_dir(tmp_path_factory, tokenizer):
    """A saved tiny encoder (this package's layout) with its tokenizer."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("encoder")
    sharpen(NomicBertModel(tiny_config())).save_pretrained(path)
    save_tokenizer(tokenizer, path)
    return path


@pytest.fixture(scope="session")
def mlm_dir(tmp_path_factory, tokenizer):
    """A saved tiny masked-language model (this package's layout) with its tokenizer."""
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("mlm")
    sharpen(NomicBertForPreTraining(tiny_config())).save_pretrained(path)
    save_tokenizer(tokenizer, path)
    return path


@pytest.fixture(scope="session")
def nomic_mirror(tmp_path_factory, tokenizer):
    """A mirror folder with local copies of Nomic's three released datasets (`hub_copies.build_mirror`)."""
    from hub_copies import build_mirror

    return build_mirror(tmp_path_factory.mktemp("mirror"), tokenizer)


class InterruptAt(TrainerCallback):
    """Crash a Trainer run when step `step` begins (after the checkpoints before it were saved), as a kill would."""

    class Interrupted(Exception):
        pass

    def __init__(self, step):
        self.step = step

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise self.Interrupted


@pytest.fixture(scope="session")
def interrupt_at():
    """`interrupt_at(step)`: a callback that crashes the run there (`interrupt_at.Interrupted` is what it raises)."""
    return InterruptAt


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module's tests (`pytestmark = pytest.mark.usefixtures("one_torch_thread")`): tiny
    models gain nothing from threads, and on a shared 2-core machine two threads per process make in-process training
    runs several times slower; restored after the module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def corpus_file(tmp_path_factory):
    """The standard library's docstrings as JSON lines with a `text` column (and a `source` column the loader must
    ignore)."""
    path = tmp_path_factory.mktemp("corpus") / "docstrings.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        for number, text in enumerate(stdlib_docstrings()):
            handle.write(json.dumps({"text": text, "source": f"doc{number}"}) + "\n")
    return path


@pytest.fixture(scope="session")
def small_corpus_file(tmp_path_factory):
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


@pytest.fixture(scope="session")
def mlm_script():
    """training/mlm.py as a module."""
    return load_script("training/mlm.py")


@pytest.fixture
def small_disk(tmp_path):
    """A 20 MB tmpfs (room for one tiny checkpoint, not two), mounted for the test; needs root, as CI runs."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(disk)], capture_output=True,
                             check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()}); the full-disk test needs root")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)
