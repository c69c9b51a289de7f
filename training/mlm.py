"""Stage 1: masked-language-model pretraining of NomicBERT (nomic-bert-2048) with the Hugging Face Trainer.

Usage:
    python training/mlm.py training/configs/mlm/cpu-small.yaml
    python training/mlm.py training/configs/mlm/tiny.yaml --train_data my_corpus.jsonl --output_dir runs/tiny
    python training/mlm.py training/configs/mlm/cpu-small.yaml --resume_from_checkpoint true   # after an interruption
    torchrun --nproc_per_node 8 training/mlm.py training/configs/mlm/nomic-bert-2048.yaml
    accelerate launch --config_file training/configs/mlm/accelerate-deepspeed-zero2.yaml \\
        training/mlm.py training/configs/mlm/nomic-bert-2048.yaml

Every key of the YAML file is a field of ModelArguments, DataArguments (below) or transformers' TrainingArguments (plus
`overwrite_output_dir`), and every field can be overridden on the command line (`--learning_rate 1e-4`). Without
`model_name_or_path` a new model is built from the architecture fields; with it, pretraining continues from that
checkpoint (e.g. `nomic-ai/nomic-bert-2048`). The finished model goes to `{output_dir}/final/` with its tokenizer, code
and the resolved config (`config.yaml`), which each checkpoint also holds.
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path

from transformers import AutoTokenizer, Trainer, TrainerCallback, set_seed

from nomic_bert_hf import NomicBertConfig, NomicBertForPreTraining
from nomic_bert_hf.data.hub_data import inspect_split, is_hub_id, local_digest
from nomic_bert_hf.data.mlm_data import (
    MaskingCollator,
    check_packed,
    is_packed,
    load_documents,
    pack_document_stream,
    pack_documents,
)
from nomic_bert_hf.model.tokenization import bert_uncased_tokenizer
from nomic_bert_hf.training.runs import (
    ARCHITECTURE_FIELDS,
    CheckpointFilesCallback,
    MaskingEpochCallback,
    RunTrainingArguments,
    check_resume_compatible,
    prepare_output_dir,
    save_final_model,
    setup_logging,
    train,
)
from nomic_bert_hf.utils.cli import run_command
from nomic_bert_hf.utils.configs import parse_config
from nomic_bert_hf.utils.files import load_strict, naming_a_full_disk

logger = logging.getLogger(__name__)


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Checkpoint to continue pretraining (folder or Hub id); none: a new model"}
    )
    revision: str | None = field(default=None, metadata={"help": "Hub revision of model_name_or_path"})
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "Tokenizer folder or Hub id; none: the bert-base-uncased vocabulary shipped"}
    )
    # Architecture of a new model (NomicBertConfig fields; unset ones keep nomic-bert-2048's values). With
    # model_name_or_path they override the checkpoint's config (useful for the dropouts).
    n_embd: int | None = field(default=None, metadata={"help": "Hidden size"})
    n_layer: int | None = field(default=None, metadata={"help": "Number of layers"})
    n_head: int | None = field(default=None, metadata={"help": "Attention heads"})
    n_inner: int | None = field(default=None, metadata={"help": "SwiGLU width"})
    rotary_emb_base: float | None = field(default=None, metadata={"help": "RoPE base"})
    resid_pdrop: float | None = field(default=None, metadata={"help": "Dropout on embeddings and residual branches"})
    embd_pdrop: float | None = field(default=None, metadata={"help": "Dropout before a classifier"})
    attn_pdrop: float | None = field(default=None, metadata={"help": "Dropout on attention probabilities"})
    initializer_range: float | None = field(default=None, metadata={"help": "Std of the initial weights"})

    def config_overrides(self) -> dict:
        names = ("n_embd", "n_layer", "n_head", "n_inner", "rotary_emb_base", "resid_pdrop", "embd_pdrop",
                 "attn_pdrop", "initializer_range")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


@dataclass
class DataArguments:
    train_data: list[str] = field(
        default_factory=lambda: ["training/data/default/mlm/train-*.jsonl.gz"],
        metadata={"help": "Local files, globs or folders (jsonl[.gz], json, parquet, txt[.gz]), or Hub dataset ids; "
                          "text, or sequences already tokenized and packed (an input_ids column)"},
    )
    data_mirror: str | None = field(
        default=None, metadata={"help": "Folder with a copy of every Hub dataset at <data_mirror>/<org>/<name>"}
    )
    data_config_name: str | None = field(default=None, metadata={"help": "Hub dataset config, e.g. 20231101.en"})
    data_split: str = field(default="train", metadata={"help": "Hub dataset split"})
    data_revision: str | None = field(default=None, metadata={"help": "Hub dataset revision"})
    text_column: str = field(default="text", metadata={"help": "Column holding the documents"})
    text_sample_by: str = field(default="paragraph", metadata={"help": "A .txt document: line, paragraph or document"})
    encoding_errors: str = field(default="strict", metadata={"help": "Invalid UTF-8 in local files: strict or replace"})
    streaming: bool = field(default=False, metadata={"help": "Stream the corpus instead of preparing it up front"})
    shuffle_buffer: int = field(default=10_000, metadata={"help": "Streaming: documents shuffled at a time"})
    max_seq_length: int = field(default=2048, metadata={"help": "Tokens per packed sequence"})
    mlm_probability: float = field(default=0.3, metadata={"help": "Share of tokens masked (80/10/10 split)"})
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for tokenizing"})


def main(args: list[str] | None = None, callbacks: list[TrainerCallback] | None = None):
    """Run the stage; `callbacks` are extra Trainer callbacks (the pipeline and the tests watch or stop runs)."""
    model_args, data_args, training_args = parse_config((ModelArguments, DataArguments, RunTrainingArguments), args)
    configs = (model_args, data_args, training_args)
    setup_logging(training_args, __name__)
    resume_from = prepare_output_dir(
        training_args.output_dir, training_args.resume_from_checkpoint, training_args.overwrite_output_dir
    )
    set_seed(training_args.seed)

    # 1. Load the tokenizer and the model: a new one from the architecture fields, or a checkpoint to continue
    if model_args.tokenizer_name:
        tokenizer = AutoTokenizer.from_pretrained(model_args.tokenizer_name)
    else:
        tokenizer = bert_uncased_tokenizer()
    if model_args.model_name_or_path:
        model = load_strict(
            NomicBertForPreTraining, model_args.model_name_or_path, revision=model_args.revision,
            **model_args.config_overrides(),
        )
    else:
        model = NomicBertForPreTraining(NomicBertConfig(**model_args.config_overrides()))
    if data_args.max_seq_length > model.config.n_positions:
        raise ValueError(f"max_seq_length {data_args.max_seq_length} exceeds the model's n_positions "
                         f"{model.config.n_positions}")
    if resume_from:
        check_resume_compatible(resume_from, model)
    architecture = {name: getattr(model.config, name) for name in ARCHITECTURE_FIELDS}
    logger.info("Model: %s parameters, %s", f"{model.num_parameters():,}", architecture)

    # 2. Load the corpus and pack it into sequences of max_seq_length tokens ([CLS] doc [SEP] [CLS] doc [SEP] ...),
    #    or check sequences that come tokenized and packed
    with training_args.main_process_first(desc="tokenizing and packing the corpus"):
        documents = load_documents(
            data_args.train_data, text_column=data_args.text_column, config_name=data_args.data_config_name,
            split=data_args.data_split, revision=data_args.data_revision, streaming=data_args.streaming,
            encoding_errors=data_args.encoding_errors, text_sample_by=data_args.text_sample_by,
            mirror=data_args.data_mirror,
        )
        seed = training_args.data_seed if training_args.data_seed is not None else training_args.seed
        if is_packed(documents):
            train_dataset = check_packed(documents, data_args.max_seq_length, model.config.vocab_size,
                                         ", ".join(data_args.train_data))
            if data_args.streaming:
                train_dataset = train_dataset.shuffle(seed=seed, buffer_size=data_args.shuffle_buffer)
        elif data_args.streaming:
            train_dataset = pack_document_stream(
                documents, tokenizer, data_args.max_seq_length, seed=seed, shuffle_buffer=data_args.shuffle_buffer
            )
        else:
            train_dataset, stats = pack_documents(
                documents, tokenizer, data_args.max_seq_length, seed=seed,
                num_proc=data_args.preprocessing_num_workers,
            )
            logger.info("Corpus: %s", stats)

    sources_read = datasets_read(data_args)  # recorded in final/ (resolved now: the Hub may be out of reach later)

    # 3. Mask: DataCollatorForLanguageModeling (80% [MASK], 10% random, 10% unchanged), masks seeded per sequence
    collator = MaskingCollator(tokenizer, mlm_probability=data_args.mlm_probability, seed=training_args.seed)

    # 4. Train
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=[MaskingEpochCallback(collator), CheckpointFilesCallback(tokenizer, *configs), *(callbacks or [])],
    )
    with naming_a_full_disk(training_args.output_dir):
        result = train(trainer, resume_from)
        if result is not None:
            trainer.log_metrics("train", result.metrics)
            trainer.save_metrics("train", result.metrics)
        trainer.save_state()

        # 5. Save the final model (weights, code, tokenizer with vocab.txt, config.yaml) to {output_dir}/final/
        return save_final_model(trainer, tokenizer, *configs, overwrite=training_args.overwrite_output_dir,
                                datasets_read=sources_read)


def datasets_read(data_args: DataArguments) -> dict:
    """What each training source was: a Hub dataset's split, rows and commit; a local path's digest."""
    records = {}
    for source in data_args.train_data:
        if is_hub_id(source):
            records[source] = inspect_split(source, data_args.data_split, data_args.data_config_name,
                                            data_args.data_revision, data_args.data_mirror).record()
        elif Path(source).exists():
            records[source] = {"path": source, "revision": f"sha256:{local_digest(Path(source))}"}
        else:
            records[source] = {"path": source}  # a glob pattern; the pipeline records its corpus's file hashes
    return records


if __name__ == "__main__":
    run_command(main)
