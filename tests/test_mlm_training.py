"""training/mlm.py end to end on the tiny config: learning, output folders, resume, DDP, continued pretraining."""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import AutoModelForMaskedLM
from transformers.trainer_pt_utils import safe_globals

from nomic_bert_hf import NomicBertConfig, NomicBertForPreTraining
from nomic_bert_hf.data.mlm_data import load_documents, pack_documents
from nomic_bert_hf.model.tokenization import bert_uncased_tokenizer
from nomic_bert_hf.training.runs import RunTrainingArguments, prepare_output_dir
from nomic_bert_hf.utils.configs import parse_config
from nomic_bert_hf.utils.files import load_strict

ROOT = Path(__file__).resolve().parents[1]
TINY_CONFIG = ROOT / "training" / "configs" / "mlm" / "tiny.yaml"
MLM_CONFIGS = ROOT / "training" / "configs" / "mlm"
FSDP_CONFIG = MLM_CONFIGS / "accelerate-fsdp.yaml"
FAST = ["--disable_tqdm", "true"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run(mlm_script, corpus, output_dir, *overrides, callbacks=None):
    args = [str(TINY_CONFIG), "--train_data", str(corpus), "--output_dir", str(output_dir), *FAST, *overrides]
    return mlm_script.main(args, callbacks=callbacks)


def logged_losses(output_dir):
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    return [entry["loss"] for entry in history if "loss" in entry], history


@pytest.fixture(scope="module")
def finished_run(mlm_script, corpus_file, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("mlm-run") / "run"
    final = run(mlm_script, corpus_file, output_dir)
    return output_dir, final


def test_tiny_run_learns(finished_run):
    output_dir, _ = finished_run
    losses, history = logged_losses(output_dir)
    assert len(losses) == 8 and all(math.isfinite(loss) for loss in losses)
    assert losses[-1] < losses[0] - 2.0  # about 10.2 -> 6.8
    assert all(entry["train_tokens_per_second"] > 0 for entry in history if "loss" in entry)


def test_final_folder_is_complete_and_loads(finished_run, mlm_script):
    output_dir, final = finished_run
    assert final == output_dir / "final"
    names = {path.name for path in final.iterdir()}
    assert {"model.safetensors", "config.json", "modeling_nomic_bert.py", "configuration_nomic_bert.py",
            "tokenizer.json", "vocab.txt", "config.yaml"} <= names
    assert "training_args.bin" not in names  # no pickles in a published folder
    assert len((final / "vocab.txt").read_text(encoding="utf-8").splitlines()) == 30522
    ours = load_strict(NomicBertForPreTraining, final)
    remote = AutoModelForMaskedLM.from_pretrained(final, trust_remote_code=True)
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), remote.state_dict().values()))
    dataclasses = (mlm_script.ModelArguments, mlm_script.DataArguments, RunTrainingArguments)
    model_args, data_args, training_args = parse_config(dataclasses, [str(final / "config.yaml")])
    assert (model_args.n_embd, data_args.max_seq_length, training_args.learning_rate) == (32, 64, 5e-3)
    assert training_args.include_num_input_tokens_seen == "all"
    for checkpoint in ("checkpoint-20", "checkpoint-40"):
        assert {"config.yaml", "vocab.txt", "optimizer.pt"} <= {p.name for p in (output_dir / checkpoint).iterdir()}


def test_a_finished_or_foreign_output_dir_is_never_overwritten(finished_run, mlm_script, corpus_file, tmp_path):
    output_dir, final = finished_run
    before = (final / "model.safetensors").read_bytes()
    for extra in ([], ["--resume_from_checkpoint", "true"]):
        with pytest.raises(FileExistsError, match="holds a finished run"):
            run(mlm_script, corpus_file, output_dir, *extra)
    (tmp_path / "notes.txt").write_text("someone's files")
    with pytest.raises(FileExistsError, match="is not empty; continue its run with --resume_from_checkpoint true"):
        run(mlm_script, corpus_file, tmp_path)
    assert (final / "model.safetensors").read_bytes() == before and (tmp_path / "notes.txt").exists()


def test_overwrite_output_dir_replaces_the_final_model(mlm_script, small_corpus_file, tmp_path):
    run(mlm_script, small_corpus_file, tmp_path, "--max_steps", "2", "--save_strategy", "no")
    first = load_file(tmp_path / "final" / "model.safetensors")
    run(mlm_script, small_corpus_file, tmp_path, "--max_steps", "2", "--save_strategy", "no", "--seed", "7",
        "--overwrite_output_dir", "true")
    second = load_file(tmp_path / "final" / "model.safetensors")
    assert not torch.equal(first["bert.emb_ln.weight"], second["bert.emb_ln.weight"])
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]  # no staging folders left


@pytest.fixture(scope="module")
def small_packed_file(small_corpus_file, tmp_path_factory):
    """The small corpus tokenized and packed to the tiny config's 64 tokens, as a pre-tokenized parquet file."""
    documents = load_documents([str(small_corpus_file)])
    sequences, _ = pack_documents(documents, bert_uncased_tokenizer(), 64, seed=0)
    path = tmp_path_factory.mktemp("packed") / "packed.parquet"
    sequences.to_parquet(path)
    return path


@pytest.mark.parametrize(("corpus", "bf16"), [("small_corpus_file", "false"), ("small_packed_file", "false"),
                                               ("small_corpus_file", "true")])
def test_interrupted_and_resumed_run_ends_with_identical_weights(mlm_script, corpus, bf16, tmp_path, interrupt_at,
                                                                 request):
    corpus_path = request.getfixturevalue(corpus)  # text, or the same text pre-tokenized
    steps = ["--max_steps", "12", "--save_steps", "4", "--logging_steps", "2", "--bf16", bf16]  # bf16: autocast
    uninterrupted = run(mlm_script, corpus_path, tmp_path / "a", *steps)
    with pytest.raises(interrupt_at.Interrupted):
        run(mlm_script, corpus_path, tmp_path / "b", *steps, callbacks=[interrupt_at(10)])
    checkpoint = tmp_path / "b" / "checkpoint-8"
    assert not (tmp_path / "b" / "final").exists()
    assert json.loads((checkpoint / "trainer_state.json").read_text())["epoch"] > 1  # resumed mid-way, epoch 2
    for name in ("optimizer.pt", "scheduler.pt"):  # read back by the Trainer with weights_only=True
        torch.load(checkpoint / name, weights_only=True)
    with safe_globals():  # numpy's RNG state: the Trainer allowlists numpy arrays and dtypes, nothing else
        assert set(torch.load(checkpoint / "rng_state.pth", weights_only=True)) >= {"python", "numpy", "cpu"}
    resumed = run(mlm_script, corpus_path, tmp_path / "b", *steps, "--resume_from_checkpoint", "true")
    expected, actual = load_file(uninterrupted / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert expected.keys() == actual.keys()
    assert all(torch.equal(expected[key], actual[key]) for key in expected)
    assert {tensor.dtype for tensor in actual.values()} == {torch.float32}  # bf16 autocast keeps fp32 weights
    losses = [[(entry["step"], entry["loss"]) for entry in logged_losses(tmp_path / run_dir)[1] if "loss" in entry]
              for run_dir in ("a", "b")]
    assert losses[0] == losses[1] and [step for step, _ in losses[1]] == [2, 4, 6, 8, 10, 12]


def test_resuming_a_checkpoint_of_another_architecture_is_refused(finished_run, mlm_script, corpus_file, tmp_path):
    output_dir, _ = finished_run
    with pytest.raises(ValueError, match=r"another architecture: n_embd 32 \(this run: 64\)"):
        run(mlm_script, corpus_file, tmp_path / "other", "--n_embd", "64",
            "--resume_from_checkpoint", str(output_dir / "checkpoint-20"))
    (output_dir / "checkpoint-20" / "trainer_state.json").rename(output_dir / "state.json")
    try:
        with pytest.raises(ValueError, match="checkpoint-20 cannot be resumed: it has no trainer_state.json"):
            run(mlm_script, corpus_file, tmp_path / "other", "--resume_from_checkpoint",
                str(output_dir / "checkpoint-20"))
    finally:
        (output_dir / "state.json").rename(output_dir / "checkpoint-20" / "trainer_state.json")


def test_continued_pretraining_starts_from_the_checkpoint(finished_run, mlm_script, corpus_file, tmp_path):
    _, final = finished_run
    run(mlm_script, corpus_file, tmp_path / "more", "--model_name_or_path", str(final), "--max_steps", "5",
        "--save_strategy", "no")
    losses, _ = logged_losses(tmp_path / "more")
    assert losses[0] < 8.0  # a new model starts at about 10.3
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text((final / "config.json").read_text())
    with pytest.raises(OSError, match="model.safetensors"):
        run(mlm_script, corpus_file, tmp_path / "none", "--model_name_or_path", str(tmp_path / "empty"))


def test_streaming_run(mlm_script, corpus_file, tmp_path):
    final = run(mlm_script, corpus_file, tmp_path, "--streaming", "true", "--max_steps", "4", "--save_strategy", "no",
                "--logging_steps", "2")
    losses, _ = logged_losses(tmp_path)
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
    load_strict(NomicBertForPreTraining, final)


def launch(command: list, timeout: int = 300) -> str:
    """A multi-process launcher run to the end (its stderr returned), killed with its workers if it hangs."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    launcher = subprocess.Popen([str(part) for part in command], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, stderr = launcher.communicate(timeout=timeout)
    finally:
        if launcher.poll() is None:  # a hung rendezvous: stop the launcher and its workers
            os.killpg(launcher.pid, signal.SIGKILL)
    assert launcher.returncode == 0, stderr[-3000:]
    return stderr


TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
SIX_STEPS = ["--max_steps", "6", "--save_steps", "3", "--logging_steps", "2", *FAST]


@pytest.mark.slow
def test_ddp_with_two_processes(small_corpus_file, tmp_path):
    """torchrun, 2 CPU processes (gloo): the same script, unchanged."""
    output_dir = tmp_path / "ddp"
    launch([*TORCHRUN, ROOT / "training" / "mlm.py", TINY_CONFIG, "--train_data", small_corpus_file,
            "--output_dir", output_dir, *SIX_STEPS])
    losses, history = logged_losses(output_dir)
    assert len(losses) == 3 and all(math.isfinite(loss) for loss in losses)
    assert history[-1]["num_input_tokens_seen"] == 2 * 6 * 8 * 64  # two processes, 6 steps of 8 x 64 tokens each
    load_strict(NomicBertForPreTraining, output_dir / "final")


def fsdp_says_it_runs_as_ddp(stderr: str, checkpoint: Path) -> bool:
    return "FSDP was asked for but does not run here" in stderr


def zero2_shards_the_optimizer(stderr: str, checkpoint: Path) -> bool:
    return len(list((checkpoint / "global_step3").glob("zero_pp_rank_*_mp_rank_00_optim_states.pt"))) == 2


@pytest.mark.slow
@pytest.mark.parametrize("config_name, engine_ran", [("accelerate-fsdp.yaml", fsdp_says_it_runs_as_ddp),
                                                     ("accelerate-deepspeed-zero2.yaml", zero2_shards_the_optimizer)])
def test_the_scale_out_configs_under_accelerate_launch_train_two_cpu_processes_and_resume(
        small_corpus_file, tmp_path, config_name, engine_ran):
    """The FSDP and DeepSpeed configs as a CPU user runs them (use_cpu, 2 processes): DeepSpeed ZeRO-2 shards the
    optimizer over gloo; accelerate trains FSDP's CPU processes as DDP, which the run says. Either way a run resumed
    from its first checkpoint ends with the uninterrupted run's weights, saved as every other run saves them."""
    config = {**yaml.safe_load((MLM_CONFIGS / config_name).read_text()), "use_cpu": True, "num_processes": 2}
    cpu_config = tmp_path / config_name
    cpu_config.write_text(yaml.safe_dump(config))

    def accelerate_launch(output_dir, *flags):
        return launch([Path(sys.executable).parent / "accelerate", "launch", "--config_file", cpu_config,
                       ROOT / "training" / "mlm.py", TINY_CONFIG, "--train_data", small_corpus_file,
                       "--output_dir", output_dir, *SIX_STEPS, *flags])

    uninterrupted, resumed = tmp_path / "uninterrupted", tmp_path / "resumed"
    assert engine_ran(accelerate_launch(uninterrupted), uninterrupted / "checkpoint-3")
    _, history = logged_losses(uninterrupted)
    assert history[-1]["num_input_tokens_seen"] == 2 * 6 * 8 * 64
    shutil.copytree(uninterrupted / "checkpoint-3", resumed / "checkpoint-3")  # as if killed after the first save
    accelerate_launch(resumed, "--resume_from_checkpoint", "true")
    expected = load_file(uninterrupted / "final" / "model.safetensors")
    weights = load_file(resumed / "final" / "model.safetensors")
    assert weights.keys() == expected.keys() and all(torch.equal(weights[name], expected[name]) for name in expected)
    load_strict(NomicBertForPreTraining, resumed / "final")


@pytest.mark.slow
def test_fsdp2_shards_the_model_as_the_config_says_and_trains_like_one_process(tmp_path):
    """PyTorch FSDP2 on 2 CPU processes (gloo), wrapped as the FSDP config says: the gathered full state dict
    equals one process trained on both processes' rows, and loads as every checkpoint does."""
    import fsdp_worker

    sharded_file = tmp_path / "fsdp.safetensors"
    launch([*TORCHRUN, ROOT / "tests" / "fsdp_worker.py", FSDP_CONFIG, sharded_file])
    torch.manual_seed(0)
    model = NomicBertForPreTraining(NomicBertConfig(**fsdp_worker.TINY))
    optimizer = torch.optim.AdamW(model.parameters(), lr=fsdp_worker.LEARNING_RATE)
    for step in range(fsdp_worker.STEPS):
        ids = torch.cat([fsdp_worker.batch(step, rank) for rank in range(2)])
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    sharded = load_file(sharded_file)
    assert sharded.keys() == model.state_dict().keys()
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(sharded[name], tensor, atol=1e-5, rtol=1e-4, msg=name)
    reloaded = NomicBertForPreTraining(NomicBertConfig(**fsdp_worker.TINY))
    reloaded.load_state_dict(sharded, strict=True)
    reloaded.save_pretrained(tmp_path / "final")
    load_strict(NomicBertForPreTraining, tmp_path / "final")


def test_output_dir_rules_without_training(tmp_path):
    assert prepare_output_dir(tmp_path / "new", None, overwrite=False) is None
    assert prepare_output_dir(tmp_path, "false", overwrite=False) is None  # empty folder
    with pytest.raises(FileNotFoundError, match="holds no complete checkpoint-N folder"):
        prepare_output_dir(tmp_path, "true", overwrite=False)
    with pytest.raises(FileNotFoundError, match="checkpoint-7 does not exist"):
        prepare_output_dir(tmp_path, str(tmp_path / "checkpoint-7"), overwrite=False)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not empty; choose another output_dir"):
        prepare_output_dir(tmp_path, None, overwrite=False, resumable=False)
    assert prepare_output_dir(tmp_path, None, overwrite=True) is None
