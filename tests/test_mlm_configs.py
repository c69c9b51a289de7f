"""The shipped MLM configs: the published recipe's values, the optimizer groups the Trainer builds, launcher files."""

import json
from pathlib import Path

import pytest
import torch
from accelerate.commands.config.config_args import load_config_from_file
from transformers import Trainer, TrainingArguments

from nomic_bert_hf import NomicBertConfig, NomicBertForPreTraining
from nomic_bert_hf.training.runs import RunTrainingArguments
from nomic_bert_hf.utils.configs import parse_config

CONFIGS = Path(__file__).resolve().parents[1] / "training" / "configs" / "mlm"


def parse(mlm_script, name, *overrides):
    dataclasses = (mlm_script.ModelArguments, mlm_script.DataArguments, RunTrainingArguments)
    return parse_config(dataclasses, [str(CONFIGS / name), *overrides])


@pytest.mark.parametrize("name", ["tiny.yaml", "cpu-small.yaml", "nomic-bert-2048.yaml"])
def test_every_config_parses(mlm_script, name):
    model_args, data_args, training_args = parse(mlm_script, name, "--use_cpu", "true", "--bf16", "false")
    assert data_args.mlm_probability == 0.3 and training_args.max_grad_norm == 0.0
    assert training_args.warmup_steps == 0.06 and training_args.lr_scheduler_type == "linear"
    assert (training_args.adam_beta1, training_args.adam_beta2, training_args.adam_epsilon) == (0.9, 0.98, 1e-6)
    NomicBertConfig(**model_args.config_overrides())


def test_the_published_recipe(mlm_script):
    model_args, data_args, training_args = parse(mlm_script, "nomic-bert-2048.yaml", "--use_cpu", "true")
    config = NomicBertConfig(**model_args.config_overrides())
    assert (config.n_embd, config.n_layer, config.n_head, config.n_inner, config.vocab_size) == (768, 12, 12, 3072,
                                                                                                  30528)
    assert (config.rotary_emb_base, config.resid_pdrop, config.embd_pdrop, config.attn_pdrop) == (1000.0, 0.1, 0.1, 0.0)
    assert (data_args.max_seq_length, data_args.mlm_probability) == (2048, 0.3)
    assert training_args.learning_rate == 5e-4 and training_args.weight_decay == 1e-5
    assert training_args.bf16 and training_args.max_steps == 100_000
    eight_gpus = 8
    global_batch = training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps * eight_gpus
    assert global_batch == 4096
    assert 130e6 < NomicBertForPreTraining(config).num_parameters() < 140e6


def test_weight_decay_skips_biases_and_layer_norms(tmp_path):
    """The Trainer's default grouping matches Nomic's rule: no decay on parameters with fewer than two dimensions
    (LayerNorm weights and biases; the model's linear layers have no biases)."""
    model = NomicBertForPreTraining(NomicBertConfig(n_embd=32, n_layer=2, n_head=4, n_inner=64))
    args = TrainingArguments(output_dir=str(tmp_path), weight_decay=1e-5, use_cpu=True, report_to="none")
    optimizer = Trainer(model=model, args=args).create_optimizer()
    names = {id(parameter): name for name, parameter in model.named_parameters()}
    groups = {group["weight_decay"]: {names[id(p)] for p in group["params"]} for group in optimizer.param_groups}
    assert groups[0.0] == {name for name, parameter in model.named_parameters() if parameter.ndim < 2}
    assert all(isinstance(model.get_submodule(name.rsplit(".", 1)[0]), torch.nn.LayerNorm) for name in groups[0.0])
    assert groups[1e-5] == {name for name, parameter in model.named_parameters() if parameter.ndim >= 2}


def test_launcher_configs():
    zero2 = load_config_from_file(str(CONFIGS / "accelerate-deepspeed-zero2.yaml"))
    assert zero2.distributed_type == "DEEPSPEED"
    deepspeed_file = Path(zero2.deepspeed_config["deepspeed_config_file"])
    assert deepspeed_file == Path("training/configs/mlm/deepspeed-zero2.json")
    deepspeed = json.loads((CONFIGS.parents[2] / deepspeed_file).read_text())
    assert deepspeed["zero_optimization"]["stage"] == 2 and deepspeed["data_types"]["grad_accum_dtype"] == "fp32"
    assert deepspeed["gradient_clipping"] == deepspeed["train_batch_size"] == "auto"  # from the training config
    fsdp = load_config_from_file(str(CONFIGS / "accelerate-fsdp.yaml"))
    assert fsdp.distributed_type == "FSDP" and fsdp.mixed_precision == "bf16"
    assert fsdp.fsdp_config["fsdp_transformer_layer_cls_to_wrap"] == "NomicBertBlock"
    assert fsdp.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"
