"""Stage 2's data pipeline alone: pairs/s delivered to the loss (read, prefixed, tokenized to 2048 tokens, batched),
streamed (`SingleSourceStream`) and map-style (memory-mapped, `SingleSourceBatchSampler`), against the rate at which
the published recipe consumes pairs.

    python benchmarks/pair_data.py --rows 200000 --sources 8 --workers 0 1 2

1. A local copy laid out as on the Hub (`data/<split>-NNNNN-of-00004.parquet` and a README with the splits) of
   `--rows` pairs in `--sources` splits, of real text from the default corpus at the size of Nomic's pairs.
2. For each path and data-loader worker count, the training data loader exactly as `training/contrastive.py` builds it
   (sentence-transformers' trainer, its collator and the task prefixes, per-device batch `--batch_size`, one process)
   is read for `--batches` batches after one warm-up batch; pairs/s is the median over `--repeats` passes.
3. The table's baseline is what one GPU process of the recipe consumes: Nomic trained 234,553,344 pairs in about
   3.5 days on 8 GPUs (paper, appendix A), 97 pairs/s per process. The data pipeline must never be the bottleneck,
   i.e. deliver more than that per process.

Output: the markdown table on stdout and `--output` (JSON).
"""

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import datasets
import torch
import yaml

from nomic_bert_hf import NomicBertConfig, NomicBertModel
from nomic_bert_hf.data.corpus import Corpus
from nomic_bert_hf.data.hub_data import inspect_split
from nomic_bert_hf.data.pair_data import pair_columns
from nomic_bert_hf.data.pair_stream import SingleSourceStream, StreamSource
from nomic_bert_hf.data.sampler import single_source_sampler
from nomic_bert_hf.model.embedder import build_embedder
from nomic_bert_hf.model.tokenization import bert_uncased_tokenizer, save_tokenizer
from nomic_bert_hf.tasks import column_prompts

ROOT = Path(__file__).resolve().parents[1]
RECIPE_PAIRS, RECIPE_SECONDS, RECIPE_GPUS = 234_553_344, 3.5 * 86_400, 8
TASKS = ("search", "clustering", "classification")


def build_copy(folder: Path, rows: int, sources: int, files: int = 4, seed: int = 0) -> Path:
    """The local copy (step 1): the corpus's stage-2 queries, each with a document cut from the corpus's MLM text at
    a random length of 200-3800 characters (about 2 KB a pair on average, as in Nomic's data: 500 GB for 239M)."""
    corpus = Corpus.load(ROOT / "training" / "data" / "default")
    queries = datasets.concatenate_datasets([
        datasets.load_dataset("json", data_files=corpus.data_files(name), split="train").select_columns(["query"])
        for name in corpus.pair_datasets(stage=2)
    ])["query"]
    text = " ".join(datasets.load_dataset("json", data_files=corpus.data_files("mlm"), split="train")["text"])
    rng = random.Random(seed)
    per_source = rows // sources
    (folder / "data").mkdir(parents=True)
    for index in range(sources):
        starts = [rng.randrange(len(text) - 4000) for _ in range(per_source)]
        split = datasets.Dataset.from_dict({
            "query": [rng.choice(queries) for _ in range(per_source)],
            "document": [text[start:start + rng.randint(200, 3800)] for start in starts],
        })
        for shard in range(files):
            split.shard(files, shard, contiguous=True).to_parquet(
                folder / "data" / f"source_{index}-{shard:05d}-of-{files:05d}.parquet")
    header = {"configs": [{"config_name": "default", "data_files": [
        {"split": f"source_{index}", "path": f"data/source_{index}-*"} for index in range(sources)]}]}
    (folder / "README.md").write_text(f"---\n{yaml.safe_dump(header)}---\n")
    return folder


def trainer_loader(model, train_dataset, prompts, batch_size: int, workers: int, output_dir: str, sampler=None):
    """The training data loader that sentence-transformers' trainer builds for `train_dataset` (step 2)."""
    from sentence_transformers import (
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import (
        MultipleNegativesRankingLoss,
    )

    args = SentenceTransformerTrainingArguments(
        output_dir=output_dir, per_device_train_batch_size=batch_size, dataloader_num_workers=workers,
        dataloader_drop_last=True, use_cpu=True, report_to="none", max_steps=1, prompts=prompts,
        accelerator_config={"dispatch_batches": False},
    )
    if sampler is not None:
        args.multi_dataset_batch_sampler = sampler
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train_dataset,
                                         loss=MultipleNegativesRankingLoss(model))
    return trainer.get_train_dataloader()


def pairs_per_second(loader, batches: int) -> float:
    iterator = iter(loader)
    next(iterator)  # warm-up: workers start, files open
    start, pairs = time.perf_counter(), 0
    for _ in range(batches):
        pairs += len(next(iterator)["query_input_ids"])
    return pairs / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--sources", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch_size", "--batch-size", type=int, default=256)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--max_seq_length", "--max-seq-length", type=int, default=2048)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "pair_data.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    baseline = RECIPE_PAIRS / RECIPE_SECONDS / RECIPE_GPUS

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        copy = build_copy(tmp / "copy", args.rows, args.sources)
        size = sum(path.stat().st_size for path in (copy / "data").iterdir())
        encoder = tmp / "encoder"
        NomicBertModel(NomicBertConfig(n_embd=32, n_layer=1, n_head=2, n_inner=64)).save_pretrained(encoder)
        save_tokenizer(bert_uncased_tokenizer(), encoder)
        model = build_embedder(encoder)
        model.max_seq_length = args.max_seq_length
        splits = {f"source_{i}": inspect_split(str(copy), f"source_{i}") for i in range(args.sources)}
        tasks = {name: TASKS[i % len(TASKS)] for i, name in enumerate(splits)}
        prompts = {name: column_prompts(tasks[name], pair_columns()) for name in splits}

        start = time.perf_counter()
        loaded = datasets.DatasetDict({name: datasets.load_dataset(str(copy), split=name) for name in splits})
        preparation = time.perf_counter() - start
        results = []
        for workers in args.workers:
            stream = SingleSourceStream(
                [StreamSource(name, split, "query", "document", None, prompts[name]) for name, split in splits.items()],
                batch_size=args.batch_size, num_workers=workers, seed=0)
            paths = {
                "streaming": lambda: trainer_loader(model, stream.dataset(), stream.prompts(), args.batch_size, workers,
                                                    str(tmp / "out")),
                "map-style": lambda: trainer_loader(model, loaded, prompts, args.batch_size, workers, str(tmp / "out"),
                                                    sampler=single_source_sampler(1)),
            }
            for path, loader in paths.items():
                rates = [pairs_per_second(loader(), args.batches) for _ in range(args.repeats)]
                results.append({"path": path, "workers": workers, "pairs_per_second": statistics.median(rates),
                                "repeats": rates})

    lines = [f"Local copy: {args.rows:,} pairs in {args.sources} splits of 4 parquet files ({size / 2**20:,.0f} MiB); "
             f"map-style preparation (parquet to memory-mapped Arrow, once): {preparation:.1f} s.",
             f"Baseline: the published recipe consumes {baseline:.0f} pairs/s per GPU process "
             f"({RECIPE_PAIRS:,} pairs in 3.5 days on {RECIPE_GPUS} GPUs).", "",
             "| path | data-loader workers | pairs/s (median) | / recipe's need per process |", "|---|---|---|---|"]
    for result in results:
        lines.append(f"| {result['path']} | {result['workers']} | {result['pairs_per_second']:,.0f} | "
                     f"{result['pairs_per_second'] / baseline:.1f}x |")
    print("\n".join(lines))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"settings": {key: str(value) for key, value in vars(args).items() if key != "output"},
                                       "copy_bytes": size, "preparation_seconds": preparation,
                                       "baseline_pairs_per_second": baseline, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
