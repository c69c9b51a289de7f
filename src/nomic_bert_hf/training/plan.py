"""What a training run will read and cost, resolved before it starts.

Every dataset split (rows, columns, revision) and every stage's steps, tokens, global batch, checkpoint size and,
given a throughput, wall time.

    plan = contrastive_plan("pretrain", model_args, data_args, loss_args, training_args, processes=8, parameters=137e6)
    print(render_plan([plan], tokens_per_second=1.2e6))

Bad input fails here, naming the dataset: a split or column that is missing, a revision that does not exist, a
pre-tokenized row of the wrong length, a source with fewer rows than one global batch.
"""

import dataclasses
import shlex

import torch

from nomic_bert_hf.data.hub_data import inspect_split, is_hub_id
from nomic_bert_hf.data.pair_data import (
    negatives_column,
    parse_sources,
    require_pair_columns,
)
from nomic_bert_hf.data.pair_stream import rank_rows

BYTES_PER_PARAMETER = 4 + 8  # an fp32 checkpoint: the weights and AdamW's two moments


@dataclasses.dataclass
class StagePlan:
    stage: str
    datasets: list[dict]  # SplitInfo.record() of each source, with the stage's notes on it
    global_batch: int  # sequences (MLM) or queries (contrastive) per optimizer step, all processes together
    steps: int | None  # None where it depends on tokenizing text first
    tokens: int | None  # tokens trained on (an upper bound for the contrastive stages: padded to max_seq_length)
    checkpoint_bytes: int
    checkpoints: int | None  # kept at once (save_total_limit); None: all

    def summary(self) -> dict:
        return dataclasses.asdict(self)


def launcher_processes(launcher: str) -> int:
    """Processes a launcher starts: torchrun's --nproc_per_node x --nnodes, or accelerate's --num_processes."""
    words = shlex.split(launcher)

    def value(flag: str, default: int) -> int:
        for index, word in enumerate(words):
            if word == flag and index + 1 < len(words):
                return int(words[index + 1])
            if word.startswith(f"{flag}="):
                return int(word.split("=", 1)[1])
        return default

    words = [word.replace("-", "_") if word.startswith("--") else word for word in words]  # --nproc-per-node too
    if "--num_processes" in " ".join(words):
        return value("--num_processes", 1)
    return value("--nproc_per_node", 1) * value("--nnodes", 1)


def encoder_parameters(config) -> int:
    """Parameters of the encoder a config describes, counted without allocating it."""
    from nomic_bert_hf.modeling_nomic_bert import NomicBertModel

    with torch.device("meta"):
        return NomicBertModel(config).num_parameters()


def mlm_plan(model_args, data_args, training_args, processes: int, parameters: int) -> StagePlan:
    """Stage 1: the corpus's sources; steps and tokens exactly when the data come pre-tokenized."""
    records, sequences = [], 0
    for source in data_args.train_data:
        if not is_hub_id(source):
            records.append({"path": source, "kind": "local text, tokenized and packed when the stage starts"})
            sequences = None
            continue
        split = inspect_split(source, data_args.data_split, data_args.data_config_name, data_args.data_revision,
                              data_args.data_mirror)
        record = split.record()
        if data_args.text_column in split.features:
            record["kind"] = f"text ({data_args.text_column}), tokenized and packed when the stage starts"
            sequences = None
        elif "input_ids" in split.features:
            first = next(split.read(split.files[0]))["input_ids"]
            if len(first) != data_args.max_seq_length:
                raise ValueError(f"dataset {source}: its pre-tokenized rows hold {len(first)} tokens, but "
                                 f"max_seq_length is {data_args.max_seq_length}")
            record["kind"] = f"pre-tokenized, {len(first)} tokens per row"
            sequences = None if sequences is None else sequences + split.rows
        else:
            raise ValueError(f"dataset {source} has neither a {data_args.text_column!r} column nor input_ids; its "
                             f"columns are {sorted(split.features)}")
        records.append(record)
    global_batch = training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps * processes
    steps = training_args.max_steps if training_args.max_steps > 0 else (
        None if sequences is None else int(training_args.num_train_epochs * (sequences // global_batch)))
    return StagePlan("mlm", records, global_batch, steps,
                     None if steps is None else steps * global_batch * data_args.max_seq_length,
                     parameters * BYTES_PER_PARAMETER, training_args.save_total_limit)


def contrastive_plan(stage: str, model_args, data_args, loss_args, training_args, processes: int,
                     parameters: int, row_limits: dict[str, int] | None = None) -> StagePlan:
    """Stages 2 and 3: each source's rows (at most `row_limits[name]`, for samples the pipeline mines) and the global
    batches it fills (one source per global batch)."""
    global_batch = training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps * processes
    sources = parse_sources(data_args.train_datasets, query_column=data_args.query_column,
                            document_column=data_args.document_column, negatives_column=data_args.negatives_column,
                            mirror=data_args.data_mirror)
    records, steps = [], 0
    for source in sources:
        split = inspect_split(source.path, source.split, source.subset, source.revision, source.mirror)
        require_pair_columns(source, split.features)
        record = {"name": source.name, "task": source.task, **split.record()}
        if data_args.num_negatives:
            record["negatives"] = carried_negatives(source, split.features) or "none: mined by the pipeline"
        rows = min(split.rows, (row_limits or {}).get(source.name) or split.rows)
        if rows < split.rows:
            record["sample"] = rows
        if data_args.streaming:  # as the stream deals the files to the processes
            rows_per_process = min(rank_rows(split, source.name, training_args.seed, processes, rank)
                                   for rank in range(processes))
            record["global_batches"] = rows_per_process // (global_batch // processes)
        else:
            record["global_batches"] = (rows - data_args.eval_pairs) // global_batch
        if record["global_batches"] == 0:
            raise ValueError(f"dataset {source.name!r} ({source.path}, split {source.split}) has {rows} rows, fewer "
                             f"than one global batch of {global_batch} (per process); lower the batch size or leave "
                             "it out")
        steps += record["global_batches"]
        records.append(record)
    steps = training_args.max_steps if training_args.max_steps > 0 else int(training_args.num_train_epochs * steps)
    texts_per_pair = 2 + data_args.num_negatives
    return StagePlan(stage, records, global_batch, steps,
                     steps * global_batch * texts_per_pair * model_args.max_seq_length,
                     parameters * BYTES_PER_PARAMETER, training_args.save_total_limit)


def carried_negatives(source, features) -> str | None:
    """The column of negatives a fine-tuning source carries, or None when they must be mined first."""
    try:
        return negatives_column(source, features)
    except ValueError:
        if source.negatives_column is not None:
            raise
        return None


def render_plan(plans: list[StagePlan], tokens_per_second: float | None = None) -> str:
    """The plan as markdown: a table of stages, then each stage's datasets."""
    lines = ["| stage | global batch | steps | tokens | checkpoint | kept | wall time |", "|---|---|---|---|---|---|---|"]
    for plan in plans:
        wall = "-" if not (tokens_per_second and plan.tokens) else f"{plan.tokens / tokens_per_second / 3600:,.1f} h"
        lines.append(f"| {plan.stage} | {plan.global_batch:,} | {_number(plan.steps)} | {_number(plan.tokens)} | "
                     f"{plan.checkpoint_bytes / 2**30:,.1f} GiB | {plan.checkpoints or 'all'} | {wall} |")
    for plan in plans:
        lines += ["", f"{plan.stage}:", "", "| dataset | split | rows | files | columns | revision | notes |",
                  "|---|---|---|---|---|---|---|"]
        for record in plan.datasets:
            notes = [f"{key}: {record[key]}" for key in ("task", "kind", "negatives", "sample", "global_batches") if key in record]
            lines.append(f"| {record.get('name', record['path'])} | {record.get('split', '-')} | "
                         f"{_number(record.get('rows'))} | {record.get('files', '-')} | "
                         f"{', '.join(record.get('columns', [])) or '-'} | {record.get('revision', '-')} | "
                         f"{'; '.join(notes)} |")
    return "\n".join(lines)


def _number(value) -> str:
    return "-" if value is None else f"{value:,}"
