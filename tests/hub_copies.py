"""Local copies of the datasets Nomic released on the Hub, laid out as there (README.md with `dataset_info` and
`configs`, parquet files under `data/<split>-NNNNN-of-MMMMM.parquet`), with the same split names and columns and a few
hundred rows of real text per split (the standard library's docstrings, `docstrings.docstring_pairs`).

The split names come from the published configs themselves, so a copy always matches what those configs read.
"""

import shutil
from pathlib import Path

import datasets
import yaml
from docstrings import docstring_pairs

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "training" / "configs"
UNSUPERVISED = "nomic-ai/nomic-embed-unsupervised-data"
SUPERVISED = "nomic-ai/nomic-embed-supervised-data"
PRETOKENIZED = "nomic-ai/nomic-bert-pretokenized-2048-wiki-2023"


def config_splits(config: str) -> dict[str, str]:
    """{source name: split} of a published contrastive config's train_datasets."""
    entries = yaml.safe_load((CONFIGS / "contrastive" / config).read_text())["train_datasets"]
    return {name: entry["split"] for name, entry in entries.items()}


def write_hub_dataset(mirror: Path, repo_id: str, splits: dict[str, datasets.Dataset], files_per_split: int = 2) -> Path:
    """`repo_id`'s copy under `mirror` as `push_to_hub` lays it out: one parquet file per shard, and a README whose
    YAML header declares the features, the splits' rows and the data files of each split."""
    folder = mirror / repo_id
    (folder / "data").mkdir(parents=True)
    for split, rows in splits.items():
        for shard in range(files_per_split):
            part = rows.shard(files_per_split, shard, contiguous=True)
            part.to_parquet(folder / "data" / f"{split}-{shard:05d}-of-{files_per_split:05d}.parquet")
    info = datasets.DatasetInfo(features=next(iter(splits.values())).features)
    header = {
        "dataset_info": {**info._to_yaml_dict(),
                         "splits": [{"name": split, "num_bytes": rows.data.nbytes, "num_examples": len(rows)}
                                    for split, rows in splits.items()]},
        "configs": [{"config_name": "default",
                     "data_files": [{"split": split, "path": f"data/{split}-*"} for split in splits]}],
    }
    (folder / "README.md").write_text(f"---\n{yaml.safe_dump(header, sort_keys=False)}---\n# {repo_id} (test copy)\n")
    return folder


def build_mirror(mirror: Path, tokenizer, rows_per_split: int = 200, sequence_length: int = 2048,
                 sequences: int = 48) -> Path:
    """The three repositories under `mirror`: stage 1's packed sequences, stage 2's pairs, stage 3's pairs with their
    `negative` lists."""
    pairs = [row for kind in docstring_pairs().values() for row in kind]
    unsupervised = sorted(set(config_splits("nomic-embed-text-v1-unsupervised.yaml").values()))
    write_hub_dataset(mirror, UNSUPERVISED, {
        split: datasets.Dataset.from_list([
            {"query": row["query"], "document": row["document"], "dataset": split, "shard": 0}
            for row in _take(pairs, index * 37, rows_per_split)
        ]) for index, split in enumerate(unsupervised)
    })
    supervised = sorted(set(config_splits("nomic-embed-text-v1.5.yaml").values()))
    write_hub_dataset(mirror, SUPERVISED, {
        split: datasets.Dataset.from_list([
            {"query": row["query"], "document": row["document"], "negative": row["negatives"], "dataset": split}
            for row in _take([row for row in pairs if len(set(row["negatives"])) >= 7], index * 53, rows_per_split)
        ]) for index, split in enumerate(supervised)
    })
    write_hub_dataset(mirror, PRETOKENIZED, {"train": packed_sequences(pairs, tokenizer, sequence_length, sequences)},
                      files_per_split=2)
    return mirror


def packed_sequences(pairs: list[dict], tokenizer, length: int, count: int) -> datasets.Dataset:
    """`count` rows of `[CLS] text [SEP] [CLS] ...` cut into `length` tokens, with the four columns of Nomic's
    pre-tokenized Wikipedia (input_ids, token_type_ids, attention_mask, special_tokens_mask)."""
    stream, index = [], 0
    while len(stream) < length * count:  # the documents again from the start when they run out
        stream += tokenizer(pairs[index % len(pairs)]["document"])["input_ids"]
        index += 1
    rows = [stream[i * length:(i + 1) * length] for i in range(count)]
    special = set(tokenizer.all_special_ids)
    features = datasets.Features({
        "input_ids": datasets.List(datasets.Value("int32")),
        "token_type_ids": datasets.List(datasets.Value("int8")),
        "attention_mask": datasets.List(datasets.Value("int8")),
        "special_tokens_mask": datasets.List(datasets.Value("int8")),
    })
    return datasets.Dataset.from_dict({
        "input_ids": rows,
        "token_type_ids": [[0] * length for _ in rows],
        "attention_mask": [[1] * length for _ in rows],
        "special_tokens_mask": [[int(token in special) for token in row] for row in rows],
    }, features=features)


def _take(rows: list, start: int, count: int) -> list:
    return [rows[(start + i) % len(rows)] for i in range(count)]


def cache_as_hub_model(folder: Path, repo_id: str) -> None:
    """`folder` in the Hub cache as a download of model `repo_id` leaves it (snapshot and `refs/main`): offline runs
    resolve the id from there."""
    from huggingface_hub.constants import HF_HUB_CACHE

    repo = Path(HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}"
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(folder, repo / "snapshots" / commit, dirs_exist_ok=True)
