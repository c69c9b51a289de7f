"""The one-command pipeline on a tiny configuration: end to end, bit-identical when repeated, resumable after a kill,
and refusing bad input before any training. The fast tier runs it once; the repeated and the killed runs are slow."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from script_loader import load_script
from sentence_transformers import SentenceTransformer

from nomic_bert_hf.data.corpus import CorpusError
from nomic_bert_hf.model.embedder_folder import weights_digest
from nomic_bert_hf.utils.compute import choose_dtype, dtype_name

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "training" / "configs" / "pipeline" / "tiny.yaml"
pipeline = load_script("training/pipeline.py")


def run_pipeline(tmp: Path, *flags: str, config: Path = TINY) -> subprocess.Popen:
    """The pipeline as a user runs it, in its own process group (so a test can kill all of its stages)."""
    command = [sys.executable, str(ROOT / "training" / "pipeline.py"), str(config),
               "--output_dir", str(tmp / "runs"), "--publish_dir", str(tmp / "nomic-embed-text"), *flags]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def finish(process: subprocess.Popen) -> str:
    output, _ = process.communicate(timeout=900)
    assert process.returncode == 0, output[-4000:]
    return output


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipeline")
    output = finish(run_pipeline(tmp))
    return tmp, output


def test_end_to_end_writes_a_publishable_model(first_run, monkeypatch):
    tmp, output = first_run
    runs, published = tmp / "runs", tmp / "nomic-embed-text"
    for stage in ("mlm", "pretrain", "finetune"):
        assert (runs / stage / "final" / "model.safetensors").is_file()
        assert json.loads((runs / stage / "final" / "provenance.json").read_text())["stages"][stage]["seed"] == 42
    assert len(list((runs / "mine").glob("*.jsonl.gz"))) == 7  # 3 stage-3 datasets, samples of the 4 stage-2 ones
    results = json.loads((runs / "results.json").read_text())
    assert {row["task"] for row in results["tasks"]} == {"reference_summaries", "wordnet_similarity"}
    assert all(0 <= row["score"] <= 1 for row in results["tasks"])
    dtype = dtype_name(choose_dtype("auto"))  # mining and evaluation: bf16 where the CPU has bf16 matrix units
    assert results["compute"]["dtype"] == dtype and results["compute"]["cpu_capability"]
    assert "reference_summaries" in (runs / "results.md").read_text() and "reference_summaries" in output
    seconds = results["seconds"]  # where the minutes went: every stage timed, training loops inside their stages
    assert set(seconds) == {"mlm", "pretrain", "mine", "finetune", "evaluate", "publish"}
    for stage in ("mlm", "pretrain", "finetune"):
        assert 0 < seconds[stage]["training_loop"] < seconds[stage]["wall"]
    assert "Where this run's minutes went" in output and "| mine |" in (runs / "results.md").read_text()
    record = json.loads((published / "provenance.json").read_text())
    assert set(record["stages"]) == {"mlm", "pretrain", "finetune"}
    assert record["pipeline"]["dtype"] == record["compute"]["dtype"] == dtype  # recorded resolved, not "auto"
    assert record["weights"] == weights_digest(published) == weights_digest(runs / "finetune" / "final")
    assert record["environment"]["versions"]["transformers"] and "manifest.json" not in record["corpus"]["files"]
    assert any(path.endswith("train-00000.jsonl.gz") for path in record["corpus"]["files"])
    card = (published / "README.md").read_text()
    assert "reference_summaries" in card and "search_query: " in card
    monkeypatch.chdir(tmp)  # the published name works as a model id in its parent folder
    model = SentenceTransformer("nomic-embed-text", trust_remote_code=True)
    assert model.prompts["query"] == "search_query: "
    assert model.encode_query(["What does ls do?"]).shape == (1, 32)


@pytest.mark.slow
def test_a_finished_pipeline_is_not_rerun(first_run):
    tmp, _ = first_run
    final = tmp / "runs" / "finetune" / "final" / "model.safetensors"
    before = final.stat().st_mtime_ns
    output = finish(run_pipeline(tmp))
    assert not any(script in output for script in ("training/mlm.py", "contrastive.py", "mine_negatives.py"))
    assert final.stat().st_mtime_ns == before


@pytest.mark.slow
def test_same_config_and_seed_give_identical_weights(first_run, tmp_path):
    tmp, _ = first_run
    finish(run_pipeline(tmp_path, "--stop_after", "finetune"))
    for stage in ("mlm", "pretrain", "finetune"):
        assert weights_digest(tmp_path / "runs" / stage / "final") == weights_digest(tmp / "runs" / stage / "final")


@pytest.mark.slow
def test_a_killed_pipeline_resumes_from_its_checkpoint(first_run, tmp_path):
    tmp, _ = first_run
    process = run_pipeline(tmp_path, "--stop_after", "finetune")
    checkpoint = tmp_path / "runs" / "pretrain" / "checkpoint-4"
    deadline = time.time() + 600
    while not (checkpoint / "trainer_state.json").is_file():
        assert process.poll() is None and time.time() < deadline, "the pipeline ended before the checkpoint"
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "runs" / "pretrain" / "final").exists()
    mlm_final = tmp_path / "runs" / "mlm" / "final" / "model.safetensors"
    mlm_written = mlm_final.stat().st_mtime_ns
    output = finish(run_pipeline(tmp_path, "--stop_after", "finetune"))
    assert "resuming from" in output and "training/mlm.py" not in output
    assert mlm_final.stat().st_mtime_ns == mlm_written
    for stage in ("pretrain", "finetune"):
        assert weights_digest(tmp_path / "runs" / stage / "final") == weights_digest(tmp / "runs" / stage / "final")


@pytest.mark.slow
def test_a_full_disk_stops_the_pipeline_by_name_and_a_rerun_with_room_finishes_alike(first_run, small_disk, tmp_path):
    tmp, _ = first_run
    process = run_pipeline(small_disk, "--stop_after", "mlm")  # the outputs on a 20 MB disk: full within the MLM stage
    output, _ = process.communicate(timeout=900)
    assert process.returncode == 1
    assert f"no space left on device writing to {small_disk}" in output
    assert "pipeline.py: error: training/mlm.py failed" in output.strip().splitlines()[-1]
    assert not (small_disk / "runs" / "mlm" / "final").exists()  # nothing a rerun could take as finished
    moved = tmp_path / "moved"
    shutil.copytree(small_disk, moved)  # the user frees space, here by moving the run to a larger disk
    finish(run_pipeline(moved, "--stop_after", "mlm"))
    assert weights_digest(moved / "runs" / "mlm" / "final") == weights_digest(tmp / "runs" / "mlm" / "final")


@pytest.mark.parametrize("rerun", [[], ["--rerun", "publish"]])
def test_a_users_folder_as_publish_dir_is_refused_before_training_and_kept(tmp_path, rerun):
    users = tmp_path / "my-folder"
    users.mkdir()
    (users / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=f"publish_dir {users} exists and is not a model this pipeline "
                                              "published.*nothing in it was changed"):
        pipeline.main([str(TINY), "--output_dir", str(tmp_path / "runs"), "--publish_dir", str(users), *rerun])
    assert [path.name for path in users.iterdir()] == ["notes.txt"] and (users / "notes.txt").read_text() == "mine"
    assert not (tmp_path / "runs" / "mlm").exists()


@pytest.mark.slow
def test_a_final_folder_the_pipeline_never_recorded_is_finished_again(first_run, tmp_path):
    tmp, _ = first_run
    runs = tmp_path / "runs"
    shutil.copytree(tmp / "runs", runs, ignore=shutil.ignore_patterns("finetune", "mine", "evaluate"))
    for stage in ("mlm", "pretrain"):  # killed between the stage's rename of final/ and the pipeline's record
        (runs / stage / "final" / "provenance.json").unlink()
    output = finish(run_pipeline(tmp_path, "--stop_after", "pretrain"))
    assert output.count("has no record of its run") == 2
    for stage in ("mlm", "pretrain"):
        assert weights_digest(runs / stage / "final") == weights_digest(tmp / "runs" / stage / "final")
        assert json.loads((runs / stage / "final" / "provenance.json").read_text())["stage"] == stage
        assert not (runs / stage / "checkpoint-7").exists()  # resumed at max_steps: no step past it


def signal_during(process: subprocess.Popen, program: str, signum: int, after: float = 6.0) -> None:
    """Send `signum` to the pipeline's process group `after` seconds into the first stage that runs `program`."""
    for line in process.stdout:
        if "running" in line and program in line:
            break
    time.sleep(after)
    os.killpg(process.pid, signum)


@pytest.mark.slow
def test_a_pipeline_killed_at_any_stage_reruns_to_the_uninterrupted_weights(first_run, tmp_path):
    tmp, _ = first_run
    expected = {stage: weights_digest(tmp / "runs" / stage / "final") for stage in ("mlm", "pretrain", "finetune")}
    runs, published = tmp_path / "runs", tmp_path / "nomic-embed-text"

    # during an MLM checkpoint's save: killed once checkpoint-4 has weights (its optimizer and state still to come)
    process = run_pipeline(tmp_path, "--stop_after", "mlm")
    weights = runs / "mlm" / "checkpoint-4" / "model.safetensors"
    deadline = time.time() + 600
    while not weights.exists():
        assert process.poll() is None and time.time() < deadline, "the MLM stage ended before checkpoint-4"
        time.sleep(0.001)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (runs / "mlm" / "final").exists()
    cut_short = not (runs / "mlm" / "checkpoint-4" / "trainer_state.json").exists()
    output = finish(run_pipeline(tmp_path, "--stop_after", "mlm"))
    assert ("skipping" in output and "checkpoint-4" in output) == cut_short
    assert weights_digest(runs / "mlm" / "final") == expected["mlm"]

    # during mining, during evaluation and during publishing; each rerun of the same command carries on
    for program in ("mine_negatives.py", "evaluation/mteb_eval.py", "nomic_bert_hf.hub.publish"):
        process = run_pipeline(tmp_path)
        signal_during(process, program, signal.SIGKILL)
        process.wait()
        assert not published.exists()  # a publish killed before its rename leaves nothing under the name
    output = finish(run_pipeline(tmp_path))
    for stage, digest in expected.items():
        assert weights_digest(runs / stage / "final") == digest
    assert weights_digest(published) == expected["finetune"]
    assert json.loads((published / "provenance.json").read_text())["stage"] == "publish"
    results = json.loads((runs / "results.json").read_text())["tasks"]
    assert results == json.loads((tmp / "runs" / "results.json").read_text())["tasks"]
    assert not [path for path in tmp_path.rglob("*") if ".partial" in path.name]


@pytest.mark.slow
def test_ctrl_c_stops_the_pipeline_with_status_130(tmp_path):
    config = tmp_path / "long-mlm.yaml"  # the tiny pipeline, its MLM stage long enough to be interrupted mid-way
    config.write_text(TINY.read_text().replace('mlm_args: [--max_steps, "6"', 'mlm_args: [--max_steps, "100000"'))
    process = run_pipeline(tmp_path, "--stop_after", "mlm", config=config)
    checkpoint = tmp_path / "runs" / "mlm" / "checkpoint-2" / "trainer_state.json"
    deadline = time.time() + 600
    while not checkpoint.exists():
        assert process.poll() is None and time.time() < deadline, "the MLM stage ended before checkpoint-2"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)  # as a terminal's Ctrl-C reaches pipeline and stage
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 130, output[-3000:]
    assert output.strip().splitlines()[-1] == "pipeline.py: interrupted"
    assert not (tmp_path / "runs" / "mlm" / "final").exists()


def test_reproduce_reruns_the_recorded_recipe(first_run):
    tmp, _ = first_run
    published = tmp / "nomic-embed-text"
    config = pipeline.reproduction_config(published)
    assert config.output_dir == f"{tmp / 'runs'}-reproduced" and config.publish_dir == f"{published}-reproduced"
    recorded = Path(config.mlm_config)
    assert recorded.is_file() and "max_steps: 6" in recorded.read_text() and "output_dir" not in recorded.read_text()


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (lambda corpus: shutil.rmtree(corpus), CorpusError, "does not exist"),
        (lambda corpus: (corpus / "pairs" / "faq" / "train-00000.jsonl.gz").write_bytes(b"tampered"), CorpusError,
         "pairs/faq/train-00000.jsonl.gz does not match the manifest"),
        (lambda corpus: (corpus / "manifest.json").write_text(json.dumps({"files": {}, "mlm": {}, "pairs": {},
                                                                          "eval": {}})), CorpusError, "empty"),
    ],
)
def test_bad_corpus_stops_before_training(tmp_path, change, error, message):
    corpus = tmp_path / "corpus"
    shutil.copytree(ROOT / "training" / "data" / "default", corpus)
    change(corpus)
    with pytest.raises(error, match=message):
        pipeline.main([str(TINY), "--corpus", str(corpus), "--output_dir", str(tmp_path / "runs")])
    assert not (tmp_path / "runs" / "mlm").exists()


def test_unknown_config_keys_and_stages_are_named(tmp_path):
    (tmp_path / "bad.yaml").write_text("mlm_confg: x.yaml\n")
    with pytest.raises(ValueError, match="mlm_confg"):
        pipeline.main([str(tmp_path / "bad.yaml")])
    with pytest.raises(ValueError, match="pretrian"):
        pipeline.main([str(TINY), "--rerun", "pretrian"])


def test_reproduction_pins_the_commits_the_stages_read():
    commit = "0123456789abcdef0123456789abcdef01234567"
    contrastive = {"train_datasets": {"paq": {"path": "nomic-ai/nomic-embed-unsupervised-data", "split": "paq"},
                                      "local": {"path": "pairs.jsonl"}}}
    read = {"paq": {"revision": commit}, "local": {"revision": "sha256:2098b956fe9f1d29"}}
    pinned = pipeline.pin_revisions(contrastive, read)["train_datasets"]
    assert pinned["paq"]["revision"] == commit and "revision" not in pinned["local"]  # a digest cannot be pinned
    mlm = pipeline.pin_revisions({"train_data": ["nomic-ai/nomic-bert-pretokenized-2048-wiki-2023"]},
                                 {"nomic-ai/nomic-bert-pretokenized-2048-wiki-2023": {"revision": commit}})
    assert mlm["data_revision"] == commit
