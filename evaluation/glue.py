"""GLUE fine-tuning of a NomicBERT checkpoint, as in the Nomic Embed paper (Table 2; the protocol of section 5.1).

Usage:
    python evaluation/glue.py evaluation/configs/glue/paper.yaml --model_name_or_path runs/nomic-bert-2048/final
    python evaluation/glue.py evaluation/configs/glue/paper.yaml --model_name_or_path nomic-ai/nomic-bert-2048 \\
        --tasks mnli rte --output_dir runs/glue-rte
    python evaluation/glue.py evaluation/configs/glue/tiny.yaml --model_name_or_path MODEL --data_dir my_glue_files

For every task, learning rate x batch size, and seed, `NomicBertForSequenceClassification` (the pretrained encoder
plus a new pooler and classifier) is fine-tuned on the training split with the Trainer and scored on the validation
split with the GLUE metric (a local `evaluate` module, evaluation/metrics/glue/glue.py). RTE, STS-B and MRPC start
from the MNLI model of the same seed (MNLI's best setting). Per task, the median over seeds of the best setting is
written to {output_dir}/results/: results.md (the paper's table) and results.json (every run). Data come from the Hub
(nyu-mll/glue), or from --data_dir in GLUE's column format (see nomic_bert_hf.evaluation.glue). Every key of the YAML file is a
field of GlueArguments (below) or transformers' TrainingArguments; learning_rate, per_device_train_batch_size and seed
are taken from the grid (learning_rates, batch_sizes, seeds).
"""

import dataclasses
import itertools
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import evaluate
import numpy as np
from transformers import AutoTokenizer, DataCollatorWithPadding, Trainer

from nomic_bert_hf import NomicBertForSequenceClassification
from nomic_bert_hf.evaluation.glue import (
    TASKS,
    load_task,
    markdown_table,
    summarize,
    task_order,
    tokenize_task,
)
from nomic_bert_hf.training.runs import (
    RunTrainingArguments,
    prepare_output_dir,
    setup_logging,
)
from nomic_bert_hf.utils.cli import run_command
from nomic_bert_hf.utils.configs import parse_config, save_config
from nomic_bert_hf.utils.files import atomic_output_dir, load_strict

logger = logging.getLogger(__name__)
METRIC = Path(__file__).parent / "metrics" / "glue" / "glue.py"


@dataclass
class GlueArguments:
    model_name_or_path: str = field(default=None, metadata={"help": "Pretrained checkpoint (folder or Hub id)"})
    revision: str | None = field(default=None, metadata={"help": "Hub revision of model_name_or_path"})
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer; none: the checkpoint's own"})
    tasks: list[str] = field(default_factory=lambda: list(TASKS), metadata={"help": "GLUE tasks to run"})
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4], metadata={"help": "One run per seed"})
    learning_rates: list[float] = field(default_factory=lambda: [1e-5, 2e-5, 3e-5])
    batch_sizes: list[int] = field(default_factory=lambda: [16, 32])
    from_mnli: bool = field(default=True, metadata={"help": "RTE, STS-B and MRPC start from the MNLI model"})
    max_seq_length: int = field(default=128, metadata={"help": "Longer inputs are truncated"})
    max_train_samples: int | None = field(default=None, metadata={"help": "Train on a seeded sample (CPU runs)"})
    data_dir: str | None = field(default=None, metadata={"help": "Local GLUE files; none: the Hub's nyu-mll/glue"})


def main(args: list[str] | None = None) -> dict:
    glue_args, training_args = parse_config((GlueArguments, RunTrainingArguments), args)
    setup_logging(training_args, __name__)
    if not glue_args.model_name_or_path:
        raise ValueError("--model_name_or_path is required: the pretrained checkpoint to fine-tune")
    prepare_output_dir(training_args.output_dir, None, training_args.overwrite_output_dir, resumable=False)
    output_dir = Path(training_args.output_dir)
    tasks = task_order(glue_args.tasks, glue_args.from_mnli)

    # 1. Load the tokenizer
    tokenizer = AutoTokenizer.from_pretrained(
        glue_args.tokenizer_name or glue_args.model_name_or_path, revision=glue_args.revision
    )

    runs, mnli_encoders = [], {}
    for task in tasks:
        # 2. Load the task's training and validation data, tokenized
        data = load_task(task, glue_args.data_dir)
        if glue_args.max_train_samples is not None:
            count = min(glue_args.max_train_samples, len(data["train"]))
            data["train"] = data["train"].shuffle(seed=training_args.seed).select(range(count))
        data = tokenize_task(data, tokenizer, task, glue_args.max_seq_length)
        metric = evaluate.load(str(METRIC), task.name)

        def compute_metrics(prediction, task=task, metric=metric):
            logits = prediction.predictions
            predicted = logits.squeeze(-1) if task.num_labels == 1 else np.argmax(logits, axis=-1)
            return metric.compute(predictions=predicted, references=prediction.label_ids)

        for learning_rate, batch_size, seed in itertools.product(
            glue_args.learning_rates, glue_args.batch_sizes, glue_args.seeds
        ):
            # 3. Load the model: a new pooler and classifier on the pretrained encoder, or on the MNLI model
            if task.from_mnli and glue_args.from_mnli:
                start, new_weights, revision = mnli_encoders[seed], ("classifier.",), None
            else:
                start, new_weights, revision = glue_args.model_name_or_path, ("classifier.", "bert.pooler."), \
                    glue_args.revision
            labels = {i: f"LABEL_{i}" for i in range(task.num_labels)}
            model = load_strict(
                NomicBertForSequenceClassification, start, new_weights=new_weights, revision=revision,
                id2label=labels, label2id={name: i for i, name in labels.items()},
                problem_type="regression" if task.num_labels == 1 else "single_label_classification",
            )

            # 4. Fine-tune, then score on the validation split
            run_dir = output_dir / task.name / f"lr{learning_rate:g}-bs{batch_size}-seed{seed}"
            run_args = dataclasses.replace(
                training_args, output_dir=str(run_dir), learning_rate=learning_rate,
                per_device_train_batch_size=batch_size, seed=seed, save_strategy="no", eval_strategy="no",
            )
            trainer = Trainer(
                model=model, args=run_args, train_dataset=data["train"], eval_dataset=data["validation"],
                data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer,
                compute_metrics=compute_metrics,
            )
            trainer.train()
            scores = trainer.evaluate()
            metrics = {name: scores[f"eval_{name}"] for name in task.metrics}
            runs.append({"task": task.name, "learning_rate": learning_rate, "batch_size": batch_size, "seed": seed,
                         "start": str(start), "metrics": metrics})
            logger.info("%s lr %g batch %d seed %d: %s", task.title, learning_rate, batch_size, seed, metrics)
            if task.name == "mnli":  # the encoder and pooler, for RTE, STS-B and MRPC
                if trainer.is_world_process_zero():
                    trainer.model.bert.save_pretrained(run_dir / "encoder")
                trainer.accelerator.wait_for_everyone()

        if task.name == "mnli":
            best = summarize([run for run in runs if run["task"] == "mnli"])["tasks"]["mnli"]
            best_dir = f"lr{best['learning_rate']:g}-bs{best['batch_size']}"
            mnli_encoders = {
                seed: output_dir / "mnli" / f"{best_dir}-seed{seed}" / "encoder" for seed in glue_args.seeds
            }

    # 5. Report the median over seeds of each task's best setting
    summary = {"model": glue_args.model_name_or_path, **summarize(runs), "runs": runs}
    if training_args.should_save:
        with atomic_output_dir(output_dir / "results", overwrite=training_args.overwrite_output_dir) as staging:
            (staging / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
            (staging / "results.md").write_text(markdown_table(summary, glue_args.model_name_or_path))
            save_config(staging, glue_args, training_args)
        logger.info("GLUE results:\n%s", markdown_table(summary, glue_args.model_name_or_path))
    return summary


if __name__ == "__main__":
    run_command(main)
