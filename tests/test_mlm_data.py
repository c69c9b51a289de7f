"""Loading, packing and masking of MLM corpora (nomic_bert_hf.data.mlm_data)."""

import gzip
import json
import logging

import datasets
import pytest
import torch

from nomic_bert_hf.data.mlm_data import (
    MaskingCollator,
    load_documents,
    pack_document_stream,
    pack_documents,
)

CLS, SEP, MASK = 101, 102, 103
DOCUMENTS = [  # real sentences of different lengths, an empty one and a blank one
    "The cat sat on the mat.",
    "",
    "Packing puts several short documents into one sequence, and splits a long document across sequences so that "
    "no position is wasted on padding.",
    "   ",
    "Rotary embeddings.",
    "A masked language model predicts the hidden words of a sentence from their context.",
    "Short one.",
]


def write_jsonl(path, texts, column="text"):
    path.write_text("".join(json.dumps({column: text, "id": i}) + "\n" for i, text in enumerate(texts)))
    return path


def expected_stream(tokenizer, texts):
    """[CLS] tokens [SEP] of every non-empty document, end to end."""
    stream = []
    for text in texts:
        if text.strip():
            stream += tokenizer(text)["input_ids"]
    return stream


@pytest.mark.parametrize("batch_size", [1, 2, 1000])  # sequences crossing batches of documents, and one batch
def test_packing_cuts_the_document_stream_at_exact_boundaries(tmp_path, tokenizer, batch_size):
    documents = load_documents([str(write_jsonl(tmp_path / "docs.jsonl", DOCUMENTS))])
    packed, stats = pack_documents(documents, tokenizer, 16, batch_size=batch_size)
    stream = expected_stream(tokenizer, DOCUMENTS)
    assert stream[0] == CLS and stream.count(CLS) == stream.count(SEP) == 5
    assert packed["input_ids"][:] == [stream[i:i + 16] for i in range(0, len(stream) - 15, 16)]
    assert (stats.documents, stats.empty_documents, stats.sequences) == (5, 2, len(stream) // 16)
    assert stats.dropped_tokens == len(stream) % 16 > 0 and stats.tokens == 16 * stats.sequences
    long_document = tokenizer(DOCUMENTS[2])["input_ids"]
    assert len(long_document) > 16  # it continues into the next sequence
    assert packed.features["input_ids"].feature.dtype == "int32"


def test_stream_packs_like_the_map_style_path(corpus_file, tokenizer, caplog):
    packed, stats = pack_documents(load_documents([str(corpus_file)]), tokenizer, 128)
    stream = pack_document_stream(load_documents([str(corpus_file)], streaming=True), tokenizer, 128)
    with caplog.at_level(logging.INFO, logger="nomic_bert_hf"):
        streamed = [row["input_ids"] for row in stream]
    assert streamed == packed["input_ids"][:] and len(streamed) == stats.sequences > 200
    assert f"into {stats.sequences} sequences" in caplog.text


def test_packing_is_deterministic_given_the_seed(corpus_file, tokenizer):
    documents = load_documents([str(corpus_file)])
    first, _ = pack_documents(documents, tokenizer, 64, seed=3)
    parallel, _ = pack_documents(documents, tokenizer, 64, seed=3, num_proc=2)
    other, _ = pack_documents(documents, tokenizer, 64, seed=4)
    unshuffled, _ = pack_documents(documents, tokenizer, 64)
    assert first["input_ids"][:] == parallel["input_ids"][:]
    assert first["input_ids"][:] != other["input_ids"][:]
    assert sorted(map(tuple, first["input_ids"][:])) != sorted(map(tuple, unshuffled["input_ids"][:]))
    assert len(first) == len(other) == len(unshuffled)  # same tokens, another order


def test_empty_documents_are_skipped_and_counted_in_a_stream(tmp_path, tokenizer, caplog):
    path = write_jsonl(tmp_path / "docs.jsonl", DOCUMENTS)
    with caplog.at_level(logging.INFO, logger="nomic_bert_hf"):
        rows = list(pack_document_stream(load_documents([str(path)], streaming=True), tokenizer, 16))
    assert "skipped 2 empty documents" in caplog.text
    assert [row["input_ids"] for row in rows][0][:1] == [CLS]


def test_a_corpus_smaller_than_one_sequence_is_an_error(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "small.jsonl", ["One short sentence.", ""])
    with pytest.raises(ValueError, match=r"6 tokens in 1 non-empty documents \(1 empty.*fewer than one packed sequence "
                                         r"of 2048 tokens"):
        pack_documents(load_documents([str(path)]), tokenizer, 2048)
    with pytest.raises(ValueError, match="fewer than one packed sequence of 2048 tokens"):
        list(pack_document_stream(load_documents([str(path)], streaming=True), tokenizer, 2048))


def test_a_missing_text_column_names_the_columns_that_exist(tmp_path):
    path = write_jsonl(tmp_path / "docs.jsonl", DOCUMENTS, column="body")
    for streaming in (False, True):
        with pytest.raises(ValueError, match="no column 'text'; its columns are body, id"):
            load_documents([str(path)], streaming=streaming)
    assert load_documents([str(path)], text_column="body")["text"][0] == DOCUMENTS[0]
    datasets.Dataset.from_dict({"content": DOCUMENTS}).to_parquet(tmp_path / "docs.parquet")
    with pytest.raises(ValueError, match="its columns are content"):
        load_documents([str(tmp_path / "docs.parquet")])


def test_invalid_utf8_names_the_file_and_line_unless_replaced(tmp_path):
    lines = [b'{"text": "first line"}', b'{"text": "caf\xe9 au lait"}', b'{"text": "third line"}']
    (tmp_path / "bad.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    with gzip.open(tmp_path / "bad.jsonl.gz", "wb") as handle:
        handle.write(b"\n".join(lines) + b"\n")
    (tmp_path / "bad.txt").write_bytes(b"first paragraph\n\nsecond \xff paragraph\n")
    for name, line in (("bad.jsonl", 2), ("bad.jsonl.gz", 2), ("bad.txt", 3)):
        for streaming in (False, True):
            with pytest.raises(ValueError, match=rf"bad\.{name.split('.', 1)[1]}, line {line}: invalid UTF-8"):
                load_documents([str(tmp_path / name)], streaming=streaming)
    assert load_documents([str(tmp_path / "bad.jsonl")], encoding_errors="replace")["text"][1] == "caf\ufffd au lait"
    replaced = load_documents([str(tmp_path / "bad.txt")], encoding_errors="replace")
    assert replaced["text"][:] == ["first paragraph", "second \ufffd paragraph\n"]


def test_folders_text_files_and_mixed_formats(tmp_path):
    (tmp_path / "corpus" / "part").mkdir(parents=True)
    write_jsonl(tmp_path / "corpus" / "a.jsonl", DOCUMENTS[:2])
    with gzip.open(tmp_path / "corpus" / "part" / "b.jsonl.gz", "wt") as handle:
        handle.write(json.dumps({"text": "Gzipped text."}) + "\n")
    (tmp_path / "corpus" / "part" / "c.txt").write_text("A paragraph\non two lines.\n\nAnother paragraph.\n")
    (tmp_path / "corpus" / "README.md").write_text("not data")
    texts = load_documents([str(tmp_path / "corpus")])["text"][:]
    assert sorted(texts) == sorted([*DOCUMENTS[:2], "Gzipped text.", "A paragraph\non two lines.",
                                    "Another paragraph.\n"])
    matched = load_documents([str(tmp_path / "corpus" / "**" / "*.jsonl*")])["text"][:]
    assert matched == [*DOCUMENTS[:2], "Gzipped text."]
    with pytest.raises(FileNotFoundError, match="no file matches"):
        load_documents([str(tmp_path / "corpus" / "*.parquet")])
    lines = load_documents([str(tmp_path / "corpus" / "part" / "c.txt")], text_sample_by="line")["text"][:]
    assert lines == ["A paragraph", "on two lines.", "", "Another paragraph."]


@pytest.mark.parametrize("source, message", [
    ("missing/folder/corpus.jsonl", "does not exist"),
    ("./corpus", "does not exist"),
])
def test_bad_sources_are_named(source, message):
    with pytest.raises(FileNotFoundError, match=message):
        load_documents([source])


def test_unsupported_files_and_empty_folders_are_named(tmp_path):
    (tmp_path / "notes.md").write_text("text")
    with pytest.raises(ValueError, match="notes.md: unsupported file type"):
        load_documents([str(tmp_path / "notes.md")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no .jsonl"):
        load_documents([str(tmp_path / "empty")])


@pytest.fixture(scope="module")
def batch():
    """64 sequences of 512 tokens: [CLS] ... [SEP] with random ordinary tokens between."""
    ids = torch.randint(1000, 30000, (64, 512), generator=torch.Generator().manual_seed(0))
    ids[:, 0], ids[:, -1], ids[:, 200] = CLS, SEP, SEP
    return [{"input_ids": row.tolist()} for row in ids]


def test_masking_rate_and_the_80_10_10_split(tokenizer, batch):
    collator = MaskingCollator(tokenizer, mlm_probability=0.3, seed=0)
    original = torch.tensor([example["input_ids"] for example in batch])
    out = collator(batch)
    masked = out["labels"] != -100
    ordinary = ~torch.isin(original, torch.tensor([CLS, SEP]))
    assert not masked[~ordinary].any()  # special tokens are never masked
    assert torch.equal(out["labels"][masked], original[masked])
    rate = masked.sum() / ordinary.sum()  # 32,576 maskable tokens: standard error 0.0025
    assert 0.29 < rate < 0.31
    replaced = out["input_ids"][masked]
    shares = [(replaced == MASK).float().mean(), (replaced == original[masked]).float().mean()]
    random_share = 1 - shares[0] - shares[1]
    assert 0.78 < shares[0] < 0.82 and 0.085 < shares[1] < 0.115 and 0.085 < random_share < 0.115
    assert torch.equal(out["input_ids"][~masked], original[~masked])


def test_masks_depend_on_seed_epoch_and_sequence_only(tokenizer, batch):
    collator = MaskingCollator(tokenizer, mlm_probability=0.3, seed=0)
    first = collator(batch)
    assert torch.equal(collator(batch)["labels"], first["labels"])  # no hidden generator state
    regrouped = collator(batch[32:] + batch[:32])  # other batch mates: the same masks per sequence
    assert torch.equal(regrouped["labels"], torch.cat((first["labels"][32:], first["labels"][:32])))
    assert torch.equal(MaskingCollator(tokenizer, mlm_probability=0.3, seed=0)(batch)["input_ids"], first["input_ids"])
    collator.epoch = 1
    assert not torch.equal(collator(batch)["labels"], first["labels"])
    assert not torch.equal(MaskingCollator(tokenizer, mlm_probability=0.3, seed=1)(batch)["labels"], first["labels"])
