"""The committed default corpus against its manifest, and the reader's file lists and errors."""

import gzip
import json
import shutil
from pathlib import Path

import pytest
from datasets import load_dataset

from nomic_bert_hf.data.corpus import Corpus, CorpusError

DEFAULT_CORPUS = Path(__file__).resolve().parents[1] / "training" / "data" / "default"


@pytest.fixture(scope="module")
def corpus():
    return Corpus.load(DEFAULT_CORPUS)  # verifies every file's sha256


def _rows(path):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_committed_corpus_matches_its_manifest(corpus):
    assert corpus.root == DEFAULT_CORPUS
    total = 0
    for relative, record in corpus.manifest["files"].items():
        assert len(_rows(corpus.root / relative)) == record["rows"], relative
        total += record["bytes"]
    assert total < 25_000_000  # the repository budget for the embedded corpus
    assert (corpus.root / "DATA.md").is_file()
    listed = set(corpus.manifest["files"]) | {"manifest.json", "DATA.md"}
    on_disk = {p.relative_to(corpus.root).as_posix() for p in corpus.root.rglob("*") if p.is_file()}
    assert on_disk == listed  # nothing unlisted ships with the corpus


def test_every_input_is_pinned(corpus):
    for name, pin in corpus.manifest["sources"].items():
        assert pin["sha256"] and len(pin["sha256"]) == 64 and pin["license"], name
        assert "version" in pin or "index" in pin, name
    assert set(corpus.manifest["tools"]) == {"groff-base", "python", "zlib"}


def test_stages_prompts_and_columns(corpus):
    assert corpus.pair_datasets(stage=2) and corpus.pair_datasets(stage=3)
    assert sorted(corpus.pair_datasets(stage=2) + corpus.pair_datasets(stage=3)) == sorted(corpus.pair_datasets())
    for name in corpus.pair_datasets():
        prompts = corpus.prompts(name)
        assert set(prompts) == {"query", "document"}
        assert set(prompts.values()) <= {"search_query: ", "search_document: ", "clustering: ", "classification: "}
        assert corpus.rows(name, "train") > 0 and corpus.rows(name, "validation") > 0
    pairs = load_dataset("json", data_files=corpus.data_files("faq"))
    assert set(pairs["train"].column_names) == {"query", "document", "source", "doc_id"}
    assert len(pairs["validation"]) == corpus.rows("faq", "validation")
    mlm = load_dataset("json", data_files=corpus.data_files("mlm"), split="validation")
    assert set(mlm.column_names) == {"text", "source", "doc_id"} and len(mlm) == corpus.rows("mlm", "validation")


def test_train_and_validation_never_share_a_source_document(corpus):
    """The split is by source document across every part: no doc_id of a validation row (from which the evaluation
    tasks are built) appears in any training file."""
    train, validation = set(), set()
    for name in ["mlm", *corpus.pair_datasets()]:
        files = corpus.data_files(name)
        train |= {(row["source"], row["doc_id"]) for path in files["train"] for row in _rows(path)}
        validation |= {(row["source"], row["doc_id"]) for path in files["validation"] for row in _rows(path)}
    assert train and validation and not train & validation


def test_held_out_family_is_absent_from_training(corpus):
    assert [name for name in corpus.eval_tasks() if corpus.eval_task(name)["held_out"]] == ["perl_faq"]
    sources = {row["source"] for name in ["mlm", *corpus.pair_datasets()] for split in ("train", "validation")
               for path in corpus.data_files(name)[split] for row in _rows(path)}
    assert "perl-faq" not in sources


def test_evaluation_tasks_are_consistent(corpus):
    assert set(corpus.eval_tasks("sts")) == {"wordnet_similarity"}
    for name in corpus.eval_tasks("retrieval"):
        files = corpus.eval_files(name)
        queries, documents, qrels = (_rows(files[t]) for t in ("queries", "corpus", "qrels"))
        assert {q["id"] for q in queries} == {r["query_id"] for r in qrels}, name  # every query has an answer
        assert {r["doc_id"] for r in qrels} <= {d["id"] for d in documents}, name
        assert set(documents[0]) == {"id", "title", "text"} and set(queries[0]) == {"id", "text"}
        assert corpus.prompts(name) == {"query": "search_query: ", "document": "search_document: "}
    long_documents = _rows(corpus.eval_files("long_documents")["corpus"])
    assert min(len(d["text"].split()) for d in long_documents) >= 1000
    similarity = load_dataset("json", data_files=corpus.eval_files("wordnet_similarity")["test"], split="train")
    assert set(similarity.column_names) == {"sentence1", "sentence2", "score"}
    assert len(set(similarity["score"])) > 3 and 0 <= min(similarity["score"]) < max(similarity["score"]) <= 1


@pytest.fixture
def copy(tmp_path, corpus):
    target = tmp_path / "corpus"
    shutil.copytree(corpus.root, target)
    return target


def test_a_modified_shard_is_an_error_naming_it(copy):
    shard = copy / "pairs" / "faq" / "train-00000.jsonl.gz"
    shard.write_bytes(shard.read_bytes()[:-8] + b"tampered")
    with pytest.raises(CorpusError, match="shard pairs/faq/train-00000.jsonl.gz does not match the manifest"):
        Corpus.load(copy)
    Corpus.load(copy, verify=False)  # reading without the check still works
    shard.unlink()
    with pytest.raises(CorpusError, match="shard pairs/faq/train-00000.jsonl.gz listed in the manifest is missing"):
        Corpus.load(copy)


def test_bad_corpus_folders(tmp_path, copy):
    with pytest.raises(CorpusError, match="does not exist"):
        Corpus.load(tmp_path / "nowhere")
    with pytest.raises(CorpusError, match="has no manifest.json"):
        Corpus.load(tmp_path)
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps({**manifest, "files": {}}))
    with pytest.raises(CorpusError, match="the corpus is empty"):
        Corpus.load(copy)
    (copy / "manifest.json").write_text("{not json")
    with pytest.raises(CorpusError, match="not valid JSON"):
        Corpus.load(copy)


def test_unknown_names_list_what_exists(corpus):
    with pytest.raises(CorpusError, match="no pair dataset 'nope'.*faq"):
        corpus.data_files("nope")
    with pytest.raises(CorpusError, match="no evaluation task 'nope'.*perl_faq"):
        corpus.eval_files("nope")
