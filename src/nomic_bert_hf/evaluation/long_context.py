"""Long-context evaluation: the same tasks at several maximum sequence lengths, reported as a table by length.

Above the length the model was trained at (`max_trained_positions`, 2048 for NomicBERT) the model's config gets the
dynamic NTK factor `rotary_scaling_factor` (alpha = 2 in the paper), which rescales RoPE for sequences longer than
that; at and below it the model runs unchanged. Each length is its own mteb experiment (`max_seq_length`, plus
`rotary_scaling_factor` above the trained length), so every length is cached separately and a rerun continues.

Tasks: mteb's `LongEmbed` benchmark (its data comes from the Hub) or local long-document retrieval folders. LoCo
(Saad-Falcon et al.) is not packaged in mteb 2.26: none of its tasks is in the registry, so it cannot be selected.
"""

import json
from collections.abc import Sequence
from pathlib import Path

from mteb.abstasks import AbsTask

from .harness import evaluate_embedder
from .model_meta import default_model_name, embedder_model_meta, resolve_model
from .results import EvaluationRun, find_runs, length_scores

LONG_CONTEXT_LENGTHS = (512, 2048, 4096, 8192)
PAPER_SCALING_FACTOR = 2.0


def trained_length(folder: Path) -> int:
    config = json.loads((folder / "config.json").read_text())
    return int(config.get("max_trained_positions") or config.get("max_position_embeddings") or 2048)


def evaluate_long_context(
    model_name_or_path: str | Path,
    tasks: Sequence[AbsTask],
    *,
    results_dir: str | Path,
    lengths: Sequence[int] = LONG_CONTEXT_LENGTHS,
    rotary_scaling_factor: float = PAPER_SCALING_FACTOR,
    name: str | None = None,
    revision: str | None = None,
    batch_size: int = 8,
    show_progress_bar: bool = True,
    dtype: str = "float32",
    trust_remote_code: bool = False,
) -> dict[str, dict[int, float | None]]:
    """Evaluate `tasks` at every length in `lengths`, computing in `dtype`; returns task -> {length: main score}.
    `trust_remote_code` as in `embedder_model_meta`."""
    folder, revision = resolve_model(model_name_or_path, revision)
    name = name or default_model_name(model_name_or_path)
    trained = trained_length(folder)
    for length in sorted(lengths):
        meta = embedder_model_meta(
            model_name_or_path,
            name=name,
            revision=revision,
            max_seq_length=length,
            rotary_scaling_factor=rotary_scaling_factor if length > trained else None,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
        )
        evaluate_embedder(meta, tasks, results_dir=results_dir, batch_size=batch_size,
                          show_progress_bar=show_progress_bar)
    names = {task.metadata.name for task in tasks}
    runs = [
        EvaluationRun(run.model_name, run.revision, run.experiment, run.folder,
                      {task: result for task, result in run.results.items() if task in names})
        for run in find_runs(results_dir, revision=revision, model_name=name)
        if run.max_seq_length in lengths
    ]
    table = length_scores(runs)
    return {task: scores for task, scores in table.items() if task in names}
