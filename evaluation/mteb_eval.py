"""Evaluate an embedder through MTEB's harness with Nomic's protocol.

Usage:
    python evaluation/mteb_eval.py evaluation/configs/mteb_eval/default.yaml \
        --model_name_or_path runs/nomic-embed-text/final
    python evaluation/mteb_eval.py evaluation/configs/mteb_eval/published.yaml \
        --model_name_or_path myorg/nomic-embed-text
    python evaluation/mteb_eval.py --model_name_or_path nomic-embed-text \
        --tasks STSBenchmark "MTEB(eng, v2)" data/eval/manpages
    python evaluation/mteb_eval.py --model_name_or_path nomic-embed-text \
        --tasks SciFact --precisions float32 int8 binary

`--model_name_or_path` (or `--model`) is an embedder folder or a Hub id; `--tasks` takes mteb task names, mteb benchmark
names and local task folders (see `nomic_bert_hf.evaluation.local_tasks`). Prompts: search_query/search_document for
Retrieval and Reranking, clustering for Clustering, classification for the rest; embeddings normalised except for
classification.
Results are cached per model name and revision in `output_dir` (mteb's layout), so an interrupted run continues
where it stopped and a finished one is not recomputed. The table is printed and written as `summary.md` next to
mteb's files, with the resolved `config.yaml`.

`dtype` (default auto: bf16 on a CPU with AMX or AVX-512 BF16, else fp32) is what the model computes in; it is
recorded with the CPU in `compute.yaml` beside `summary.md`, but is not part of mteb's cache key: pass
`--overwrite_strategy always` to score a cached model again in another dtype.

`precisions` adds retrieval on quantized embeddings: int8 and binary runs score the Retrieval and Reranking tasks
(`nomic_bert_hf.evaluation.quantization`) into their own experiment folder (`.../experiments/precision_int8/`),
cached like the float32 run, and the table of each task's score per precision is printed and saved as
`precisions.md` in the quantized runs' folders.
"""

import logging
from dataclasses import dataclass, field

import yaml

from nomic_bert_hf.evaluation import (
    check_precisions,
    embedder_model_meta,
    evaluate_embedder,
    find_runs,
    quantizable,
    resolve_tasks,
    run_folder,
)
from nomic_bert_hf.evaluation.results import (
    category_rows,
    markdown_category_table,
    markdown_precision_table,
    markdown_task_table,
    other_settings,
    precision_scores,
    task_rows,
)
from nomic_bert_hf.utils.cli import run_command
from nomic_bert_hf.utils.compute import choose_dtype, compute_record, dtype_name
from nomic_bert_hf.utils.configs import parse_config, save_config

COMPUTE_FILE = "compute.yaml"  # beside summary.md: the dtype and hardware of the run (mteb reads every .json there)


@dataclass
class MtebEvalConfig:
    model_name_or_path: str = field(metadata={"help": "Embedder folder or Hub model id", "aliases": ["--model"]})
    tasks: list[str] = field(default_factory=list, metadata={"help": "mteb tasks, benchmarks or local task folders"})
    model_name: str | None = field(default=None, metadata={"help": "org/name to file results under"})
    revision: str | None = field(default=None, metadata={"help": "Hub revision (local folders: weights digest)"})
    max_seq_length: int = 512
    embed_dim: int | None = field(default=None, metadata={"help": "Matryoshka dimension to truncate to"})
    batch_size: int = 32
    output_dir: str = "results/mteb"
    overwrite_strategy: str = field(default="only-missing", metadata={"help": "only-missing | always | never"})
    precisions: list[str] = field(default_factory=lambda: ["float32"],
                                  metadata={"help": "float32 | int8 | binary; int8 and binary score retrieval only"})
    dtype: str = field(default="auto", metadata={
        "help": "auto | float32 | bfloat16: what the model computes in (auto: bf16 where the CPU has AMX or AVX-512 "
                "BF16, else fp32)"})
    trust_remote_code: bool = field(default=False, metadata={
        "help": "run the model's own code even where it is not this package's (a folder this package wrote runs as is)"
    })


def report(config: MtebEvalConfig, meta, tasks, compute: dict) -> list[dict]:
    """Evaluate one setting, then print and record its scores per task and per task type beside mteb's files, with
    what it was computed with (`compute.json`)."""
    result = evaluate_embedder(meta, tasks, results_dir=config.output_dir, batch_size=config.batch_size,
                               overwrite_strategy=config.overwrite_strategy)
    for error in result.exceptions or []:
        logging.error("%s failed: %s", error.task_name, error.exception)
    folder = run_folder(config.output_dir, meta)
    run = next(run for run in find_runs(config.output_dir, revision=meta.revision, model_name=meta.name)
               if run.folder.resolve() == folder.resolve())
    rows = [row for row in task_rows(run, config.output_dir) if row["task"] in {t.metadata.name for t in tasks}]
    summary = f"{markdown_task_table(rows)}\n\n{markdown_category_table(category_rows(rows))}\n"
    title = f"{meta.name} ({meta.revision})" + (f" {meta.experiment_name}" if meta.experiment_name else "")
    (folder / "summary.md").write_text(f"# {title}\n\n{summary}")
    (folder / COMPUTE_FILE).write_text(yaml.safe_dump(compute, sort_keys=True))
    save_config(folder, config)
    print(f"\n{title}, results in {folder}\n\n{summary}")
    return rows


def report_precisions(config: MtebEvalConfig, meta, folders: list) -> None:
    """The quantized tasks' scores per precision, printed and saved as `precisions.md` in the quantized runs."""
    runs = find_runs(config.output_dir, revision=meta.revision, model_name=meta.name)
    table = markdown_precision_table(precision_scores(runs, other_settings(meta.experiment_kwargs)))
    for folder in folders:
        (folder / "precisions.md").write_text(f"# {meta.name} ({meta.revision}), by precision\n\n{table}\n")
    print(f"\n{meta.name} ({meta.revision}), main score by embedding precision\n\n{table}\n")


def main(args=None):
    (config,) = parse_config([MtebEvalConfig], args)
    precisions = check_precisions(config.precisions)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    # 1. Choose the tasks (quantized embeddings are scored on the retrieval-like ones) and the dtype
    tasks = resolve_tasks(config.tasks)
    dtype = choose_dtype(config.dtype)
    rows, quantized_folders = [], []
    for precision in precisions:
        precision_tasks = tasks if precision == "float32" else quantizable(tasks)
        if not precision_tasks:
            logging.warning("no Retrieval or Reranking task to score on %s embeddings", precision)
            continue

        # 2. Describe the model for mteb: name, revision, dimensions, precision, and the protocol's loader
        meta = embedder_model_meta(config.model_name_or_path, name=config.model_name, revision=config.revision,
                                   max_seq_length=config.max_seq_length, embed_dim=config.embed_dim,
                                   precision=precision, dtype=dtype_name(dtype),
                                   trust_remote_code=config.trust_remote_code)

        # 3. Evaluate through mteb.evaluate (finished tasks come from the cache) and report the scores
        precision_rows = report(config, meta, precision_tasks, compute_record(dtype))
        rows = rows or precision_rows  # the first precision's (float32 by default)
        if precision != "float32":
            quantized_folders.append(run_folder(config.output_dir, meta))

    # 4. Quantized runs: each task's score per precision, beside float32
    if quantized_folders:
        report_precisions(config, meta, quantized_folders)
    return rows


if __name__ == "__main__":
    run_command(main)
