"""Runs training/contrastive.py under torchrun and records, per rank, what the loss received at each micro-batch: the
optimizer step, the dataset, the decoded first query and document, the local rows, and the rows of the tensors the
loss gathered across processes.

    torchrun --nproc_per_node 2 tests/contrastive_ddp_worker.py RECORD_DIR CONFIG.yaml [--field value ...]
"""

import json
import os
import sys
from pathlib import Path

import torch
from script_loader import load_script
from sentence_transformers import SentenceTransformerTrainer
from sentence_transformers.sentence_transformer.losses import (
    cached_multiple_negatives_ranking as cmnrl,
)


def main():
    record_dir, script_args = Path(sys.argv[1]), sys.argv[2:]
    rank = int(os.environ["RANK"])
    records = []
    compute_loss = SentenceTransformerTrainer.compute_loss
    all_gather_with_grad = cmnrl.all_gather_with_grad

    def recording_compute_loss(trainer, model, inputs, *args, **kwargs):
        tokenizer = trainer.model.tokenizer
        records.append(
            {
                "step": trainer.state.global_step,
                "dataset": inputs.get("dataset_name"),
                "query": tokenizer.decode(inputs["query_input_ids"][0], skip_special_tokens=True),
                "document": tokenizer.decode(inputs["document_input_ids"][0], skip_special_tokens=True),
                "rows": len(inputs["query_input_ids"]),
            }
        )
        return compute_loss(trainer, model, inputs, *args, **kwargs)

    def recording_all_gather_with_grad(tensor):
        gathered = all_gather_with_grad(tensor)
        records[-1].setdefault("gathered_rows", []).append(len(gathered))
        return gathered

    SentenceTransformerTrainer.compute_loss = recording_compute_loss
    cmnrl.all_gather_with_grad = recording_all_gather_with_grad
    load_script("training/contrastive.py").main(script_args)
    record_dir.mkdir(parents=True, exist_ok=True)
    (record_dir / f"rank{rank}.json").write_text(json.dumps(records))
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
