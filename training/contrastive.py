"""Stages 2 and 3 of Nomic Embed: contrastive training of a NomicBERT checkpoint into a text embedder.

    python training/contrastive.py training/configs/contrastive/cpu-pretrain.yaml \\
        --model_name_or_path runs/mlm-cpu-small/final
    python training/contrastive.py training/configs/contrastive/cpu-finetune.yaml \\
        --model_name_or_path runs/contrastive-pretrain/final --train_datasets mined-datasets.yaml
    torchrun --nproc_per_node 8 training/contrastive.py training/configs/contrastive/nomic-embed-text-v1-unsupervised.yaml

The input is an MLM checkpoint (this package's layout, e.g. `nomic-bert-2048`) or an embedder folder. Training pairs
come from several datasets (`train_datasets` in the config, local jsonl/parquet or Hub ids), each with its own task
prefix; every global batch is drawn from one dataset, chosen in proportion to the rows it has left, whether the data
are loaded (memory-mapped) or streamed (`--streaming true`: sharded across processes and data-loader workers, for
Nomic's 235M pairs without downloading them first); `--data_mirror` reads every Hub dataset from a local copy. On the
command line `--train_datasets` (and `--eval_datasets`) name a YAML file holding the mapping (how the pipeline passes
each stage's datasets) or give it inline as JSON. The
loss is InfoNCE at temperature 0.02 from query to document over the documents of all processes, through GradCache
(`CachedMultipleNegativesRankingLoss`), optionally with Matryoshka dimensions (v1.5) and a LoRA adapter. Retrieval on
held-out pairs is measured before and after training and written into the model card. The embedder goes to
`{output_dir}/final/` with the resolved config (`config.yaml`) and the datasets it read, with their revisions
(`datasets.json`); with `lora: true` the adapter also goes to `{output_dir}/adapter/` and `final/` holds the merged
model.
"""

import json
import logging
import os
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
from datasets import DatasetDict
from sentence_transformers import SentenceTransformerTrainer
from sentence_transformers.sentence_transformer.evaluation import SequentialEvaluator
from transformers import set_seed

from nomic_bert_hf.data.hub_data import inspect_split
from nomic_bert_hf.data.pair_data import (
    hold_out,
    load_pairs,
    negatives_column,
    pair_columns,
    parse_sources,
    require_pair_columns,
    require_rows,
)
from nomic_bert_hf.data.pair_stream import SingleSourceStream, StreamSource
from nomic_bert_hf.data.sampler import single_source_sampler
from nomic_bert_hf.model.embedder import save_embedder
from nomic_bert_hf.model.lora import add_lora, merge_adapter, save_adapter
from nomic_bert_hf.tasks import column_prompts
from nomic_bert_hf.training.contrastive import (
    ContrastiveTrainingArguments,
    contrastive_loss,
    load_embedder,
    retrieval_evaluator,
)
from nomic_bert_hf.training.runs import (
    FINAL_DIR,
    prepare_output_dir,
    resumed_step,
    train,
    write_final_dir,
)
from nomic_bert_hf.utils.cli import run_command
from nomic_bert_hf.utils.configs import mapping_setting, parse_config, save_config
from nomic_bert_hf.utils.files import naming_a_full_disk
from nomic_bert_hf.utils.provenance import write_json

logger = logging.getLogger(__name__)
STREAM_LAYOUT = "stream.json"  # in output_dir: the data and batch layout of a streamed run, checked on resume


@dataclass
class ModelArguments:
    # No field is required on the command line: a YAML config may set any of them (parse_config passes YAML values as
    # argparse defaults, which argparse ignores for required arguments); __post_init__ checks instead.
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "MLM checkpoint or embedder folder (this package's layout) or Hub id"}
    )
    revision: str | None = field(default=None, metadata={"help": "Hub revision of the model"})
    trust_remote_code: bool = field(default=False, metadata={
        "help": "run the model's own code even where it is not this package's (a folder this package wrote runs as is)"
    })
    max_seq_length: int = field(
        default=512, metadata={"help": "tokens per text during training (the saved model keeps its own limit)"}
    )
    matryoshka: bool = field(default=False, metadata={"help": "v1.5 layout: a frozen LayerNorm before truncation"})
    lora: bool = field(default=False, metadata={"help": "train a LoRA adapter instead of all weights"})
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_base_model: str | None = field(
        default=None, metadata={"help": "how the adapter names its base (e.g. a Hub id); default: model_name_or_path"}
    )
    overwrite_output_dir: bool = field(default=False, metadata={"help": "replace an existing {output_dir}/final"})

    def __post_init__(self):
        if not self.model_name_or_path:
            raise ValueError("model_name_or_path is required: the MLM checkpoint or embedder to train")


@dataclass
class DataArguments:
    train_datasets: dict | str | None = field(
        default=None,
        metadata={
            "help": "{name: path} or {name: {path, task: search|classification|clustering, split, subset, revision, "
            "query_column, document_column, negatives_column}}; on the command line a YAML file holding it, or JSON"
        },
    )
    data_mirror: str | None = field(
        default=None, metadata={"help": "folder with a copy of every Hub dataset at <data_mirror>/<org>/<name>"}
    )
    eval_datasets: dict | str | None = field(default=None, metadata={"help": "held-out pair datasets, same format"})
    eval_pairs: int = field(default=0, metadata={"help": "pairs held out of each training dataset for evaluation"})
    query_column: str = "query"
    document_column: str = "document"
    negatives_column: str | None = field(
        default=None, metadata={"help": "column of mined negatives; default: a dataset's one list-of-text column"}
    )
    num_negatives: int = field(default=0, metadata={"help": "hard negatives per query, sampled from the mined list"})
    pad_negatives: bool = field(default=False, metadata={"help": "fill short negatives lists with random documents"})
    streaming: bool = field(
        default=False, metadata={"help": "stream the training datasets (sharded over processes and workers)"}
    )
    shuffle_window: int = field(default=1024, metadata={"help": "streaming: rows shuffled together per process"})

    def __post_init__(self):
        self.train_datasets = mapping_setting("train_datasets", self.train_datasets)
        self.eval_datasets = mapping_setting("eval_datasets", self.eval_datasets)
        if not self.train_datasets:
            raise ValueError("train_datasets is empty: name at least one dataset of (query, document) pairs")
        if self.streaming and (self.pad_negatives or self.eval_pairs):
            raise ValueError("streaming reads every row once: pad_negatives and eval_pairs need loaded datasets "
                             "(name held-out pairs in eval_datasets instead)")


@dataclass
class LossArguments:
    scale: float = field(default=50.0, metadata={"help": "similarity scale = 1 / temperature"})
    gradcache: bool = field(default=True, metadata={"help": "CachedMultipleNegativesRankingLoss (GradCache)"})
    mini_batch_size: int = field(default=64, metadata={"help": "GradCache chunk: rows embedded at once"})
    gather_across_devices: bool = field(default=True, metadata={"help": "negatives from the documents of all processes"})
    matryoshka_dims: list[int] = field(default_factory=list, metadata={"help": "e.g. 768 512 256 128 64 for v1.5"})


def main(args=None, callbacks=None):
    """Run the stage; `callbacks` are extra Trainer callbacks (the tests watch or stop runs)."""
    model_args, data_args, loss_args, training_args = parse_config(
        [ModelArguments, DataArguments, LossArguments, ContrastiveTrainingArguments], args
    )
    final_dir = Path(training_args.output_dir) / FINAL_DIR
    resume_from = prepare_output_dir(
        training_args.output_dir, training_args.resume_from_checkpoint, model_args.overwrite_output_dir
    )
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched != training_args.world_size:  # each process would train alone on a copy of all the data
        raise RuntimeError(
            f"launched as {launched} processes, but they do not form one training group "
            f"(world size {training_args.world_size}); on CPUs set use_cpu: true, which makes them use gloo"
        )
    set_seed(training_args.seed)

    # 1. Load the model: an embedder, or a checkpoint wrapped as one (mean pooling, prompts, Matryoshka norm)
    model = load_embedder(model_args.model_name_or_path, matryoshka=model_args.matryoshka,
                          revision=model_args.revision, trust_remote_code=model_args.trust_remote_code)
    saved_max_seq_length = model.max_seq_length
    model.max_seq_length = model_args.max_seq_length
    if model_args.lora:
        add_lora(model, r=model_args.lora_r, alpha=model_args.lora_alpha, dropout=model_args.lora_dropout)

    # 2. Load the data: one dataset per source, its task prefix as the prompts of its columns; every global batch
    #    from one source, loaded (memory-mapped) or streamed
    sources = parse_sources(
        data_args.train_datasets, query_column=data_args.query_column, document_column=data_args.document_column,
        negatives_column=data_args.negatives_column, mirror=data_args.data_mirror,
    )
    splits = [inspect_split(s.path, s.split, s.subset, s.revision, s.mirror) for s in sources]
    batches_per_step = training_args.world_size * training_args.gradient_accumulation_steps
    held_out = []
    if data_args.streaming:
        stream = build_stream(sources, splits, data_args, training_args)
        start_step = resumed_step(resume_from)
        check_stream_layout(Path(training_args.output_dir), stream_layout(splits, data_args, training_args),
                            resuming=resume_from is not None, writer=training_args.process_index == 0)
        training_args.max_steps = check_streaming_steps(training_args.max_steps, stream.steps)
        training_args.ignore_data_skip = True  # the stream itself starts at the resumed step
        training_args.accelerator_config.dispatch_batches = False  # each process reads its own shard
        train_dataset, training_args.prompts = stream.dataset(start_step), stream.prompts()
    else:
        train_datasets, prompts = {}, {}
        for source in sources:
            pairs = load_pairs(source, data_args.num_negatives, data_args.pad_negatives, training_args.seed)
            pairs, held = hold_out(pairs, data_args.eval_pairs, seed=training_args.seed)
            require_rows(pairs, source.name, training_args.per_device_train_batch_size * batches_per_step)
            if held is not None:
                held_out.append((source.name, source.task, held))
            train_datasets[source.name] = pairs
            prompts[source.name] = column_prompts(source.task, pair_columns(data_args.num_negatives))
        train_dataset, training_args.prompts = DatasetDict(train_datasets), prompts
        training_args.multi_dataset_batch_sampler = single_source_sampler(batches_per_step)
    for source in parse_sources(data_args.eval_datasets or {}, mirror=data_args.data_mirror):
        held_out.append((source.name, source.task, load_pairs(source)))

    # 3. Define the loss: InfoNCE, query -> document, GradCache, Matryoshka dimensions if any
    loss = contrastive_loss(
        model, scale=loss_args.scale, cached=loss_args.gradcache, mini_batch_size=loss_args.mini_batch_size,
        gather_across_devices=loss_args.gather_across_devices and training_args.world_size > 1,
        matryoshka_dims=loss_args.matryoshka_dims,
    )

    # 4. Define the evaluators (retrieval on the held-out pairs, per Matryoshka dimension) and run them before training
    evaluator = None
    if held_out:
        dims = [None] + [dim for dim in loss_args.matryoshka_dims if dim < model.get_embedding_dimension()]
        evaluator = SequentialEvaluator(
            [
                retrieval_evaluator(pairs, name if dim is None else f"{name}-dim{dim}", task, truncate_dim=dim)
                for name, task, pairs in held_out
                for dim in dims
            ]
        )
        logger.info(f"before training: {evaluator(model)}")

    # 5. Train
    trainer = SentenceTransformerTrainer(
        model=model, args=training_args, train_dataset=train_dataset, loss=loss, evaluator=evaluator,
        callbacks=callbacks,
    )
    with naming_a_full_disk(training_args.output_dir):
        result = train(trainer, resume_from)
        if result is not None:
            trainer.save_metrics("train", result.metrics)  # train_results.json: train_runtime, tokens, loss

        # 6. Evaluate again; the scores before and after go into the model card
        if evaluator is not None:
            logger.info(f"after training: {trainer.evaluate()}")

        # 7. Save the embedder (and the adapter) with the resolved config
        model.max_seq_length = saved_max_seq_length
        if trainer.is_world_process_zero():
            overwrite = model_args.overwrite_output_dir
            if model_args.lora:
                adapter_dir = save_adapter(
                    model, Path(training_args.output_dir) / "adapter",
                    model_args.lora_base_model or model_args.model_name_or_path, overwrite=overwrite,
                )
                save_config(adapter_dir, model_args, data_args, loss_args, training_args)
                write_model = partial(merge_adapter, adapter_dir, base_model=model_args.model_name_or_path,
                                      overwrite=True, trust_remote_code=model_args.trust_remote_code)
            else:
                write_model = partial(save_embedder, model, overwrite=True)
            write_final_dir(training_args.output_dir, write_model, model_args, data_args, loss_args, training_args,
                            overwrite=overwrite,
                            datasets_read={source.name: split.record() for source, split in zip(sources, splits)})
            logger.info(f"saved the embedder to {final_dir}")
    trainer.accelerator.wait_for_everyone()  # every process returns once final/ is complete
    return final_dir


def build_stream(sources, splits, data_args, training_args) -> SingleSourceStream:
    """The training sources as one stream with one source per global batch, sharded over processes and workers."""
    stream_sources = []
    for source, split in zip(sources, splits):
        require_pair_columns(source, split.features)
        negatives = negatives_column(source, split.features) if data_args.num_negatives else None
        prompts = column_prompts(source.task, pair_columns(data_args.num_negatives))
        stream_sources.append(StreamSource(source.name, split, source.query_column, source.document_column,
                                           negatives, prompts))
    return SingleSourceStream(
        stream_sources, batch_size=training_args.per_device_train_batch_size,
        batches_per_step=training_args.gradient_accumulation_steps, world_size=training_args.world_size,
        num_workers=training_args.dataloader_num_workers, seed=training_args.seed,
        num_negatives=data_args.num_negatives, shuffle_window=data_args.shuffle_window,
    )


def stream_layout(splits, data_args, training_args) -> dict:
    """What decides which rows a streamed step reads: the data (revisions, rows per file) and the batch layout."""
    return {
        "datasets": {f"{split.path}:{split.split}": {"revision": split.revision, "file_rows": split.file_rows}
                     for split in splits},
        "world_size": training_args.world_size, "seed": training_args.seed,
        "per_device_train_batch_size": training_args.per_device_train_batch_size,
        "gradient_accumulation_steps": training_args.gradient_accumulation_steps,
        "num_negatives": data_args.num_negatives, "shuffle_window": data_args.shuffle_window,
    }


def check_stream_layout(output_dir: Path, layout: dict, resuming: bool, writer: bool) -> None:
    """A resumed stream must read the data it started on, laid out the same way, or it would repeat or skip rows."""
    path = output_dir / STREAM_LAYOUT
    if resuming and path.is_file():
        recorded = json.loads(path.read_text())
        changed = sorted(key for key in layout if recorded.get(key) != layout[key])
        if changed:
            raise ValueError(f"cannot resume the streamed run in {output_dir}: {', '.join(changed)} changed since it "
                             f"started (recorded in {path}); resume with the same data and settings")
    elif writer:
        output_dir.mkdir(parents=True, exist_ok=True)
        write_json(path, layout)


def check_streaming_steps(max_steps: int, scheduled: int) -> int:
    """A stream is read once: training lasts its scheduled steps, or fewer if max_steps says so."""
    if max_steps > scheduled:
        raise ValueError(f"max_steps {max_steps} exceeds the {scheduled} global batches the streamed datasets fill")
    return max_steps if max_steps > 0 else scheduled


def command():
    """The script as a command: sentence-transformers' INFO logs, and the process group closed however it ends."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    try:
        main()
    finally:
        if torch.distributed.is_initialized():  # a process that exits with an open gloo group can abort
            torch.distributed.destroy_process_group()


if __name__ == "__main__":
    run_command(command)
