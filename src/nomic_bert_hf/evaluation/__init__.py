"""Evaluation of NomicBERT embedders through mteb's harness with Nomic's protocol (prompts, normalisation, length).

    meta = embedder_model_meta("runs/nomic-embed-text/final")       # who is evaluated, and how to load it
    tasks = resolve_tasks(["STSBenchmark", "MTEB(eng, v2)", "data/eval/manpages"])
    evaluate_embedder(meta, tasks, results_dir="results/mteb")      # mteb.evaluate with a result cache
    int8 = embedder_model_meta("runs/nomic-embed-text/final", precision="int8")  # retrieval on int8 embeddings
"""

from .harness import evaluate_embedder, run_folder
from .local_tasks import (
    LocalClassificationTask,
    LocalRetrievalTask,
    LocalSTSTask,
    load_local_task,
    local_task_metadata,
)
from .long_context import LONG_CONTEXT_LENGTHS, evaluate_long_context
from .model_meta import NOMIC_CITATION, embedder_model_meta, resolve_model
from .protocol import (
    PROTOCOL_MAX_SEQ_LENGTH,
    PROTOCOL_PROMPTS,
    UNNORMALISED_TASK_TYPES,
    NomicEncoder,
)
from .quantization import (
    PRECISIONS,
    QUANTIZED_TASK_TYPES,
    QuantizedIndex,
    check_precisions,
    quantizable,
)
from .results import EvaluationRun, find_runs
from .tasks import resolve_tasks

__all__ = [
    "LONG_CONTEXT_LENGTHS",
    "NOMIC_CITATION",
    "PRECISIONS",
    "PROTOCOL_MAX_SEQ_LENGTH",
    "PROTOCOL_PROMPTS",
    "QUANTIZED_TASK_TYPES",
    "UNNORMALISED_TASK_TYPES",
    "EvaluationRun",
    "LocalClassificationTask",
    "LocalRetrievalTask",
    "LocalSTSTask",
    "NomicEncoder",
    "QuantizedIndex",
    "check_precisions",
    "embedder_model_meta",
    "evaluate_embedder",
    "evaluate_long_context",
    "find_runs",
    "load_local_task",
    "local_task_metadata",
    "quantizable",
    "resolve_model",
    "resolve_tasks",
    "run_folder",
]
