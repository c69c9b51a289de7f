"""Consistency filtering of a pair dataset (Nomic Embed, section 4.2).

A pair is kept only if an existing embedder ranks its document among the query's top k when it competes with a
random sample of the dataset's documents.

    python training/filter_pairs.py --dataset pairs.jsonl.gz --output_file pairs-filtered.jsonl.gz

Nomic judged with gte-base (the default here), top 2 of a sample of 1M documents. The kept pairs are written as JSON
lines; the resolved settings go to `{output_file}.config.yaml`.
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from nomic_bert_hf.data.mining import consistency_filter, load_judge
from nomic_bert_hf.data.pair_data import PairSource, load_pairs, write_jsonl
from nomic_bert_hf.utils.cli import run_command
from nomic_bert_hf.utils.compute import choose_dtype, dtype_name
from nomic_bert_hf.utils.configs import config_dict, parse_config


@dataclass
class FilterArguments:
    dataset: str | None = field(
        default=None, metadata={"help": "pairs: .jsonl/.jsonl.gz/.parquet file, folder or Hub dataset id"}
    )
    output_file: str | None = field(default=None, metadata={"help": "where the kept pairs go (.jsonl or .jsonl.gz)"})
    model_name_or_path: str = field(default="thenlper/gte-base", metadata={"help": "the judging embedder"})
    split: str = "train"
    query_column: str = "query"
    document_column: str = "document"
    top_k: int = field(default=2, metadata={"help": "keep a pair if its document ranks in the query's top k"})
    sample_size: int = field(default=1_000_000, metadata={"help": "documents drawn from the dataset to compete"})
    query_prompt: str | None = field(default=None, metadata={"help": "prefix for queries, if the embedder wants one"})
    document_prompt: str | None = None
    batch_size: int = 32
    max_seq_length: int | None = field(
        default=None, metadata={"help": "truncate texts for the embedder (default: its own limit)"}
    )
    seed: int = 0
    dtype: str = field(default="auto", metadata={
        "help": "auto | float32 | bfloat16: what the embedder computes in (auto: bf16 on AMX / AVX-512 BF16)"})
    trust_remote_code: bool = False
    overwrite: bool = False

    def __post_init__(self):  # required, but settable from a YAML config too (argparse ignores defaults of required flags)
        missing = [name for name in ("dataset", "output_file") if not getattr(self, name)]
        if missing:
            raise ValueError(f"missing required settings: {missing}")


def main(args=None):
    (filter_args,) = parse_config([FilterArguments], args)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)

    # 1. Load the judging embedder
    dtype = choose_dtype(filter_args.dtype)
    filter_args.dtype = dtype_name(dtype)  # recorded as resolved: the ranking, and so the output, depends on it
    model = load_judge(filter_args.model_name_or_path, dtype=dtype, trust_remote_code=filter_args.trust_remote_code,
                       max_seq_length=filter_args.max_seq_length)

    # 2. Load the pairs
    source = PairSource(
        name=Path(filter_args.dataset).name, path=filter_args.dataset, split=filter_args.split,
        query_column=filter_args.query_column, document_column=filter_args.document_column,
    )
    pairs = load_pairs(source)

    # 3. Keep the pairs whose document the embedder ranks in the query's top k among the sample
    kept = consistency_filter(
        pairs, model, top_k=filter_args.top_k, sample_size=filter_args.sample_size,
        query_prompt=filter_args.query_prompt, document_prompt=filter_args.document_prompt,
        batch_size=filter_args.batch_size, seed=filter_args.seed,
    )

    # 4. Save the kept pairs, and the settings next to them
    output = write_jsonl(kept, filter_args.output_file, overwrite=filter_args.overwrite)
    Path(f"{output}.config.yaml").write_text(yaml.safe_dump(config_dict(filter_args), sort_keys=True))
    logging.getLogger(__name__).info(f"kept {len(kept)} of {len(pairs)} pairs in {output}")
    return output


if __name__ == "__main__":
    run_command(main)
