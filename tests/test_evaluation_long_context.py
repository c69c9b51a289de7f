"""Long-context evaluation: a local long-document retrieval task at 512 and 4096 tokens on a tiny model."""

import json
from pathlib import Path

import pytest
from evaluation_data import COMMANDS, write_retrieval_task
from script_loader import load_script

from nomic_bert_hf.evaluation import (
    embedder_model_meta,
    evaluate_long_context,
    find_runs,
    resolve_tasks,
)
from nomic_bert_hf.evaluation.results import markdown_length_table
from nomic_bert_hf.model.embedder import build_embedder, save_embedder
from nomic_bert_hf.model.embedder_folder import weights_digest

REPO = Path(__file__).resolve().parents[1]
NAME = "test/long-context"


@pytest.fixture(scope="module")
def embedder_dir(encoder_dir, tmp_path_factory):
    return save_embedder(build_embedder(encoder_dir), tmp_path_factory.mktemp("model") / "long-context")


@pytest.fixture(scope="module")
def long_task_dir(tmp_path_factory):
    return write_retrieval_task(tmp_path_factory.mktemp("tasks") / "long-command-retrieval", repeat_document=250)


@pytest.fixture(scope="module")
def evaluated(embedder_dir, long_task_dir, tmp_path_factory):
    results_dir = tmp_path_factory.mktemp("results")
    table = evaluate_long_context(embedder_dir, resolve_tasks([str(long_task_dir)]), results_dir=results_dir,
                                  lengths=(512, 4096), rotary_scaling_factor=4.0, name=NAME, batch_size=4,
                                  show_progress_bar=False)
    return table, results_dir


def test_documents_are_longer_than_the_longest_length(tokenizer):
    _, text = COMMANDS["grep"]
    assert len(tokenizer(" ".join([text] * 250))["input_ids"]) > 4096


def test_scores_by_length_come_from_separate_experiments(evaluated, embedder_dir):
    table, results_dir = evaluated
    assert list(table) == ["long-command-retrieval"] and set(table["long-command-retrieval"]) == {512, 4096}
    scores = table["long-command-retrieval"]
    assert all(0 <= score <= 1 for score in scores.values())
    assert scores[512] != scores[4096]  # the longer context changes what the model sees
    runs = {run.max_seq_length: run for run in find_runs(results_dir, revision=weights_digest(embedder_dir))}
    assert runs[512].experiment == {}  # the standard protocol's length: no experiment
    assert runs[4096].experiment == {"max_seq_length": 4096, "rotary_scaling_factor": 4.0}
    assert runs[4096].folder.name == "max_seq_length_4096__rotary_scaling_factor_4.0"
    recorded = json.loads((runs[4096].folder / "model_meta.json").read_text())
    assert recorded["experiment_kwargs"] == runs[4096].experiment and recorded["name"] == NAME
    assert "| long-command-retrieval |" in markdown_length_table(table)


def test_scaling_is_set_on_the_model_config_above_the_trained_length(embedder_dir):
    long = embedder_model_meta(embedder_dir, max_seq_length=4096, rotary_scaling_factor=4.0).load_model()
    assert long.model.max_seq_length == 4096
    assert long.model[0].auto_model.config.rotary_scaling_factor == 4.0
    assert long.model[0].auto_model.config.max_trained_positions == 2048


def test_the_script_prints_the_table_from_the_cache(evaluated, embedder_dir, long_task_dir, capsys):
    table, results_dir = evaluated
    script = load_script("evaluation/long_context.py")
    # `--model`: the older spelling of `--model_name_or_path`, still accepted
    again = script.main([str(REPO / "evaluation/configs/long_context/tiny.yaml"), "--model", str(embedder_dir),
                         "--model_name", NAME, "--rotary_scaling_factor", "4.0", "--output_dir", str(results_dir),
                         "--tasks", str(long_task_dir)])
    assert again == table  # both read from the files mteb wrote
    assert "| Task | 512 tokens | 4096 tokens |" in capsys.readouterr().out
    report = results_dir / "long_context" / f"test__long-context__{weights_digest(embedder_dir)}"
    assert (report / "summary.md").is_file() and (report / "config.yaml").is_file()
