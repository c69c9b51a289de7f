"""The published recipes on (local copies of) the data Nomic released on the Hub: the configs name every split, stage
1 reads the pre-tokenized sequences as they are, stage 2 streams one source per global batch across processes and
resumes exactly, stage 3 samples 7 of each row's released negatives."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
import torch
import yaml
from hub_copies import CONFIGS, PRETOKENIZED, SUPERVISED, UNSUPERVISED, config_splits
from huggingface_hub._local_folder import write_download_metadata
from safetensors.torch import load_file
from script_loader import load_script
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
from transformers import PreTrainedTokenizerBase

from nomic_bert_hf.data.hub_data import inspect_split
from nomic_bert_hf.data.mlm_data import check_packed
from nomic_bert_hf.data.pair_data import PairSource, load_pairs, parse_sources
from nomic_bert_hf.data.pair_stream import SingleSourceStream, StreamSource, rank_rows
from nomic_bert_hf.model.embedder import PROMPTS
from nomic_bert_hf.training.runs import RunTrainingArguments
from nomic_bert_hf.utils.configs import parse_config

ROOT = Path(__file__).resolve().parents[1]
UNSUPERVISED_CONFIG = CONFIGS / "contrastive" / "nomic-embed-text-v1-unsupervised.yaml"
TINY_CONTRASTIVE = ["--per_device_train_batch_size", "4", "--mini_batch_size", "4", "--max_seq_length", "24",
                    "--bf16", "false", "--dataloader_num_workers", "0", "--use_cpu", "true", "--logging_steps", "1"]
TASK_PROMPTS = {"paq": PROMPTS["query"], "reddit_title_body": PROMPTS["clustering"],
                "amazon_reviews": PROMPTS["classification"], "squad": PROMPTS["query"]}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def starts_with_prompt(text, prompt):
    return text.replace(" ", "").startswith(prompt.replace(" ", ""))


def published_sources(config):
    """The data arguments that training/contrastive.py parses from a published config, and the sources it reads (the
    model to train comes from the pipeline or the command line: no stage config names another run's folder)."""
    script = load_script("training/contrastive.py")
    dataclasses = [script.ModelArguments, script.DataArguments, script.LossArguments,
                   script.ContrastiveTrainingArguments]
    _, data_args, _, _ = parse_config(dataclasses, [str(CONFIGS / "contrastive" / config), "--bf16", "false",
                                                    "--model_name_or_path", "runs/mlm/final"])
    return data_args, parse_sources(data_args.train_datasets)


def test_published_recipes_read_every_released_split():
    _, unsupervised = published_sources("nomic-embed-text-v1-unsupervised.yaml")
    assert len(unsupervised) == 29 and {source.path for source in unsupervised} == {UNSUPERVISED}
    for name in ("nomic-embed-text-v1.yaml", "nomic-embed-text-v1.5.yaml"):
        data_args, supervised = published_sources(name)
        assert len(supervised) == 10 and data_args.num_negatives == 7
        assert {source.path for source in supervised} == {SUPERVISED}
    mlm = load_script("training/mlm.py")
    _, data_args, _ = parse_config([mlm.ModelArguments, mlm.DataArguments, RunTrainingArguments],
                                   [str(CONFIGS / "mlm" / "nomic-bert-2048.yaml"), "--use_cpu", "true"])
    assert data_args.train_data == [PRETOKENIZED]


def test_no_tracked_file_names_a_placeholder_dataset():
    tracked = subprocess.run(["git", "-C", str(ROOT), "ls-files"], capture_output=True, text=True).stdout.split()
    placeholders = [path for path in tracked if path.endswith((".py", ".yaml", ".md")) and path != "tests/test_nomic_data.py"
                    and "my-org/" in (ROOT / path).read_text(errors="replace")]
    assert placeholders == []


def test_stage_1_uses_pretokenized_rows_without_the_tokenizer(nomic_mirror, tmp_path, monkeypatch):
    def no_tokenizing(*args, **kwargs):
        raise AssertionError("the tokenizer was called on pre-tokenized rows")

    monkeypatch.setattr(PreTrainedTokenizerBase, "__call__", no_tokenizing)
    batches = []
    original = load_script("training/mlm.py").MaskingCollator.__call__
    monkeypatch.setattr("nomic_bert_hf.data.mlm_data.MaskingCollator.__call__",
                        lambda self, rows, *a, **k: batches.append(rows) or original(self, rows, *a, **k))
    final = load_script("training/mlm.py").main([
        str(CONFIGS / "mlm" / "nomic-bert-2048.yaml"), "--data_mirror", str(nomic_mirror), "--n_embd", "32",
        "--n_layer", "1", "--n_head", "2", "--n_inner", "64", "--per_device_train_batch_size", "2",
        "--gradient_accumulation_steps", "1", "--max_steps", "2", "--bf16", "false", "--use_cpu", "true",
        "--preprocessing_num_workers", "1", "--output_dir", str(tmp_path / "mlm"),
    ])
    copy = datasets.load_dataset(str(nomic_mirror / PRETOKENIZED), split="train")
    rows = {tuple(row) for row in copy["input_ids"]}
    assert len(batches) >= 2 and all(tuple(row["input_ids"]) in rows for batch in batches for row in batch)
    recorded = json.loads((final / "datasets.json").read_text())[PRETOKENIZED]
    assert recorded["rows"] == len(copy) and recorded["revision"].startswith("sha256:")


@pytest.mark.parametrize("row, message", [
    (list(range(100, 116)), "row 3 has 16 tokens, not the max_seq_length of 32"),
    ([30600] + list(range(100, 131)), "row 3 holds the token id 30600, outside the model's vocabulary of 30528"),
])
@pytest.mark.parametrize("streaming", [False, True])
def test_bad_pretokenized_rows_are_named(tmp_path, row, message, streaming):
    rows = [list(range(100, 132))] * 3 + [row] + [list(range(100, 132))]
    path = tmp_path / "packed.parquet"
    datasets.Dataset.from_dict({"input_ids": rows}).to_parquet(path)
    sequences = datasets.load_dataset("parquet", data_files=str(path), split="train", streaming=streaming)
    with pytest.raises(ValueError, match=message):
        list(check_packed(sequences, 32, 30528, str(path)))


@pytest.mark.slow
def test_stage_2_streams_one_source_per_global_batch_on_two_processes(mlm_dir, nomic_mirror, tmp_path):
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(ROOT / "tests" / "contrastive_ddp_worker.py"), str(tmp_path / "records"), str(UNSUPERVISED_CONFIG),
        "--model_name_or_path", str(mlm_dir), "--output_dir", str(tmp_path / "run"), "--data_mirror", str(nomic_mirror),
        *TINY_CONTRASTIVE, "--gradient_accumulation_steps", "2", "--max_steps", "12", "--save_steps", "100",
    ]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600)
    assert result.returncode == 0, [line for line in result.stderr.splitlines() if "rror" in line][-20:]
    ranks = [json.loads((tmp_path / "records" / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [len(records) for records in ranks] == [24, 24]  # 12 steps x 2 micro-batches on each process
    sources = set()
    for step in range(12):
        batches = [record for records in ranks for record in records if record["step"] == step]
        assert len(batches) == 4 and len({record["dataset"] for record in batches}) == 1, batches
        assert all(record["rows"] == 4 and record["gathered_rows"] == [8, 8] for record in batches)
        sources.add(batches[0]["dataset"])
    assert len(sources) > 3  # sources drawn in proportion to their rows: 29 equal splits here
    assert [record["query"] for record in ranks[0]] != [record["query"] for record in ranks[1]]  # their own rows
    for record in ranks[0] + ranks[1]:
        if record["dataset"] in TASK_PROMPTS:
            assert starts_with_prompt(record["query"], TASK_PROMPTS[record["dataset"]]), record
    recorded = json.loads((tmp_path / "run" / "final" / "datasets.json").read_text())
    assert sorted(recorded) == sorted(config_splits(UNSUPERVISED_CONFIG.name))


@pytest.mark.slow
def test_streamed_run_killed_and_resumed_ends_with_the_same_weights(mlm_dir, nomic_mirror, tmp_path, interrupt_at):
    script = load_script("training/contrastive.py")
    args = [str(UNSUPERVISED_CONFIG), "--model_name_or_path", str(mlm_dir), "--data_mirror", str(nomic_mirror),
            *TINY_CONTRASTIVE, "--max_steps", "8", "--save_steps", "3", "--shuffle_window", "5"]
    uninterrupted = script.main([*args, "--output_dir", str(tmp_path / "a")])
    with pytest.raises(interrupt_at.Interrupted):
        script.main([*args, "--output_dir", str(tmp_path / "b")], callbacks=[interrupt_at(5)])
    assert not (tmp_path / "b" / "final").exists() and (tmp_path / "b" / "checkpoint-3").is_dir()
    with pytest.raises(ValueError, match="per_device_train_batch_size changed since it started"):
        script.main([*args, "--output_dir", str(tmp_path / "b"), "--resume_from_checkpoint", "true",
                     "--per_device_train_batch_size", "2"])
    resumed = script.main([*args, "--output_dir", str(tmp_path / "b"), "--resume_from_checkpoint", "true"])
    expected, actual = load_file(uninterrupted / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert expected.keys() == actual.keys() and all(torch.equal(expected[key], actual[key]) for key in expected)
    before = load_file(mlm_dir / "model.safetensors")["bert.encoder.layers.0.attn.Wqkv.weight"]
    assert not torch.equal(before, actual["encoder.layers.0.attn.Wqkv.weight"])  # it did train


def test_stage_3_trains_on_7_of_each_rows_released_negatives(mlm_dir, nomic_mirror, tmp_path, monkeypatch):
    source = PairSource("fever", str(nomic_mirror / SUPERVISED), split="fever_hn_mine")
    pairs = load_pairs(source, num_negatives=7, seed=3)
    released = {row["query"]: row["negative"] for row in
                datasets.load_dataset(str(nomic_mirror / SUPERVISED), split="fever_hn_mine")}
    for row in pairs:
        chosen = [row[f"negative_{j}"] for j in range(1, 8)]
        assert len(set(chosen)) == 7 and set(chosen) <= set(released[row["query"]])
    columns = []
    compute_loss = SentenceTransformerTrainer.compute_loss
    monkeypatch.setattr(SentenceTransformerTrainer, "compute_loss", lambda trainer, model, inputs, *a, **k: (
        columns.append(sorted(key for key in inputs if key.endswith("_input_ids")))
        or compute_loss(trainer, model, inputs, *a, **k)))
    load_script("training/contrastive.py").main([
        str(CONFIGS / "contrastive" / "nomic-embed-text-v1.5.yaml"), "--model_name_or_path", str(mlm_dir),
        "--data_mirror", str(nomic_mirror), *TINY_CONTRASTIVE, "--matryoshka_dims", "32", "16", "--max_steps", "2",
        "--output_dir", str(tmp_path / "ft"),
    ])
    negatives = [f"negative_{j}_input_ids" for j in range(1, 8)]
    assert columns and all(batch == sorted(["query_input_ids", "document_input_ids", *negatives]) for batch in columns)


def published_pipeline(tmp_path, mirror, **changes) -> Path:
    """The published v1.5 pipeline config with only the model size, batch sizes, step counts, the evaluation (Hub
    benchmarks are unreachable offline: the default corpus's held-out tasks instead) and the mirror changed."""
    config = yaml.safe_load((CONFIGS / "pipeline" / "nomic-embed-text-v1.5.yaml").read_text())
    small = ["--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "1", "--bf16", "false",
             "--use_cpu", "true", "--save_steps", "2"]
    contrastive = [*TINY_CONTRASTIVE, "--save_steps", "2"]
    config.update(
        output_dir=str(tmp_path / "runs"), publish_dir=str(tmp_path / "published"), data_mirror=str(mirror),
        launcher="", long_context_config=None, eval_config="evaluation/configs/mteb_eval/pipeline-tiny.yaml",
        mlm_args=[*small, "--n_embd", "32", "--n_layer", "2", "--n_head", "4", "--n_inner", "64", "--max_steps", "2",
                  "--preprocessing_num_workers", "1"],
        pretrain_args=[*contrastive, "--max_steps", "4"],
        finetune_args=[*contrastive, "--matryoshka_dims", "32", "16", "--max_steps", "2"],
    )
    config.update(changes)
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_pipeline(*args):
    return subprocess.run([sys.executable, str(ROOT / "training" / "pipeline.py"), *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_published_pipeline_runs_every_stage_on_the_released_data(nomic_mirror, tmp_path):
    result = run_pipeline(published_pipeline(tmp_path, nomic_mirror))
    assert result.returncode == 0, result.stderr[-3000:]
    runs = tmp_path / "runs"
    assert not (runs / "mine").exists()  # the released fine-tuning data carry their negatives: nothing is mined
    record = json.loads((tmp_path / "published" / "provenance.json").read_text())
    assert record["corpus"] is None and set(record["datasets"]) == {"mlm", "pretrain", "finetune"}
    assert record["datasets"]["mlm"][PRETOKENIZED]["rows"] == 48
    assert len(record["datasets"]["pretrain"]) == 29 and len(record["datasets"]["finetune"]) == 10
    revisions = {entry["revision"] for stage in record["datasets"].values() for entry in stage.values()}
    assert len(revisions) == 3 and all(revision.startswith("sha256:") for revision in revisions)
    assert "nomic-ai/nomic-embed-supervised-data" in (tmp_path / "published" / "README.md").read_text()
    published = SentenceTransformer(str(tmp_path / "published"), trust_remote_code=True)
    assert published.get_embedding_dimension() == 32 and published.prompts["query"] == PROMPTS["query"]


def test_plan_reports_the_released_data_and_each_stage(nomic_mirror, tmp_path):
    result = run_pipeline(published_pipeline(tmp_path, nomic_mirror), "--plan", "true", "--tokens_per_second", "1000")
    assert result.returncode == 0, result.stderr[-3000:]
    plan = result.stdout
    assert "| mlm | 2 | 2 | 8,192 |" in plan  # 2 steps x global batch 2 x 2048 tokens
    assert "| pretrain | 4 | 4 |" in plan and "| finetune | 4 | 2 |" in plan
    for split in [*config_splits("nomic-embed-text-v1-unsupervised.yaml"), *config_splits("nomic-embed-text-v1.5.yaml")]:
        assert f"| {split} | {split} | 200 | 2 |" in plan
    assert "pre-tokenized, 2048 tokens per row" in plan and "negatives: negative" in plan
    assert not (tmp_path / "runs").exists()  # a plan trains and writes nothing


@pytest.mark.parametrize("change, message", [
    ({"split": "reddit_titles"}, "has no split 'reddit_titles'; its splits are"),
    pytest.param({"query_column": "title"}, r"has no column \['title'\]", marks=pytest.mark.slow),
    pytest.param({"path": "nomic-ai/nomic-embed-unsupervised-datas"}, "the mirror .* has no copy of it",
                 marks=pytest.mark.slow),
    pytest.param({}, r"dataset '\w+' .* has 200 rows, fewer than one global batch of 256", marks=pytest.mark.slow),
])
def test_plan_names_a_missing_split_column_dataset_or_rows(nomic_mirror, tmp_path, change, message):
    stage = yaml.safe_load(UNSUPERVISED_CONFIG.read_text())
    stage["train_datasets"]["reddit_title_body"].update(change)
    (tmp_path / "pretrain.yaml").write_text(yaml.safe_dump(stage))
    larger_batch = {} if change else {"pretrain_args": [*TINY_CONTRASTIVE, "--per_device_train_batch_size", "256"]}
    config = published_pipeline(tmp_path, nomic_mirror, pretrain_config=str(tmp_path / "pretrain.yaml"), **larger_batch)
    result = run_pipeline(config, "--plan", "true")
    assert result.returncode != 0 and re.search(message, result.stderr), result.stderr[-2000:]


def test_a_copy_records_its_commit_and_must_match_a_pinned_revision(nomic_mirror, tmp_path):
    copy = tmp_path / SUPERVISED
    shutil.copytree(nomic_mirror / SUPERVISED, copy)
    digest = inspect_split(SUPERVISED, "fever_hn_mine", mirror=str(tmp_path)).revision
    assert digest.startswith("sha256:")
    (copy / "data" / "fever_hn_mine-00000-of-00002.parquet").write_bytes(b"changed")
    assert inspect_split(SUPERVISED, "reddit_triples", mirror=str(tmp_path)).revision != digest
    shutil.rmtree(copy)
    shutil.copytree(nomic_mirror / SUPERVISED, copy)
    commit = "0123456789abcdef0123456789abcdef01234567"
    for file in [file for file in copy.rglob("*") if file.is_file()]:  # as `huggingface-cli download --local-dir`
        write_download_metadata(copy, str(file.relative_to(copy)), commit_hash=commit, etag="x")
    assert inspect_split(SUPERVISED, "fever_hn_mine", revision=commit[:7], mirror=str(tmp_path)).revision == commit
    with pytest.raises(ValueError, match=f"is a copy of commit {commit}, not of the pinned revision v2"):
        inspect_split(SUPERVISED, "fever_hn_mine", revision="v2", mirror=str(tmp_path))


def test_stream_batches_do_not_depend_on_workers_and_resume_anywhere(nomic_mirror):
    """Data-loader workers only share out the tokenizing: 0, 2 or 3 workers, from the start or from step 5, give the
    same batches in the same order."""
    splits = {name: inspect_split(SUPERVISED, name, mirror=str(nomic_mirror))
              for name in ("fever_hn_mine", "reddit_triples", "nli_simcse_50negs_fixed")}

    def batches(workers, start_step=0):
        stream = SingleSourceStream(
            [StreamSource(name, split, "query", "document", "negative", {}) for name, split in splits.items()],
            batch_size=4, batches_per_step=2, num_workers=workers, seed=1, num_negatives=3, shuffle_window=16)
        loader = torch.utils.data.DataLoader(stream.dataset(start_step), batch_size=4, num_workers=workers,
                                             collate_fn=list)
        return [[(row["dataset_name"], row["query"], row["negative_3"]) for row in batch] for batch in loader]

    alone = batches(0)
    assert len(alone) == 150 and batches(2) == alone and batches(3, start_step=5) == alone[10:]
    assert all(len({row[0] for row in batch}) == 1 for batch in alone)


def test_every_row_of_a_source_belongs_to_one_process(nomic_mirror):
    split = inspect_split(UNSUPERVISED, "paq", mirror=str(nomic_mirror))
    split.files, split.file_rows = split.files * 3, [70, 60, 70, 60, 70, 60]  # 6 files for 4 processes: 2 left over
    per_process = [rank_rows(split, "paq", 0, 4, rank) for rank in range(4)]
    assert sum(per_process) == sum(split.file_rows) and max(per_process) - min(per_process) <= 50
