"""Serving on CPU: PyTorch fp32 (and bf16, `--dtype`) against the exported ONNX graphs (fp32, optimised, int8),
through sentence-transformers.

    python benchmarks/serving.py                                  # the 137M architecture and ./nomic-embed-text
    python benchmarks/serving.py --embedder runs/nomic-embed-text/finetune/final --sections speed

1. speed: tokens/s of `encode` for each backend, on short texts (16-256 tokens) and long ones (1,024-4,096), for the
   137M architecture (random weights: speed only) and the pipeline's embedder; the ratio is to PyTorch fp32 in the
   same run. Backends take turns within each repeat; medians of `--repeats`.
2. longest: one 8,192-token text through the 137M architecture, each backend in its own process: seconds and the
   process's peak resident memory (onnxruntime materialises the attention scores; PyTorch's CPU kernel does not).
3. quality: nDCG@10 of the pipeline's embedder on the default corpus's retrieval tasks for each backend, through
   mteb, and the difference to PyTorch fp32.
Writes benchmarks/results/serving.{json,md}.
"""

import argparse
import gc
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mteb
import onnxruntime
import torch
from inference import peak_rss_growth, spread_sample, write_report
from sentence_transformers import SentenceTransformer

from nomic_bert_hf import NomicBertConfig, NomicBertModel
from nomic_bert_hf.data.corpus import Corpus
from nomic_bert_hf.evaluation import load_local_task
from nomic_bert_hf.model.embedder import build_embedder, save_embedder
from nomic_bert_hf.model.tokenization import bert_uncased_tokenizer, save_tokenizer
from nomic_bert_hf.serving.onnx_embedder import load_onnx_embedder
from nomic_bert_hf.serving.onnx_export import export_onnx
from nomic_bert_hf.utils.compute import DTYPE_CHOICES, DTYPES, choose_dtype, describe, dtype_name
from nomic_bert_hf.utils.remote_code import allow_remote_code

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = {  # name -> the PyTorch path's dtype, or the ONNX file
    "PyTorch fp32": "float32",
    "ONNX fp32": "onnx/model.onnx",
    "ONNX optimised": "onnx/model_optimized.onnx",
    "ONNX int8": "onnx/model_qint8.onnx",
}
BASELINE = "PyTorch fp32"
SECTIONS = ("speed", "longest", "quality")
WORKLOADS = {"short": (64, 16, 256, 32), "long": (4, 1024, 4096, 4)}  # texts, shortest, longest, batch size


def load(folder: Path, backend: str) -> SentenceTransformer:
    if backend in DTYPES:
        return SentenceTransformer(str(folder), device="cpu", trust_remote_code=allow_remote_code(folder),
                                   model_kwargs={"dtype": DTYPES[backend]})
    return load_onnx_embedder(folder, backend)


def speed(models: dict[str, SentenceTransformer], texts: list[str], batch_size: int, repeats: int) -> dict:
    """encode tokens/s of each backend on `texts` (no prompt; every text under the 8192-token limit)."""
    tokens = int(next(iter(models.values())).preprocess(texts)["attention_mask"].sum())
    seconds = {name: [] for name in models}
    for model in models.values():
        model.encode(texts[:2])  # warm-up
    for _ in range(repeats):
        for name, model in models.items():
            start = time.perf_counter()
            model.encode(texts, batch_size=batch_size)
            seconds[name].append(time.perf_counter() - start)
    rates = {name: tokens / statistics.median(values) for name, values in seconds.items()}
    return {name: {"tokens": tokens, "seconds": seconds[name], "tokens_per_s": rate,
                   "ratio": rate / rates[BASELINE]} for name, rate in rates.items()}


def longest_text(folder: Path, backend: str) -> dict:
    """Seconds and peak resident-memory growth of one 8192-token encode, the first call in this fresh process."""
    model = load(folder, backend)
    text = " ".join(["word"] * 9000)  # one token per word: cut at 8192 with the special tokens
    start = time.perf_counter()
    growth = peak_rss_growth(lambda: model.encode([text]))
    return {"seconds": time.perf_counter() - start, "peak_rss_growth_gib": growth / 2**30}


def retrieval_scores(models: dict[str, SentenceTransformer]) -> dict[str, dict[str, float]]:
    """nDCG@10 of each backend on the default corpus's retrieval tasks (mteb, the model's own prompts)."""
    corpus = Corpus.load(ROOT / "training" / "data" / "default")
    tasks = [load_local_task(corpus.root / "eval" / name) for name in corpus.eval_tasks("retrieval")
             if name != "long_documents"]
    scores = {}
    for name, model in models.items():
        model.max_seq_length = 512  # the protocol's MTEB length
        model.model_card_data.model_name = f"serving-benchmark/{name.replace(' ', '-')}"
        result = mteb.evaluate(model, tasks, cache=None, show_progress_bar=False)
        scores[name] = {task.task_name: task.get_score() for task in result.task_results}
    return scores


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--embedder", type=Path, default=ROOT / "nomic-embed-text", help="the pipeline's embedder")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "serving.json")
    parser.add_argument("--dtype", choices=DTYPE_CHOICES, default="auto",
                        help="adds a PyTorch column in this dtype beside fp32 (auto: bf16 on AMX / AVX-512 BF16)")
    parser.add_argument("--probe", nargs=2, metavar=("FOLDER", "BACKEND"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.probe:
        return print(json.dumps(longest_text(Path(args.probe[0]), args.probe[1])))
    dtype = dtype_name(choose_dtype(args.dtype, "cpu"))
    backends = {BASELINE: BACKENDS[BASELINE], **({"PyTorch bf16": dtype} if dtype != "float32" else {}), **BACKENDS}
    lines = []

    def emit(line: str):
        print(line, flush=True)
        lines.append(line)

    # 1. The embedders, each exported (fp32, optimised, int8) into a scratch copy
    workdir = Path(tempfile.mkdtemp(prefix="serving-benchmark-"))
    sources = {"pipeline embedder": args.embedder}
    if {"speed", "longest"} & set(args.sections):
        torch.manual_seed(0)
        NomicBertModel(NomicBertConfig()).save_pretrained(workdir / "encoder-137m")
        save_tokenizer(bert_uncased_tokenizer(), workdir / "encoder-137m")
        sources = {"137M architecture": save_embedder(build_embedder(workdir / "encoder-137m"),
                                                      workdir / "source-137m"), **sources}
    folders = {name: export_onnx(source, workdir / name.replace(" ", "-"), quantize=["int8"], optimize=True).parent
               for name, source in sources.items()}
    emit(f"{describe('cpu')}, {os.cpu_count()} cores; torch {torch.__version__} "
         f"({torch.get_num_threads()} threads), onnxruntime {onnxruntime.__version__}; pipeline embedder "
         f"{args.embedder}; medians of {args.repeats}")
    report = {"embedder": str(args.embedder), "repeats": args.repeats}

    # 2. Speed: every backend on the same texts of the default corpus
    if "speed" in args.sections:
        emit("\n| model | texts | tokens | " + " | ".join(f"{name} tok/s" for name in backends)
             + " | " + " | ".join(f"{name} / {BASELINE}" for name in backends if name != BASELINE)
             + " |\n|---|---|---|" + "---|" * (2 * len(backends) - 1))
        tokenizer = bert_uncased_tokenizer()
        report["speed"] = {}
        for model_name, folder in folders.items():
            models = {name: load(folder, file) for name, file in backends.items()}
            for workload, (count, shortest, longest, batch_size) in WORKLOADS.items():
                texts = tokenizer.batch_decode([ids[1:-1] for ids in spread_sample(count, shortest, longest)])
                rows = speed(models, texts, batch_size, args.repeats)
                report["speed"][f"{model_name}, {workload}"] = rows
                emit(f"| {model_name} | {count} {workload} | {rows[BASELINE]['tokens']:,} | "
                     + " | ".join(f"{rows[name]['tokens_per_s']:,.0f}" for name in backends) + " | "
                     + " | ".join(f"**{rows[name]['ratio']:.2f}x**" for name in backends if name != BASELINE) + " |")
            del models  # onnxruntime's memory arenas keep their peak until the session goes
            gc.collect()

    # 3. The longest input, each backend in a fresh process (its peak memory is its own)
    if "longest" in args.sections:
        emit("\n| 137M architecture, one 8,192-token text | seconds | peak RSS growth GiB | seconds / PyTorch fp32 |\n"
             "|---|---|---|---|")
        runs = {name: json.loads(subprocess.run(
            [sys.executable, __file__, "--probe", str(folders["137M architecture"]), backends[name]],
            check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]) for name in backends}
        report["longest"] = runs
        for name, run in runs.items():
            emit(f"| {name} | {run['seconds']:.1f} | {run['peak_rss_growth_gib']:.2f} | "
                 f"{run['seconds'] / runs[BASELINE]['seconds']:.2f} |")

    # 4. Quality: retrieval through mteb with each backend of the pipeline's embedder
    if "quality" in args.sections:
        scores = retrieval_scores({name: load(folders["pipeline embedder"], file) for name, file in backends.items()})
        report["quality"] = scores
        tasks = list(scores[BASELINE])
        emit("\n| task (nDCG@10) | " + " | ".join(backends) + " |\n|---|" + "---|" * len(backends))
        for task in tasks:
            emit(f"| {task} | " + " | ".join(f"{100 * scores[name][task]:.2f}" for name in backends) + " |")
        means = {name: 100 * statistics.mean(scores[name].values()) for name in backends}
        emit("| **mean** | " + " | ".join(f"**{means[name]:.2f}**" for name in backends) + " |")
        emit("| difference to PyTorch fp32 | " + " | ".join(f"{means[name] - means[BASELINE]:+.2f}"
                                                          for name in backends) + " |")

    write_report(args.output, report, lines)
    shutil.rmtree(workdir)


if __name__ == "__main__":
    main()
