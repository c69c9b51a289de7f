"""The corpus builder's assembly and writing: splits, deduplication, evaluation tasks, deterministic shards, the
manifest and the refusal to drift from its pins. Runs on small inline data (the full build needs the Debian archive)."""

import gzip
import json

import pytest
from corpus_build import build, fetch, shards, wordnet
from corpus_build import datasets as D
from corpus_build.docs import Document
from corpus_build.text import word_count

WORDS = "The quick brown fox jumps over the lazy dog while the cat watches from the warm windowsill. "


def _page(doc_id: str, words: int, **fields) -> Document:
    text = " ".join((WORDS * (words // 17 + 1)).split()[:words])
    return Document("manpages", doc_id, doc_id, f"{doc_id}\n\n{text}", **fields)


def _split_documents(split: str, count: int, prefix: str) -> list[Document]:
    found = []
    for i in range(1000):
        page = _page(f"manpages/{prefix}{i}", 60)
        if D.document_split(page) == split:
            found.append(page)
        if len(found) == count:
            return found
    raise AssertionError("not enough documents in the split")


def test_mlm_rows_drop_duplicates_validation_first_and_respect_the_split():
    validation = _split_documents("validation", 1, "v")[0]
    train = _split_documents("train", 2, "t")
    copy = Document("manpages", train[0].doc_id, "copy", validation.text.upper())  # same text as a validation page
    rows, stats = D.mlm_rows([validation, copy, train[1], _page("manpages/tiny", 5)])
    assert [r["doc_id"] for r in rows["validation"]] == [validation.doc_id]
    assert [r["doc_id"] for r in rows["train"]] == [train[1].doc_id]  # the copy and the too-short page are out
    assert stats["manpages"]["train_documents"] == 1
    assert set(rows["train"][0]) == {"text", "source", "doc_id"}


def test_finish_removes_duplicate_documents_and_keeps_validation_rows():
    dataset = D.PairDataset(3, D.SEARCH, "test")
    row = lambda q, d, i: {"query": q, "document": d, "source": "s", "doc_id": f"s/{i}"}
    dataset.rows["validation"] = [row("q1", "Same text.", 1)]
    dataset.rows["train"] = [row("q2", "same text", 2), row("q3", "Other text.", 3), row("q4", "Other  text", 4)]
    D.finish("faq", dataset)
    assert [r["query"] for r in dataset.rows["validation"]] == ["q1"]
    assert [r["query"] for r in dataset.rows["train"]] == ["q3"]


def test_pair_documents_are_cut_by_stage():
    dataset = D.PairDataset(2, D.SEARCH, "test")
    D._add(dataset, D.Unit("jargon", "jargon/x"), "x", " ".join(["word"] * 1000))
    (row,) = dataset.rows["train"] + dataset.rows["validation"]
    assert word_count(row["document"]) == D.RECIPE["pair_max_words"]["stage_2"]


def test_retrieval_task_links_every_document_paired_with_a_query():
    rows = [
        {"query": "bank", "document": "sloping land beside a body of water", "source": "w", "doc_id": "w/1"},
        {"query": "bank", "document": "a financial institution", "source": "w", "doc_id": "w/2"},
        {"query": "river", "document": "a large natural stream of water", "source": "w", "doc_id": "w/3"},
        {"query": "stream", "document": "A large natural stream of water.", "source": "w", "doc_id": "w/4"},
    ]
    task = D.retrieval_task(rows, max_queries=None, max_words=None)
    assert len(task["corpus"]) == 3  # the duplicate document text is one corpus entry
    assert [q["text"] for q in task["queries"]] == ["bank", "river", "stream"]
    relevant = {}
    for qrel in task["qrels"]:
        relevant.setdefault(qrel["query_id"], set()).add(qrel["doc_id"])
    ids = {q["text"]: q["id"] for q in task["queries"]}
    assert len(relevant[ids["bank"]]) == 2 and relevant[ids["river"]] == relevant[ids["stream"]]
    assert {c["id"] for c in task["corpus"]} >= {q["doc_id"] for q in task["qrels"]}
    assert set(task["corpus"][0]) == {"id", "title", "text"}
    assert len(D.retrieval_task(rows, max_queries=2, max_words=None)["queries"]) == 2


def test_long_documents_lose_their_summary_and_come_from_validation():
    long_words = D.RECIPE["long_document_min_words"] + 10
    pages = []
    for i in range(200):
        body = "open and possibly create a file. " + " ".join(["text"] * long_words)
        pages.append(_page(f"manpages/l{i}", 20, summary="open and possibly create a file", body=body))
    rows = D.long_document_rows(pages)
    assert rows and all(D.document_split(p) == "validation" for p in pages if p.doc_id in {r["doc_id"] for r in rows})
    assert 0.15 < len(rows) / len(pages) < 0.35  # the long-document validation fraction (0.25)
    assert all("open and possibly create a file" not in r["document"] for r in rows)


def test_similarity_task_scores_definitions_by_hierarchy_distance(monkeypatch):
    line = "{:08d} 03 n 01 w{} 0 {:03d} {}| definition number {} of a thing"
    parents = {1: None, 2: 1, 3: 2, 4: 2, 5: 3, 6: 1, 7: 6}
    synsets = {}
    for i, parent in parents.items():
        pointers = f"@ {parent:08d} n 0000 " if parent else ""
        synsets[f"n{i:08d}"] = wordnet.parse_data_line(line.format(i, i, 1 if parent else 0, pointers, i))
    units = {s: D.Unit("wordnet", f"wordnet/{'a' if int(s[1:]) < 6 else 'b'}") for s in synsets}
    monkeypatch.setattr(D.Unit, "split", lambda self: "validation")
    pairs, relations = D.similarity_task(synsets, units)
    assert pairs and relations["hypernym"] >= 1 and relations["other_group"] >= 1
    hierarchy, by_definition = wordnet.Hierarchy(synsets), {s.definition: i for i, s in synsets.items()}
    for pair in pairs:
        a, b = by_definition[pair["sentence1"]], by_definition[pair["sentence2"]]
        assert pair["score"] == round(hierarchy.path_similarity(a, b), 4)
    scores = {p["score"] for p in pairs}
    assert 0.5 in scores and min(scores) < 1 / 3  # direct hypernyms, and relatives further apart


def test_shards_are_byte_identical_and_carry_no_timestamp(tmp_path):
    rows = [{"query": f"q{i}", "document": "é" * 50, "source": "s", "doc_id": f"s/{i}"} for i in range(100)]
    first = shards.write_shards(tmp_path / "a", "train", rows, tmp_path)
    second = shards.write_shards(tmp_path / "b", "train", rows, tmp_path)
    assert [r["sha256"] for r in first.values()] == [r["sha256"] for r in second.values()]
    data = (tmp_path / "a" / "train-00000.jsonl.gz").read_bytes()
    assert data[4:8] == b"\0\0\0\0"  # gzip MTIME field
    assert [json.loads(line) for line in gzip.open(tmp_path / "a" / "train-00000.jsonl.gz", "rt")] == rows


def test_shards_split_at_the_size_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(shards, "SHARD_BYTES", 200)
    rows = [{"text": "x" * 60, "source": "s", "doc_id": f"s/{i}"} for i in range(10)]
    written = shards.write_shards(tmp_path, "train", rows, tmp_path)
    assert len(written) > 1 and sum(r["rows"] for r in written.values()) == 10
    assert sorted(written) == [f"train-{i:05d}.jsonl.gz" for i in range(len(written))]


def _small_build(root):
    """write_corpus on a handful of rows, as the builder writes the real corpus."""
    mlm = {"train": [{"text": WORDS, "source": "manpages", "doc_id": "manpages/a"}],
           "validation": [{"text": WORDS[::-1], "source": "manpages", "doc_id": "manpages/b"}]}
    dataset = D.PairDataset(3, D.SEARCH, "test pairs")
    dataset.rows = {"train": [{"query": "q", "document": "d", "source": "s", "doc_id": "s/1"}],
                    "validation": [{"query": "q2", "document": "d2", "source": "s", "doc_id": "s/2"}]}
    evals = {"t": (D.retrieval_task(dataset.rows["validation"], None, None),
                   {"type": "retrieval", "prompts": D.SEARCH, "held_out": False, "description": "t"})}
    extra = {"mlm": {}, "man_page_licenses": {}, "long_document_words": {}}
    pins = {"wordnet": {"package": "wordnet-base", "version": "1:3.0-37", "sha256": "0" * 64, "license": "WordNet"},
            "debian-descriptions": {"index": "x_Translation-en", "release": "Debian 12.15", "sha256": "1" * 64,
                                    "license": "various"}}
    return build.write_corpus(root, mlm, {"faq": dataset}, evals, extra, pins, {"python": "3.11"})


def test_write_corpus_is_reproducible_and_counts_match(tmp_path):
    first, second = _small_build(tmp_path / "a"), _small_build(tmp_path / "b")
    assert first == second
    assert (tmp_path / "a" / "manifest.json").read_bytes() == (tmp_path / "b" / "manifest.json").read_bytes()
    assert build.compare(first, second) == []
    assert first["pairs"]["faq"]["rows"] == {"train": 1, "validation": 1}
    assert first["eval"]["t"]["files"]["qrels"] == "eval/t/qrels.jsonl.gz"
    assert all((tmp_path / "a" / path).is_file() for path in first["files"])
    altered = json.loads(json.dumps(second))
    altered["files"]["pairs/faq/train-00000.jsonl.gz"]["sha256"] = "f" * 64
    assert build.compare(first, altered) == [
        f"pairs/faq/train-00000.jsonl.gz: sha256 {'f' * 64} differs from the committed "
        f"{first['files']['pairs/faq/train-00000.jsonl.gz']['sha256']}"
    ]


def test_data_card_counts_block_is_rewritten(tmp_path):
    manifest = _small_build(tmp_path / "new")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "DATA.md").write_text(f"# Data\n\n{build.COUNTS_START}\nstale\n{build.COUNTS_END}\n\nEnd.\n")
    build.update_data_card(tmp_path / "old", tmp_path / "new", manifest)
    card = (tmp_path / "new" / "DATA.md").read_text()
    assert "stale" not in card and card.endswith("\n\nEnd.\n")
    assert "| pairs/faq | 3 | search_query / search_document | 1 | 1 |" in card
    assert "`wordnet-base=1:3.0-37`" in card


def test_a_deb_that_differs_from_its_pin_is_refused(tmp_path):
    (tmp_path / "debs").mkdir()
    (tmp_path / "debs" / "wordnet-base_1%3a3.0-37_all.deb").write_bytes(b"not the pinned package")
    with pytest.raises(fetch.PinError, match="differs from the pinned"):
        fetch.fetch_deb("wordnet-base", "1:3.0-37", "0" * 64, tmp_path)
    assert not (tmp_path / "unpacked").exists() or not any((tmp_path / "unpacked").iterdir())


def test_other_tool_versions_are_refused(monkeypatch):
    monkeypatch.setattr(fetch, "tool_versions", lambda: {"groff-base": "1.23.0-1", "python": "3.11", "zlib": "1.2.13"})
    with pytest.raises(fetch.PinError, match="groff-base"):
        build.check_tools({"groff-base": "1.22.4-10", "python": "3.11", "zlib": "1.2.13"})
    build.check_tools({"groff-base": "1.23.0-1", "python": "3.11", "zlib": "1.2.13"})
