"""Trains the tiny MLM model a few steps under PyTorch FSDP2 sharded as training/configs/mlm/accelerate-fsdp.yaml
says (every module of its `fsdp_transformer_layer_cls_to_wrap` class, then the root), on CPU processes over gloo,
and saves the gathered full state dict (the config's FULL_STATE_DICT) as one safetensors file.

    torchrun --nproc_per_node 2 tests/fsdp_worker.py ACCELERATE_CONFIG.yaml OUTPUT.safetensors

accelerate itself shards only on accelerators; this checks, on CPUs, that the model shards as the config describes.
"""

import sys
from pathlib import Path

import torch
import torch.distributed as dist
import yaml
from safetensors.torch import save_file
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.fsdp import fully_shard

from nomic_bert_hf import NomicBertConfig, NomicBertForPreTraining, modeling_nomic_bert

TINY = {"n_embd": 32, "n_layer": 2, "n_head": 4, "n_inner": 64, "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}
STEPS, ROWS, LENGTH, LEARNING_RATE = 3, 4, 16, 1e-3


def batch(step: int, rank: int) -> torch.Tensor:
    """The token ids rank `rank` trains on at `step` (a single process trains on every rank's rows at once)."""
    return torch.randint(1000, 30000, (ROWS, LENGTH), generator=torch.Generator().manual_seed(100 * step + rank))


def main():
    config_file, output = sys.argv[1:]
    dist.init_process_group("gloo")
    fsdp = yaml.safe_load(Path(config_file).read_text())["fsdp_config"]
    assert fsdp["fsdp_version"] == 2 and fsdp["fsdp_state_dict_type"] == "FULL_STATE_DICT"
    block = getattr(modeling_nomic_bert, fsdp["fsdp_transformer_layer_cls_to_wrap"])
    torch.manual_seed(0)
    model = NomicBertForPreTraining(NomicBertConfig(**TINY))
    for module in model.modules():
        if isinstance(module, block):
            fully_shard(module, reshard_after_forward=fsdp["fsdp_reshard_after_forward"])
    fully_shard(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE)
    for step in range(STEPS):
        ids = batch(step, dist.get_rank())
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if dist.get_rank() == 0:
        save_file({name: tensor.clone().contiguous() for name, tensor in state.items()}, output)
    dist.barrier()  # no process leaves the group while another still uses it (gloo aborts then)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
