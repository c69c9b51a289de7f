"""Contrastive training throughput and peak memory against the global batch size: GradCache
(`CachedMultipleNegativesRankingLoss`, the configs' loss) against plain `MultipleNegativesRankingLoss` (the baseline),
measured in the same run.

    OMP_NUM_THREADS=1 python benchmarks/contrastive_memory.py --batch_sizes 256 512 1024 2048 4096 \
        --output benchmarks/results/contrastive_memory.json

Each (loss, batch size) runs in a fresh process on a tiny NomicBERT embedder (hidden 32, 2 layers, the bert-base
vocabulary) with real (query, document) pairs (Python standard-library docstrings: summary line -> rest), texts cut
at 64 tokens, temperature 0.02, AdamW. It times `--steps` optimizer steps after one warm-up step and reports the
median pairs/s, and the peak resident memory of the training steps above the memory just before them (activations,
gradients, optimizer state: what grows with the batch; the model, data and libraries are the same for every run).
Linux only (the peak is the kernel's VmHWM, reset through /proc/self/clear_refs).
"""

import argparse
import ast
import json
import re
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

LOSSES = {"gradcache": "CachedMultipleNegativesRankingLoss (mini-batch 64)", "plain": "MultipleNegativesRankingLoss"}


def docstring_pairs() -> list[tuple[str, str]]:
    pairs = []
    for module in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8", errors="replace"))):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and (doc := ast.get_docstring(node)):
                summary, _, body = doc.partition("\n\n")
                if len(summary.split()) >= 4 and len(body.split()) >= 10:
                    pairs.append((" ".join(summary.split()), " ".join(body.split())))
    return pairs


def memory_mib(field: str) -> float:
    """VmRSS (resident now) or VmHWM (peak resident since the last reset) of this process."""
    return int(re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) / 1024


def reset_peak_memory() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def worker(loss_name: str, batch_size: int, steps: int, mini_batch_size: int) -> dict:
    """One configuration, in this (fresh) process."""
    import torch
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        MultipleNegativesRankingLoss,
    )

    from nomic_bert_hf import NomicBertConfig, NomicBertModel
    from nomic_bert_hf.model.embedder import build_embedder
    from nomic_bert_hf.model.tokenization import bert_uncased_tokenizer, save_tokenizer

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        NomicBertModel(NomicBertConfig(n_embd=32, n_layer=2, n_head=4, n_inner=64)).save_pretrained(folder)
        save_tokenizer(bert_uncased_tokenizer(), folder)
        model = build_embedder(folder)
    model.max_seq_length = 64
    if loss_name == "gradcache":
        loss = CachedMultipleNegativesRankingLoss(model, scale=50.0, mini_batch_size=mini_batch_size)
    else:
        loss = MultipleNegativesRankingLoss(model, scale=50.0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    pairs = docstring_pairs()
    batches = []
    for step in range(steps + 1):
        rows = [pairs[(step * batch_size + i) % len(pairs)] for i in range(batch_size)]
        queries = model.preprocess([query for query, _ in rows], prompt="search_query: ")
        documents = model.preprocess([document for _, document in rows], prompt="search_document: ")
        batches.append([queries, documents])
    before = memory_mib("VmRSS")
    reset_peak_memory()
    seconds = []
    for features in batches:
        start = time.perf_counter()
        optimizer.zero_grad()
        loss(features, None).backward()
        optimizer.step()
        seconds.append(time.perf_counter() - start)
    return {
        "loss": loss_name,
        "global_batch_size": batch_size,
        "pairs_per_second": batch_size / statistics.median(seconds[1:]),
        "step_seconds": seconds[1:],
        "rss_before_mib": before,
        "peak_over_start_mib": memory_mib("VmHWM") - before,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch_sizes", "--batch-sizes", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096])
    parser.add_argument("--steps", type=int, default=3,
                        help="timed optimizer steps per configuration (after a warm-up)")
    parser.add_argument("--mini_batch_size", "--mini-batch-size", type=int, default=64)
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/contrastive_memory.json"))
    parser.add_argument("--worker", nargs=2, metavar=("LOSS", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]), args.steps, args.mini_batch_size)))
        return None

    results = []
    for batch_size in args.batch_sizes:
        for loss_name in LOSSES:
            command = [sys.executable, __file__, "--worker", loss_name, str(batch_size), "--steps", str(args.steps),
                       "--mini_batch_size", str(args.mini_batch_size)]
            output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            results.append(json.loads(output.strip().splitlines()[-1]))
            print(f"done: {loss_name} {batch_size}", file=sys.stderr)
    by_key = {(r["loss"], r["global_batch_size"]): r for r in results}
    print(
        "| global batch | GradCache pairs/s | plain pairs/s | GradCache / plain speed "
        "| GradCache peak MiB | plain peak MiB | GradCache / plain memory |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for batch_size in args.batch_sizes:
        cached, plain = by_key[("gradcache", batch_size)], by_key[("plain", batch_size)]
        print(
            f"| {batch_size} | {cached['pairs_per_second']:.0f} | {plain['pairs_per_second']:.0f} "
            f"| {cached['pairs_per_second'] / plain['pairs_per_second']:.2f} | {cached['peak_over_start_mib']:.0f} "
            f"| {plain['peak_over_start_mib']:.0f} | {cached['peak_over_start_mib'] / plain['peak_over_start_mib']:.2f} |"
        )
    args.output.write_text(json.dumps({"losses": LOSSES, "steps": args.steps, "results": results}, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
