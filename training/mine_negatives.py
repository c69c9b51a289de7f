"""Mine hard negatives for a pair dataset with an existing embedder (sentence-transformers' `mine_hard_negatives`).

    python training/mine_negatives.py --model_name_or_path thenlper/gte-base \
        --dataset training/data/default/msmarco.jsonl.gz --output_file runs/msmarco-negatives.jsonl.gz

Writes the (query, document) pairs as JSON lines with a `negatives` list: the documents of the dataset that the
embedder ranks highest for each query, its own document excluded (Nomic mined the top 20 with gte-base; stage 3
samples 7 of them per query). The resolved settings go to `{output_file}.config.yaml`.
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from nomic_bert_hf.data.mining import load_judge, mine_negatives
from nomic_bert_hf.data.pair_data import PairSource, load_pairs, write_jsonl
from nomic_bert_hf.utils.cli import run_command
from nomic_bert_hf.utils.compute import choose_dtype, dtype_name
from nomic_bert_hf.utils.configs import config_dict, parse_config


@dataclass
class MiningArguments:
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "embedder that ranks the candidates (sentence-transformers folder or Hub id)"}
    )
    dataset: str | None = field(
        default=None, metadata={"help": "pairs: .jsonl/.jsonl.gz/.parquet file, folder or Hub dataset id"}
    )
    output_file: str | None = field(
        default=None, metadata={"help": "where the pairs with negatives go (.jsonl or .jsonl.gz)"}
    )
    split: str = "train"
    data_mirror: str | None = field(
        default=None, metadata={"help": "folder with a copy of every Hub dataset at <data_mirror>/<org>/<name>"}
    )
    query_column: str = "query"
    document_column: str = "document"
    num_negatives: int = 20
    range_min: int = field(
        default=0, metadata={"help": "skip this many top-ranked candidates (likely unlabelled positives)"}
    )
    range_max: int | None = field(default=None, metadata={"help": "consider only this many top-ranked candidates"})
    max_score: float | None = field(default=None, metadata={"help": "skip candidates more similar than this"})
    relative_margin: float | None = field(
        default=None, metadata={"help": "e.g. 0.05: negatives at least 5% below the positive"}
    )
    query_prompt: str | None = field(default=None, metadata={"help": "prefix for queries, if the embedder wants one"})
    document_prompt: str | None = None
    batch_size: int = 32
    max_seq_length: int | None = field(
        default=None, metadata={"help": "truncate texts for the embedder (default: its own limit)"}
    )
    max_rows: int | None = field(default=None, metadata={"help": "mine a random sample of this many pairs"})
    seed: int = field(default=0, metadata={"help": "seed of that sample"})
    dtype: str = field(default="auto", metadata={
        "help": "auto | float32 | bfloat16: what the embedder computes in (auto: bf16 on AMX / AVX-512 BF16)"})
    trust_remote_code: bool = False
    overwrite: bool = False

    def __post_init__(self):  # required, but settable from a YAML config too (argparse ignores defaults of required flags)
        missing = [name for name in ("model_name_or_path", "dataset", "output_file") if not getattr(self, name)]
        if missing:
            raise ValueError(f"missing required settings: {missing}")


def main(args=None):
    (mining_args,) = parse_config([MiningArguments], args)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)

    # 1. Load the embedder that judges similarity
    dtype = choose_dtype(mining_args.dtype)
    mining_args.dtype = dtype_name(dtype)  # recorded as resolved: the ranking, and so the output, depends on it
    model = load_judge(mining_args.model_name_or_path, dtype=dtype, trust_remote_code=mining_args.trust_remote_code,
                       max_seq_length=mining_args.max_seq_length)

    # 2. Load the pairs
    source = PairSource(
        name=Path(mining_args.dataset).name, path=mining_args.dataset, split=mining_args.split,
        query_column=mining_args.query_column, document_column=mining_args.document_column,
        mirror=mining_args.data_mirror,
    )
    pairs = load_pairs(source)
    if mining_args.max_rows is not None and len(pairs) > mining_args.max_rows:
        pairs = pairs.shuffle(seed=mining_args.seed).select(range(mining_args.max_rows))

    # 3. Mine: the top-ranked other documents of the dataset for every query
    mined = mine_negatives(
        pairs, model, num_negatives=mining_args.num_negatives, range_min=mining_args.range_min,
        range_max=mining_args.range_max, max_score=mining_args.max_score,
        relative_margin=mining_args.relative_margin, query_prompt=mining_args.query_prompt,
        document_prompt=mining_args.document_prompt, batch_size=mining_args.batch_size,
    )

    # 4. Save the pairs with their negatives, and the settings next to them
    output = write_jsonl(mined, mining_args.output_file, overwrite=mining_args.overwrite)
    Path(f"{output}.config.yaml").write_text(yaml.safe_dump(config_dict(mining_args), sort_keys=True))
    logging.getLogger(__name__).info(f"wrote {len(mined)} pairs with {mining_args.num_negatives} negatives to {output}")
    return output


if __name__ == "__main__":
    run_command(main)
