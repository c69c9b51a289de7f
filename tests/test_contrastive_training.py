"""training/contrastive.py end to end on a tiny model and real pairs: stage 2 from an MLM checkpoint, stage 3 (v1.5
flavour) from its result, LoRA, two processes, bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from docstrings import write_pair_files
from script_loader import load_script
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer

from nomic_bert_hf.data.pair_data import PairSource, load_pairs
from nomic_bert_hf.model.embedder import PROMPTS
from nomic_bert_hf.model.lora import load_adapter_embedder, save_adapter
from nomic_bert_hf.model.lora import main as merge_main
from nomic_bert_hf.training.contrastive import load_embedder, retrieval_evaluator
from nomic_bert_hf.utils.configs import parse_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "training" / "configs" / "contrastive"
SCRIPT = "training/contrastive.py"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def train(config, output_dir, files, *extra):
    """Run the script in this process; return its final folder and what the loss received at every micro-batch."""
    records = []
    compute_loss = SentenceTransformerTrainer.compute_loss

    def recording_compute_loss(trainer, model, inputs, *args, **kwargs):
        decode = trainer.model.tokenizer.decode
        columns = [key.removesuffix("_input_ids") for key in inputs if key.endswith("_input_ids")]
        first_rows = {column: decode(inputs[f"{column}_input_ids"][0], skip_special_tokens=True) for column in columns}
        records.append({"dataset": inputs["dataset_name"], **first_rows})
        return compute_loss(trainer, model, inputs, *args, **kwargs)

    datasets = {"functions": str(files["functions"]), "classes": {"path": str(files["classes"]), "task": "classification"}}
    args = [
        str(CONFIGS / config), "--output_dir", str(output_dir), "--train_datasets", json.dumps(datasets),
        "--eval_datasets", json.dumps({"held_out": str(files["held_out"])}), "--eval_pairs", "0", *extra,
    ]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SentenceTransformerTrainer, "compute_loss", recording_compute_loss)
        final = load_script(SCRIPT).main(args)
    return final, records


def ndcg(model, files):
    held_out = load_pairs(PairSource("held_out", str(files["held_out"])))
    return retrieval_evaluator(held_out, "held_out")(model)["held_out_cosine_ndcg@10"]


def starts_with_prompt(text, prompt):
    return text.replace(" ", "").startswith(prompt.replace(" ", ""))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_pair_files(tmp_path_factory.mktemp("pairs"))


@pytest.fixture(scope="module")
def stage2(mlm_dir, files, tmp_path_factory):
    return train("tiny-pretrain.yaml", tmp_path_factory.mktemp("stage2"), files, "--model_name_or_path", str(mlm_dir))


@pytest.fixture(scope="module")
def stage3(stage2, files, tmp_path_factory):
    final2, _ = stage2
    return train(
        "tiny-finetune.yaml", tmp_path_factory.mktemp("stage3"), files, "--model_name_or_path", str(final2),
        "--pad_negatives", "true",
    )


def test_stage_2_then_stage_3_raise_held_out_retrieval(mlm_dir, files, stage2, stage3):
    untrained = ndcg(load_embedder(mlm_dir), files)
    pretrained = ndcg(SentenceTransformer(str(stage2[0]), trust_remote_code=True), files)
    finetuned = ndcg(SentenceTransformer(str(stage3[0]), trust_remote_code=True), files)
    assert untrained + 0.05 < pretrained < finetuned, (untrained, pretrained, finetuned)


def test_every_batch_is_one_source_with_its_prompts_applied_and_stored(stage2, stage3):
    for final, records in (stage2, stage3):
        assert {record["dataset"] for record in records} == {"functions", "classes"}
        for record in records:
            query_prompt, document_prompt = (
                (PROMPTS["query"], PROMPTS["document"]) if record["dataset"] == "functions" else (PROMPTS["classification"],) * 2
            )
            assert starts_with_prompt(record["query"], query_prompt), record
            documents = [text for column, text in record.items() if column not in ("dataset", "query")]
            assert documents and all(starts_with_prompt(text, document_prompt) for text in documents), record
        assert json.loads((final / "config_sentence_transformers.json").read_text())["prompts"] == PROMPTS
    assert {"negative_1", "negative_2", "negative_3"} <= set(stage3[1][0])


def test_final_folder_records_its_config_and_scores(stage2):
    final, _ = stage2
    names = {path.name for path in final.iterdir()}
    assert {"model.safetensors", "modeling_nomic_bert.py", "vocab.txt", "modules.json", "config.yaml", "README.md"} <= names
    script = load_script(SCRIPT)
    model_args, data_args, loss_args, training_args = parse_config(
        [script.ModelArguments, script.DataArguments, script.LossArguments, script.ContrastiveTrainingArguments],
        [str(final / "config.yaml")],
    )
    assert (loss_args.scale, loss_args.mini_batch_size, training_args.seed) == (50.0, 16, 12)
    assert set(data_args.train_datasets) == {"functions", "classes"}
    assert json.loads((final / "sentence_bert_config.json").read_text())["max_seq_length"] == 8192  # not the training 64
    card = (final / "README.md").read_text()
    log = card[card.index("### Training Logs") :]
    assert "held_out_cosine_ndcg@10" in log and "| -1 " in log  # before training (step -1) and after
    with pytest.raises(FileExistsError, match="--overwrite_output_dir true"):
        script.main([str(CONFIGS / "tiny-pretrain.yaml"), "--model_name_or_path", "unused", "--output_dir", str(final.parent),
                     "--train_datasets", '{"x": "x.jsonl"}'])


@pytest.mark.parametrize("dim", [16, 8])
def test_matryoshka_truncation_works_from_the_saved_folder(stage3, dim):
    model = SentenceTransformer(str(stage3[0]), trust_remote_code=True)
    norm = model[2].norm
    assert (norm.weight == 1).all() and (norm.bias == 0).all()  # frozen through training
    texts = ["search_query: Return the absolute path.", "search_document: Join two path components."]
    truncated = model.encode(texts, truncate_dim=dim, normalize_embeddings=True, convert_to_tensor=True)
    pooled = torch.stack([tokens.mean(0) for tokens in model.encode(texts, output_value="token_embeddings")])
    expected = torch.nn.functional.normalize(torch.nn.functional.layer_norm(pooled, (pooled.shape[-1],))[:, :dim], dim=-1)
    torch.testing.assert_close(truncated, expected, atol=1e-5, rtol=0)


def test_lora_adapter_saves_portably_reloads_and_merges(stage2, files, tmp_path):
    final2, _ = stage2
    final, _ = train(
        "tiny-finetune.yaml", tmp_path / "lora", files, "--model_name_or_path", str(final2), "--lora", "true",
        "--lora_r", "4", "--max_steps", "4", "--pad_negatives", "true",
    )
    adapter = tmp_path / "lora" / "adapter"
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == os.path.relpath(final2, adapter)
    assert sorted(config["target_modules"]) == ["Wqkv", "fc11", "fc12", "fc2", "out_proj"]
    assert not any(str(value).startswith("/") for value in config.values())
    assert not (adapter / "model.safetensors").exists() and (final / "model.safetensors").exists()
    texts = ["search_query: Return the absolute path.", "classification: Base class for text I/O."]
    with_adapter = load_adapter_embedder(adapter).encode(texts, convert_to_tensor=True)
    merged = SentenceTransformer(str(final), trust_remote_code=True).encode(texts, convert_to_tensor=True)
    base = SentenceTransformer(str(final2), trust_remote_code=True).encode(texts, convert_to_tensor=True)
    torch.testing.assert_close(merged, with_adapter, atol=1e-5, rtol=0)
    assert (with_adapter - base).abs().max() > 1e-4  # the adapter trained (and the merge was not a copy of the base)
    merge_main([str(adapter), str(tmp_path / "merged")])
    torch.testing.assert_close(
        SentenceTransformer(str(tmp_path / "merged"), trust_remote_code=True).encode(texts, convert_to_tensor=True),
        with_adapter, atol=1e-5, rtol=0,
    )
    # a Hub id given for the base is recorded as it is; a local base passed at load time overrides it
    hub = save_adapter(load_adapter_embedder(adapter), tmp_path / "hub", "nomic-ai/nomic-embed-text-v1-unsupervised")
    recorded = json.loads((hub / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert recorded == "nomic-ai/nomic-embed-text-v1-unsupervised"
    reloaded = load_adapter_embedder(hub, base_model=final2).encode(texts, convert_to_tensor=True)
    torch.testing.assert_close(reloaded, with_adapter, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_two_processes_train_on_single_source_global_batches(mlm_dir, files, tmp_path):
    datasets = {"functions": str(files["functions"]), "classes": {"path": str(files["classes"]), "task": "classification"}}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(ROOT / "tests" / "contrastive_ddp_worker.py"), str(tmp_path / "records"),
        str(CONFIGS / "tiny-pretrain.yaml"), "--model_name_or_path", str(mlm_dir), "--output_dir", str(tmp_path / "run"),
        "--train_datasets", json.dumps(datasets), "--per_device_train_batch_size", "16",
        "--gradient_accumulation_steps", "2", "--eval_pairs", "0", "--max_steps", "8",
    ]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300)
    assert result.returncode == 0, [line for line in result.stderr.splitlines() if "Error" in line or "error" in line][-20:]
    ranks = [json.loads((tmp_path / "records" / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [len(records) for records in ranks] == [16, 16]  # 8 steps x 2 micro-batches on each process
    for step in range(8):
        batches = [record for records in ranks for record in records if record["step"] == step]
        assert len(batches) == 4 and len({record["dataset"] for record in batches}) == 1, batches
        assert all(record["rows"] == 16 and record["gathered_rows"] == [32, 32] for record in batches)
    assert {record["dataset"] for record in ranks[0]} == {"functions", "classes"}
    assert [record["query"] for record in ranks[0]] != [record["query"] for record in ranks[1]]  # different rows
    for record in ranks[0] + ranks[1]:
        prompt = PROMPTS["query"] if record["dataset"] == "functions" else PROMPTS["classification"]
        assert starts_with_prompt(record["query"], prompt)
    assert (tmp_path / "run" / "final" / "model.safetensors").exists()


@pytest.mark.parametrize("config", sorted(path.name for path in CONFIGS.glob("*.yaml")))
def test_every_config_parses(config):
    script = load_script(SCRIPT)
    overrides = ["--model_name_or_path", "model", "--train_datasets", '{"pairs": "pairs.jsonl"}', "--bf16", "false"]
    model_args, data_args, loss_args, training_args = parse_config(
        [script.ModelArguments, script.DataArguments, script.LossArguments, script.ContrastiveTrainingArguments],
        [str(CONFIGS / config), *overrides],
    )
    assert loss_args.scale == 50.0 and loss_args.gradcache and training_args.max_grad_norm == 1.0
    if config.startswith("nomic-embed-text-v1"):
        expected = {
            "nomic-embed-text-v1-unsupervised.yaml": (2048, 2e-4, 700, 2048, 0, [], "inverse_sqrt"),
            "nomic-embed-text-v1.yaml": (32, 2e-5, 400, 512, 7, [], "linear"),
            "nomic-embed-text-v1.5.yaml": (32, 2e-5, 400, 512, 7, [768, 512, 256, 128, 64], "linear"),
        }[config]
        assert (
            training_args.per_device_train_batch_size, training_args.learning_rate, training_args.warmup_steps,
            model_args.max_seq_length, data_args.num_negatives, loss_args.matryoshka_dims, training_args.lr_scheduler_type.value,
        ) == expected
        assert training_args.num_train_epochs == 1 and training_args.weight_decay == 0.01 and loss_args.mini_batch_size == 64
        assert model_args.matryoshka == config.endswith("v1.5.yaml")


def bad_run(tmp_path, mlm_dir, rows, *extra):
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    load_script(SCRIPT).main(
        [str(CONFIGS / "tiny-finetune.yaml"), "--model_name_or_path", str(mlm_dir), "--output_dir", str(tmp_path / "run"),
         "--train_datasets", json.dumps({"mine": str(data)}), "--eval_pairs", "0", *extra]
    )


def test_bad_input_is_named(tmp_path, mlm_dir, files):
    rows = [json.loads(line) for line in files["functions"].read_text().splitlines()]
    with pytest.raises(ValueError, match="dataset 'mine' has 20 pairs, fewer than one global batch of 32"):
        bad_run(tmp_path, mlm_dir, rows[:20], "--num_negatives", "0")
    named = r"dataset 'mine' \(.*\) has no column \['query', 'document'\]; its columns are \['q', 'd'\]"
    with pytest.raises(ValueError, match=named):
        bad_run(tmp_path, mlm_dir, [{"q": row["query"], "d": row["document"]} for row in rows[:40]])
    with pytest.raises(ValueError, match=r"dataset 'mine': row \d+ has \d negatives but 3 are asked for"):
        bad_run(tmp_path, mlm_dir, rows[:200])
    assert not (tmp_path / "run" / "final").exists()


def test_streaming_local_files_and_what_a_stream_refuses(tmp_path, mlm_dir, files):
    args = [str(CONFIGS / "tiny-pretrain.yaml"), "--model_name_or_path", str(mlm_dir), "--streaming", "true",
            "--max_steps", "2", "--eval_pairs", "0"]
    two = {"functions": str(files["functions"]), "classes": {"path": str(files["classes"]), "task": "classification"}}
    final = load_script(SCRIPT).main([*args, "--output_dir", str(tmp_path / "two"), "--train_datasets", json.dumps(two)])
    assert json.loads((final / "datasets.json").read_text())["classes"]["rows"] == len(files["classes"].read_text().splitlines())
    with pytest.raises(ValueError, match="streaming reads every row once: pad_negatives and eval_pairs"):
        load_script(SCRIPT).main([*args, "--output_dir", str(tmp_path / "x"), "--train_datasets", json.dumps(two),
                                  "--eval_pairs", "10"])
    with pytest.raises(ValueError, match="max_steps 100000 exceeds the .* global batches the streamed datasets fill"):
        load_script(SCRIPT).main([*args, "--output_dir", str(tmp_path / "y"), "--train_datasets", json.dumps(two),
                                  "--max_steps", "100000"])
