"""Evaluation through mteb's harness: local tasks, Nomic's prompts and normalisation, the result cache, ModelMeta."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from datasets import Dataset
from evaluation_data import (
    COMMANDS,
    STS_PAIRS,
    TOPICS,
    InputRecorder,
    write_classification_task,
    write_jsonl,
    write_retrieval_task,
    write_sts_task,
)
from mteb.results import TaskResult
from script_loader import load_script
from torch.utils.data import DataLoader

from nomic_bert_hf.evaluation import (
    PROTOCOL_PROMPTS,
    embedder_model_meta,
    evaluate_embedder,
    find_runs,
    load_local_task,
    resolve_tasks,
)
from nomic_bert_hf.model.embedder import build_embedder, save_embedder
from nomic_bert_hf.model.embedder_folder import weights_digest
from nomic_bert_hf.utils.compute import choose_dtype, dtype_name

NAME = "test/nomic-embed-text"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def embedder_dir(encoder_dir, tmp_path_factory):
    folder = save_embedder(build_embedder(encoder_dir, matryoshka=True),
                           tmp_path_factory.mktemp("model") / "nomic-embed-text")
    (folder / "config.yaml").write_text(yaml.safe_dump({"matryoshka_dims": [32, 16, 8]}))
    return folder


@pytest.fixture(scope="module")
def task_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tasks")
    return {
        "Retrieval": write_retrieval_task(root / "command-retrieval"),
        "STS": write_sts_task(root / "everyday-sts"),
        "Classification": write_classification_task(root / "topic-classification"),
    }


@pytest.fixture(scope="module")
def evaluated(embedder_dir, task_dirs, tokenizer, tmp_path_factory):
    """One evaluation of the three local tasks, with a recorder on the model mteb ran."""
    meta = embedder_model_meta(embedder_dir, name=NAME)
    encoder = meta.load_model()
    recorder = InputRecorder(encoder, tokenizer)
    results_dir = tmp_path_factory.mktemp("results")
    tasks = resolve_tasks([str(path) for path in task_dirs.values()])
    result = evaluate_embedder(encoder, tasks, results_dir=results_dir, show_progress_bar=False)
    return {"meta": meta, "encoder": encoder, "recorder": recorder, "results_dir": results_dir,
            "tasks": tasks, "result": result, "calls": recorder.calls}


def test_local_tasks_are_scored_by_mteb_and_cached_per_model_and_revision(evaluated, embedder_dir):
    result, results_dir = evaluated["result"], evaluated["results_dir"]
    assert not result.exceptions
    folder = results_dir / "results" / "test__nomic-embed-text" / weights_digest(embedder_dir)
    scores = {task.task_name: task.get_score() for task in result.task_results}
    assert set(scores) == {"command-retrieval", "everyday-sts", "topic-classification"}
    for task, score in scores.items():
        on_disk = TaskResult.from_disk(folder / f"{task}.json")
        assert on_disk.get_score() == pytest.approx(score) and 0 <= score <= 1
    retrieval = json.loads((folder / "command-retrieval.json").read_text())
    assert retrieval["scores"]["test"][0]["main_score"] == retrieval["scores"]["test"][0]["ndcg_at_10"]
    assert "NaN" in (folder / "command-retrieval.json").read_text()  # mteb's bare NaN, read back below
    (run,) = find_runs(results_dir)
    assert run.score("command-retrieval") == pytest.approx(scores["command-retrieval"])
    assert json.loads((folder / "model_meta.json").read_text())["name"] == NAME


def test_each_task_type_gets_nomics_prompt(evaluated, task_dirs):
    recorder = evaluated["recorder"]
    received = set(recorder.texts)
    expected = (
        [f"search_query: {summary}" for summary, _ in COMMANDS.values()]
        + [f"search_document: {name} {text}" for name, (_, text) in COMMANDS.items()]
        + [f"classification: {sentence}" for a, b, _ in STS_PAIRS for sentence in (a, b)]
        + [f"classification: {text}" for texts in TOPICS.values() for text in texts]
    )
    missing = [text for text in expected if recorder.as_received(text) not in received]
    assert not missing
    assert len(received) == len({recorder.as_received(text) for text in expected})  # nothing without its prompt


def test_classification_features_are_unnormalised_and_the_rest_normalised(evaluated):
    encoder, tasks = evaluated["encoder"], {task.metadata.type: task for task in evaluated["tasks"]}
    texts = DataLoader(Dataset.from_dict({"text": TOPICS["files"]}), batch_size=4)
    norms = {}
    for task_type in ("Classification", "STS", "Retrieval"):
        embeddings = encoder.encode(texts, task_metadata=tasks[task_type].metadata, hf_split="test",
                                    hf_subset="default", batch_size=4, show_progress_bar=False)
        norms[task_type] = np.linalg.norm(embeddings, axis=1)
    np.testing.assert_allclose(norms["STS"], 1, rtol=1e-5)
    np.testing.assert_allclose(norms["Retrieval"], 1, rtol=1e-5)
    np.testing.assert_allclose(norms["Classification"], math.sqrt(32), rtol=1e-3)  # the Matryoshka layer norm's output


def test_a_cached_rerun_does_no_new_work(evaluated):
    recorder, results_dir = evaluated["recorder"], evaluated["results_dir"]
    calls_before = recorder.calls
    again = evaluate_embedder(evaluated["encoder"], evaluated["tasks"], results_dir=results_dir, show_progress_bar=False)
    assert recorder.calls == calls_before
    assert {t.task_name: t.get_score() for t in again.task_results} == pytest.approx(
        {t.task_name: t.get_score() for t in evaluated["result"].task_results}, abs=1e-6)  # mteb stores 6 decimals

    def refuse_to_load(*args, **kwargs):
        raise AssertionError("a cached evaluation loaded the model")

    meta = evaluated["meta"].model_copy(update={"loader": refuse_to_load})
    assert len(evaluate_embedder(meta, evaluated["tasks"], results_dir=results_dir,
                                 show_progress_bar=False).task_results) == 3


def test_changed_local_data_is_evaluated_again(evaluated, tmp_path):
    recorder, results_dir = evaluated["recorder"], evaluated["results_dir"]
    folder = tmp_path / "everyday-sts"  # the same task name, with its scores reversed
    folder.mkdir()
    write_jsonl(folder / "test.jsonl", [{"sentence1": a, "sentence2": b, "score": 5 - s} for a, b, s in STS_PAIRS])
    calls_before = recorder.calls
    changed = load_local_task(folder)
    (result,) = evaluate_embedder(evaluated["encoder"], [changed], results_dir=results_dir,
                                  show_progress_bar=False).task_results
    assert recorder.calls > calls_before
    assert result.dataset_revision == changed.metadata.revision
    original = next(t for t in evaluated["result"].task_results if t.task_name == "everyday-sts")
    assert result.get_score() == pytest.approx(-original.get_score(), abs=1e-6)  # reversed scores, same embeddings


def test_model_meta_says_who_was_evaluated(evaluated, embedder_dir):
    meta, encoder = evaluated["meta"], evaluated["encoder"]
    assert meta.name == NAME and meta.revision == weights_digest(embedder_dir)
    assert meta.embed_dim == [32, 16, 8] and meta.max_tokens == 8192
    assert meta.n_parameters == sum(parameter.numel() for parameter in encoder.model.parameters())
    assert meta.license == "apache-2.0" and meta.training_datasets == set() and meta.experiment_kwargs is None
    assert meta.loader_kwargs["model_prompts"] == PROTOCOL_PROMPTS and "2402.01613" in meta.citation
    assert encoder.model.max_seq_length == 512
    assert encoder.mteb_model_meta.name == NAME


def test_other_settings_are_separate_experiments(embedder_dir):
    meta = embedder_model_meta(embedder_dir, name=NAME, embed_dim=16, max_seq_length=1024)
    assert meta.experiment_kwargs == {"embed_dim": 16, "max_seq_length": 1024}
    with pytest.raises(ValueError, match="embed_dim 12"):
        embedder_model_meta(embedder_dir, embed_dim=12)
    with pytest.raises(ValueError, match="exceeds"):
        embedder_model_meta(embedder_dir, max_seq_length=16384)
    assert embedder_model_meta(embedder_dir).name == "local/nomic-embed-text"
    with pytest.raises(FileNotFoundError, match="neither a local folder nor a Hub model"):  # offline in the tests
        embedder_model_meta("test-org/not-downloaded")


def test_task_and_benchmark_names_and_close_matches(task_dirs):
    names = [task.metadata.name for task in resolve_tasks(["STSBenchmark", "LongEmbed", str(task_dirs["STS"])])]
    assert names[0] == "STSBenchmark" and "LEMBPasskeyRetrieval" in names and names[-1] == "everyday-sts"
    assert len(resolve_tasks(["MTEB(eng, v2)"])) > 40
    with pytest.raises(ValueError, match="close matches: STSBenchmark"):
        resolve_tasks(["STSBenchmarkk"])
    with pytest.raises(ValueError, match=r"MTEB\(eng, v2\)"):
        resolve_tasks(["MTEB(eng,v2)"])


def test_bad_local_data_names_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a local task folder"):
        load_local_task(tmp_path)
    write_jsonl(tmp_path / "test.jsonl", [{"sentence1": "A dog runs.", "sentence2": "A dog is running.", "score": 4},
                                          {"sentence1": "A cat sleeps.", "sentence2": "A cat naps."}])
    task = load_local_task(tmp_path)
    with pytest.raises(ValueError, match=r"test.jsonl:2 lacks \['score'\]"):
        task.load_data()


def test_the_script_reports_and_records_its_config(evaluated, embedder_dir, task_dirs, capsys):
    script = load_script("evaluation/mteb_eval.py")
    calls_before = evaluated["recorder"].calls
    rows = script.main([str(REPO / "evaluation/configs/mteb_eval/tiny.yaml"), "--model_name_or_path", str(embedder_dir),
                        "--model_name", NAME, "--output_dir", str(evaluated["results_dir"]),
                        "--tasks", str(task_dirs["Retrieval"]), str(task_dirs["Classification"]), "--dtype", "auto"])
    assert {row["task"] for row in rows} == {"command-retrieval", "topic-classification"}
    folder = evaluated["results_dir"] / "results" / "test__nomic-embed-text" / weights_digest(embedder_dir)
    assert "| command-retrieval | Retrieval | ndcg_at_10 |" in (folder / "summary.md").read_text()
    assert yaml.safe_load((folder / "config.yaml").read_text())["model_name"] == NAME
    compute = yaml.safe_load((folder / "compute.yaml").read_text())  # what the scores were computed with
    assert compute["dtype"] == dtype_name(choose_dtype("auto")) and compute["cpu_capability"]
    assert "| Average | 2 |" in capsys.readouterr().out
    assert evaluated["recorder"].calls == calls_before  # served from the cache
