"""Text corpora for masked-language-model pretraining: load documents, pack them into sequences, mask them.

    documents = load_documents(["training/data/default"], text_column="text")
    sequences, stats = pack_documents(documents, tokenizer, max_seq_length=128, seed=42)
    collator = MaskingCollator(tokenizer, mlm_probability=0.3, seed=42)

A corpus that is already tokenized and packed (an `input_ids` column of `max_seq_length` ids per row, as Nomic's
`nomic-ai/nomic-bert-pretokenized-2048-wiki-2023`) is used as it is: `load_documents` keeps its `input_ids`, and
`check_packed` verifies every row's length and ids instead of tokenizing.

Packing: each document becomes `[CLS] tokens [SEP]`; the documents, in an order shuffled by the seed, are laid end to
end and cut into consecutive sequences of exactly `max_seq_length` tokens. Nothing is padded, a document longer than
the rest of a sequence continues at the start of the next one, and only the final partial sequence is dropped. A
streaming corpus is packed the same way on the fly (`pack_document_stream`).

Masking: `MaskingCollator` is transformers' `DataCollatorForLanguageModeling` (80% `[MASK]`, 10% random token, 10%
unchanged) with each sequence's mask drawn from a generator seeded by (seed, epoch, the sequence's tokens). A mask thus
does not depend on batch composition, process count, data-loader workers or how many batches came before, which is
what lets an interrupted and resumed run end exactly where an uninterrupted one does.
"""

import glob
import gzip
import hashlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import pyarrow.compute as pc
import torch
from transformers import DataCollatorForLanguageModeling, PreTrainedTokenizerBase

from .builders import file_builder, naming_a_bad_file
from .hub_data import resolve_path

logger = logging.getLogger(__name__)

TEXT_FILE_BUILDERS = ("json", "parquet", "text")  # the builders of local text files
PACKED_FEATURES = datasets.Features({"input_ids": datasets.List(datasets.Value("int32"))})
TOKENIZE_BATCH = 1000


def load_documents(
    sources: Sequence[str],
    *,
    text_column: str = "text",
    config_name: str | None = None,
    split: str = "train",
    revision: str | None = None,
    streaming: bool = False,
    encoding_errors: str = "strict",
    text_sample_by: str = "paragraph",
    mirror: str | None = None,
) -> datasets.Dataset | datasets.IterableDataset:
    """One `text` column from local files, glob patterns and folders (jsonl, jsonl.gz, json, parquet, txt, txt.gz) and
    Hub dataset ids; or, where the sources are pre-tokenized, their `input_ids` column.

    `config_name`, `split` and `revision` apply to Hub datasets (read from `mirror`'s copy when one is set). In `.txt` files a document is a paragraph (blank-line
    separated) by default; `text_sample_by` takes datasets' other choices, "line" and "document" (one per file).
    Invalid UTF-8 in a local file is an error naming the file and line, unless `encoding_errors="replace"`.
    """
    if encoding_errors not in ("strict", "replace"):
        raise ValueError(f"encoding_errors = {encoding_errors!r}: use 'strict' or 'replace'")
    if not sources:
        raise ValueError("no training data given: name local files, folders or Hub dataset ids")
    parts = []
    for source in sources:
        if _is_local(source):
            for builder, files in _local_files(source).items():
                parts.append(_load_local(builder, files, text_column, streaming, encoding_errors, text_sample_by))
        else:
            dataset = datasets.load_dataset(resolve_path(source, mirror), config_name, split=split, revision=revision,
                                            streaming=streaming)
            parts.append(_text_only(dataset, text_column, source))
    kinds = {part.column_names[0] for part in parts}
    if len(kinds) > 1:
        raise ValueError(f"{', '.join(sources)}: some sources are pre-tokenized (input_ids) and others text; "
                         "train on one kind")
    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)


def _is_local(source: str) -> bool:
    """A path that exists, a glob pattern, or one that cannot be a Hub id ("org/name"): those must exist locally."""
    path = Path(source).expanduser()
    if path.exists() or glob.has_magic(source):
        return True
    if source.startswith((".", "/", "~")) or len(path.parts) > 2 or file_builder(path, TEXT_FILE_BUILDERS):
        raise FileNotFoundError(f"training data {source} does not exist")
    return False


def _local_files(source: str) -> dict[str, list[str]]:
    """The data files of a file, a glob pattern or a folder (searched recursively), grouped by builder, sorted."""
    path = Path(source).expanduser()
    if glob.has_magic(source):
        files = sorted(Path(name) for name in glob.glob(str(path), recursive=True) if Path(name).is_file())
        if not files:
            raise FileNotFoundError(f"training data {source}: no file matches")
    else:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    grouped: dict[str, list[str]] = {}
    for file in files:
        builder = file_builder(file, TEXT_FILE_BUILDERS)
        if builder:
            grouped.setdefault(builder, []).append(str(file))
        elif not path.is_dir():
            raise ValueError(f"{file}: unsupported file type; use .jsonl, .jsonl.gz, .json, .parquet, .txt or .txt.gz")
    if not grouped:
        raise ValueError(f"{source} holds no .jsonl, .jsonl.gz, .json, .parquet, .txt or .txt.gz files")
    return grouped


def _load_local(builder, files, text_column, streaming, encoding_errors, text_sample_by):
    options = {}
    if builder == "text":
        options = {"sample_by": text_sample_by, "encoding_errors": encoding_errors}
        text_column = "text"
    elif builder == "json" and encoding_errors == "replace":
        # The json builder applies `encoding_errors` only when it re-encodes from an encoding other than "utf-8";
        # "utf8" is the same codec under another name, so invalid bytes are replaced while it decodes.
        options = {"encoding": "utf8", "encoding_errors": "replace"}
    with naming_a_bad_file(files):
        if builder != "parquet" and encoding_errors == "strict":
            # Checked up front: pyarrow's JSON reader stores invalid UTF-8 without complaint (reading it back fails
            # later, mid-training), and the text reader's error names neither file nor line.
            _raise_on_invalid_utf8(files)
        dataset = datasets.load_dataset(builder, data_files=files, split="train", streaming=streaming, **options)
    return _text_only(dataset, text_column, ", ".join(files))


def _raise_on_invalid_utf8(files: Sequence[str]) -> None:
    """Fail at the first invalid UTF-8 byte of `files`, naming the file and line."""
    for file in files:
        opener = gzip.open if file.endswith(".gz") else open
        with opener(file, "rb") as handle:
            for number, line in enumerate(handle, 1):
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError as error:
                    raise ValueError(
                        f"{file}, line {number}: invalid UTF-8 (byte {line[error.start]:#04x} at byte offset "
                        f"{error.start}); fix the file or pass --encoding_errors replace"
                    ) from None


def _text_only(dataset, text_column: str, source: str):
    """The dataset reduced to its text column, named `text` (or to `input_ids` when it is pre-tokenized and has no
    text column); a missing column is an error that lists the others."""
    columns = dataset.column_names
    if columns is None:  # a stream without declared features: look at its first row
        columns = list(next(iter(dataset)).keys())
    if text_column not in columns and "input_ids" in columns:
        return dataset.select_columns(["input_ids"]).cast_column("input_ids", PACKED_FEATURES["input_ids"])
    if text_column not in columns:
        raise ValueError(
            f"{source} has no column {text_column!r}; its columns are {', '.join(columns)}. "
            "Name the text column with --text_column."
        )
    dataset = dataset.select_columns([text_column])
    return dataset if text_column == "text" else dataset.rename_column(text_column, "text")


def is_packed(corpus: datasets.Dataset | datasets.IterableDataset) -> bool:
    """Whether `load_documents` found pre-tokenized sequences rather than text."""
    return corpus.column_names == ["input_ids"]


def check_packed(sequences: datasets.Dataset | datasets.IterableDataset, max_seq_length: int, vocab_size: int,
                 source: str) -> datasets.Dataset | datasets.IterableDataset:
    """Pre-tokenized sequences as they are, once every row holds exactly `max_seq_length` ids below `vocab_size`.

    A loaded dataset is checked now, in one pass over its Arrow data; a stream is checked row by row as it is read
    (and its first rows now), so a bad row stops training with the row's number.
    """
    if isinstance(sequences, datasets.IterableDataset):
        checked = sequences.map(_check_rows, batched=True, with_indices=True,
                                fn_kwargs={"max_seq_length": max_seq_length, "vocab_size": vocab_size, "source": source})
        next(iter(checked))
        return checked
    offset = 0
    for chunk in sequences.data.column("input_ids").chunks:
        lengths = pc.list_value_length(chunk).to_numpy(zero_copy_only=False)
        ids = pc.list_flatten(chunk).to_numpy(zero_copy_only=False)
        _raise_on_bad_rows(lengths, ids, offset, max_seq_length, vocab_size, source)
        offset += len(chunk)
    if offset == 0:
        raise ValueError(f"{source} holds no sequences")
    return sequences


def _check_rows(batch: dict, indices: list[int], max_seq_length: int, vocab_size: int, source: str) -> dict:
    lengths = np.array([len(row) for row in batch["input_ids"]])
    ids = np.concatenate([np.asarray(row) for row in batch["input_ids"]]) if len(lengths) else np.array([])
    _raise_on_bad_rows(lengths, ids, indices[0] if indices else 0, max_seq_length, vocab_size, source)
    return batch


def _raise_on_bad_rows(lengths: np.ndarray, ids: np.ndarray, offset: int, max_seq_length: int, vocab_size: int,
                       source: str) -> None:
    wrong = np.flatnonzero(lengths != max_seq_length)
    if len(wrong):
        raise ValueError(f"{source}: pre-tokenized row {offset + wrong[0]} has {lengths[wrong[0]]} tokens, not the "
                         f"max_seq_length of {max_seq_length} it must be packed to")
    outside = np.flatnonzero((ids < 0) | (ids >= vocab_size))
    if len(outside):
        row = outside[0] // max_seq_length
        raise ValueError(f"{source}: pre-tokenized row {offset + row} holds the token id {ids[outside[0]]}, outside "
                         f"the model's vocabulary of {vocab_size}")


@dataclass
class PackingStats:
    documents: int  # non-empty documents packed
    empty_documents: int  # skipped
    sequences: int
    tokens: int  # in the packed sequences
    dropped_tokens: int  # the final partial sequence

    def __str__(self) -> str:
        return (
            f"packed {self.documents} documents into {self.sequences} sequences ({self.tokens} tokens); skipped "
            f"{self.empty_documents} empty documents; dropped the last {self.dropped_tokens} tokens (a partial "
            "sequence)"
        )


def _tokenize(batch: dict, tokenizer: PreTrainedTokenizerBase) -> dict:
    """`[CLS] tokens [SEP]` for every non-empty document; empty or blank documents are left out."""
    texts = [text for text in batch["text"] if text and not text.isspace()]
    ids = tokenizer(texts, return_attention_mask=False, return_token_type_ids=False, verbose=False)["input_ids"] \
        if texts else []
    return {"input_ids": ids, "length": [len(row) for row in ids]}


def _too_small(tokens: int, documents: int, empty: int, max_seq_length: int) -> ValueError:
    return ValueError(
        f"the corpus holds {tokens} tokens in {documents} non-empty documents ({empty} empty documents skipped), fewer "
        f"than one packed sequence of {max_seq_length} tokens; add text or lower max_seq_length"
    )


def pack_documents(
    documents: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    max_seq_length: int,
    *,
    seed: int | None = None,
    num_proc: int | None = None,
    batch_size: int = TOKENIZE_BATCH,
) -> tuple[datasets.Dataset, PackingStats]:
    """Tokenize and pack a map-style corpus (see the module docstring). `seed=None` keeps the documents' order.

    Both steps are `Dataset.map` calls (`batch_size` documents at a time), cached by datasets and parallel with
    `num_proc`: each sequence is cut from its position in the concatenated token stream, so no state passes between
    batches or workers.
    """
    if seed is not None:
        documents = documents.shuffle(seed=seed)
    tokenized = documents.map(
        _tokenize, batched=True, batch_size=batch_size, fn_kwargs={"tokenizer": tokenizer},
        remove_columns=documents.column_names, num_proc=num_proc, desc="Tokenizing",
    )
    lengths = np.asarray(tokenized.with_format("numpy")["length"], dtype=np.int64)
    starts = np.concatenate(([0], np.cumsum(lengths)))  # position of each document in the token stream
    total = int(starts[-1])
    sequences = total // max_seq_length
    empty = len(documents) - len(tokenized)
    if sequences == 0:
        raise _too_small(total, len(tokenized), empty, max_seq_length)
    fingerprint = f"{tokenized._fingerprint}-pack-{max_seq_length}-{batch_size}"
    fingerprint = hashlib.sha256(fingerprint.encode()).hexdigest()[:16]
    packed = tokenized.map(
        _cut_sequences, batched=True, batch_size=batch_size, with_indices=True,
        fn_kwargs={"source": tokenized, "starts": starts, "max_seq_length": max_seq_length},
        remove_columns=tokenized.column_names, features=PACKED_FEATURES, num_proc=num_proc,
        new_fingerprint=fingerprint, desc="Packing",
    )
    stats = PackingStats(len(tokenized), empty, sequences, sequences * max_seq_length, total % max_seq_length)
    return packed, stats


def _cut_sequences(batch: dict, indices: list[int], source: datasets.Dataset, starts: np.ndarray,
                   max_seq_length: int) -> dict:
    """The sequences that begin inside this batch of documents, reading ahead into later documents where a sequence
    runs past the batch."""
    first, last = indices[0], indices[-1] + 1
    begin, end = int(starts[first]), int(starts[last])
    first_sequence = -(-begin // max_seq_length)
    stop_sequence = min(-(-end // max_seq_length), int(starts[-1]) // max_seq_length)
    if first_sequence >= stop_sequence:
        return {"input_ids": []}
    needed = int(np.searchsorted(starts, stop_sequence * max_seq_length, side="left"))
    pieces = list(batch["input_ids"])
    if needed > last:
        pieces += source[last:needed]["input_ids"]
    tokens = np.concatenate(pieces)
    return {
        "input_ids": [
            tokens[k * max_seq_length - begin: (k + 1) * max_seq_length - begin]
            for k in range(first_sequence, stop_sequence)
        ]
    }


def pack_document_stream(
    documents: datasets.IterableDataset,
    tokenizer: PreTrainedTokenizerBase,
    max_seq_length: int,
    *,
    seed: int | None = None,
    shuffle_buffer: int = 10_000,
) -> datasets.IterableDataset:
    """Pack a streaming corpus on the fly, as `pack_documents` does (documents shuffled within a buffer of
    `shuffle_buffer` when `seed` is set). The counts are logged when the stream ends."""
    if seed is not None:
        documents = documents.shuffle(seed=seed, buffer_size=shuffle_buffer)
    return datasets.IterableDataset.from_generator(
        _packed_stream, features=PACKED_FEATURES,
        gen_kwargs={"documents": documents, "tokenizer": tokenizer, "max_seq_length": max_seq_length},
    )


def _packed_stream(documents, tokenizer, max_seq_length: int) -> Iterator[dict]:
    stats = PackingStats(0, 0, 0, 0, 0)
    carry: list[int] = []
    for batch in documents.iter(batch_size=TOKENIZE_BATCH):
        encoded = _tokenize(batch, tokenizer)
        stats.documents += len(encoded["input_ids"])
        stats.empty_documents += len(batch["text"]) - len(encoded["input_ids"])
        for ids in encoded["input_ids"]:
            tokens = carry + ids
            complete = len(tokens) - len(tokens) % max_seq_length
            for start in range(0, complete, max_seq_length):
                yield {"input_ids": tokens[start:start + max_seq_length]}
            stats.sequences += complete // max_seq_length
            carry = tokens[complete:]
    if stats.sequences == 0:
        raise _too_small(len(carry), stats.documents, stats.empty_documents, max_seq_length)
    stats.tokens, stats.dropped_tokens = stats.sequences * max_seq_length, len(carry)
    logger.info("End of the corpus stream: %s", stats)


@dataclass
class MaskingCollator(DataCollatorForLanguageModeling):
    """`DataCollatorForLanguageModeling` whose masks are a function of (seed, epoch, sequence): see the module
    docstring. Special tokens ([CLS], [SEP], [PAD], ...) are never masked. `MaskingEpochCallback` (in
    `nomic_bert_hf.training.runs`) advances `epoch` so that every epoch masks differently."""

    seed: int = 0
    epoch: int = 0

    def __post_init__(self):
        super().__post_init__()
        if not self.mlm or self.whole_word_mask or self.return_tensors != "pt":
            raise ValueError("MaskingCollator supports token-level masking (mlm=True) with PyTorch tensors only")
        self.special_ids = torch.tensor(sorted(set(self.tokenizer.all_special_ids)))

    def torch_mask_tokens(self, inputs: torch.Tensor, special_tokens_mask=None, offset_mapping=None):
        if special_tokens_mask is None:
            special_tokens_mask = torch.isin(inputs, self.special_ids)
        masked, labels = [], []
        for row, special in zip(inputs, special_tokens_mask.bool()):
            self.generator = torch.Generator().manual_seed(self.sequence_seed(row))
            row_inputs, row_labels = super().torch_mask_tokens(row[None].clone(), special[None])
            masked.append(row_inputs)
            labels.append(row_labels)
        return torch.cat(masked), torch.cat(labels)

    def sequence_seed(self, row: torch.Tensor) -> int:
        key = f"{self.seed}:{self.epoch}".encode()
        digest = hashlib.blake2b(row.to(torch.int64).numpy().tobytes(), digest_size=8, key=key).digest()
        return int.from_bytes(digest, "little")
