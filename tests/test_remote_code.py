"""`trust_remote_code` follows the user: a folder's own code runs only when it is this package's, byte for byte, or
when the user passes `--trust_remote_code true`; otherwise transformers' native class loads it, or the step that
needs the folder's classes (training, merging, publishing) refuses it by name."""

import json
import logging
import shutil

import pytest

from nomic_bert_hf.data.mining import load_judge
from nomic_bert_hf.evaluation import embedder_model_meta
from nomic_bert_hf.hub.publish import check_self_contained
from nomic_bert_hf.model.embedder import build_embedder, save_embedder
from nomic_bert_hf.training.contrastive import load_embedder
from nomic_bert_hf.utils.remote_code import allow_remote_code, ships_package_code

TEXTS = ["What is the capital of France?", "Paris is the capital of France."]


@pytest.fixture(scope="module")
def embedder_dir(encoder_dir, tmp_path_factory):
    return save_embedder(build_embedder(encoder_dir), tmp_path_factory.mktemp("remote-code") / "embedder")


@pytest.fixture
def foreign_dir(embedder_dir, tmp_path):
    """The embedder with a modeling file that is not the package's: importing it leaves a marker file."""
    folder = shutil.copytree(embedder_dir, tmp_path / "foreign")
    marker = tmp_path / "the-folder's-code-ran"
    with open(folder / "modeling_nomic_bert.py", "a") as code:
        code.write(f"\nopen({str(marker)!r}, 'w').close()\n")
    return folder, marker


def test_the_folders_this_package_writes_are_recognised(encoder_dir, mlm_dir, embedder_dir):
    for folder in (encoder_dir, mlm_dir, embedder_dir):
        assert ships_package_code(folder)
        assert allow_remote_code(folder)


def test_code_of_another_repository_is_not_recognised(embedder_dir, tmp_path):
    folder = shutil.copytree(embedder_dir, tmp_path / "cross-repo")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"]["AutoModel"] = "someone/else--modeling_nomic_bert.NomicBertModel"
    (folder / "config.json").write_text(json.dumps(config))
    assert not ships_package_code(folder)


def test_code_that_is_not_the_packages_runs_only_when_the_user_says_so(foreign_dir, caplog):
    folder, marker = foreign_dir
    assert not ships_package_code(folder)

    with caplog.at_level(logging.WARNING, logger="nomic_bert_hf.utils.remote_code"):
        judge = load_judge(str(folder))
    assert judge.encode(TEXTS).shape == (2, 32)  # transformers' native class loaded it
    assert not marker.exists()
    assert str(folder) in caplog.text and "--trust_remote_code true" in caplog.text

    meta = embedder_model_meta(folder, name="test/foreign", dtype="float32")
    assert meta.loader_kwargs["trust_remote_code"] is False
    meta.load_model()  # mteb's loader, as an evaluation runs it: loading is what would import the folder's code
    assert not marker.exists()

    load_judge(str(folder), trust_remote_code=True)
    assert marker.exists()  # the marker does show when the code runs


def test_training_and_publishing_refuse_code_that_is_not_the_packages(foreign_dir):
    folder, marker = foreign_dir
    for needs_own_classes in (load_embedder, check_self_contained):
        with pytest.raises(ValueError, match=rf"{folder}.*not this package's.*--trust_remote_code true"):
            needs_own_classes(folder)
    assert not marker.exists()
