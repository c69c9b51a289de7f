"""One definition of Nomic Embed's tasks (`nomic_bert_hf.tasks`): every form derived from it agrees with the others
(embedder prompts, mteb protocol, contrastive training columns, corpus manifest and the pipeline's task lookup)."""

import subprocess
import sys
from pathlib import Path

import pytest
from corpus_build import datasets as D

from nomic_bert_hf.data.corpus import Corpus
from nomic_bert_hf.data.pair_data import pair_columns
from nomic_bert_hf.evaluation.protocol import PROTOCOL_PROMPTS
from nomic_bert_hf.model.embedder import PROMPTS
from nomic_bert_hf.tasks import (
    TASKS,
    column_prompts,
    embedder_prompts,
    mteb_prompts,
    task_of_prompts,
    task_prefixes,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "training"))
import stages  # noqa: E402


@pytest.fixture(scope="module")
def corpus():
    return Corpus.load(ROOT / "training" / "data" / "default", verify=False)


def saved_prompt_name(task: str) -> str:
    """The embedder prompt that carries a task's query prefix."""
    return "query" if task == "search" else task


def test_embedder_prompts_are_nomics_in_their_saved_order():
    assert list(embedder_prompts().items()) == [
        ("query", "search_query: "),
        ("document", "search_document: "),
        ("classification", "classification: "),
        ("clustering", "clustering: "),
    ]
    assert PROMPTS == embedder_prompts()


def test_mteb_prompts_keep_their_published_order():
    assert list(mteb_prompts().items()) == [
        ("Retrieval-query", "search_query: "),
        ("Retrieval-document", "search_document: "),
        ("Reranking-query", "search_query: "),
        ("Reranking-document", "search_document: "),
        ("Classification", "classification: "),
        ("MultilabelClassification", "classification: "),
        ("PairClassification", "classification: "),
        ("STS", "classification: "),
        ("Summarization", "classification: "),
        ("Clustering", "clustering: "),
        ("query", "search_query: "),
        ("document", "search_document: "),
    ]
    assert PROTOCOL_PROMPTS == mteb_prompts()


@pytest.mark.parametrize("name", TASKS)
def test_the_embedders_prompts_are_the_protocols_for_each_task_type(name):
    task = TASKS[name]
    for task_type in task.mteb_types:
        if task.symmetric:
            assert PROTOCOL_PROMPTS[task_type] == PROMPTS[name]
        else:
            assert PROTOCOL_PROMPTS[f"{task_type}-query"] == PROMPTS["query"]
            assert PROTOCOL_PROMPTS[f"{task_type}-document"] == PROMPTS["document"]


@pytest.mark.parametrize("name", TASKS)
def test_contrastive_columns_get_the_tasks_saved_prompts(name):
    prompts = column_prompts(name, pair_columns(3))
    assert list(prompts) == ["query", "document", "negative_1", "negative_2", "negative_3"]
    assert prompts["query"] == PROMPTS[saved_prompt_name(name)] == task_prefixes(name)[0]
    assert {prompts[column] for column in pair_columns(3)[1:]} == {task_prefixes(name)[1]}
    assert task_of_prompts(prompts) == name


def test_only_search_is_asymmetric():
    assert [name for name, task in TASKS.items() if not task.symmetric] == ["search"]


def test_prompts_of_no_task_are_refused():
    with pytest.raises(ValueError, match="no Nomic task"):
        task_of_prompts({"query": "search_query: ", "document": "classification: "})
    with pytest.raises(ValueError, match="unknown task 'retrieval'"):
        task_prefixes("retrieval")


def test_every_manifest_prompt_comes_from_a_task(corpus):
    for name in [*corpus.pair_datasets(), *corpus.eval_tasks()]:
        prompts = corpus.prompts(name)
        assert column_prompts(corpus.task(name), list(prompts)) == prompts, name
    assert corpus.task("doc_sections") == "clustering" and corpus.task("wordnet_similarity") == "classification"
    assert D.SEARCH == column_prompts("search") and D.CLUSTERING == column_prompts("clustering")


@pytest.mark.parametrize("stage", [2, 3])
def test_the_pipeline_trains_each_corpus_dataset_with_its_manifest_prefixes(corpus, stage):
    for name, spec in stages.pair_datasets(corpus, stage).items():
        assert column_prompts(spec["task"]) == corpus.prompts(name), name


def test_the_module_imports_nothing_heavy():
    code = (
        "import importlib.util, sys; spec = importlib.util.spec_from_file_location('tasks', sys.argv[1]); "
        "spec.loader.exec_module(importlib.util.module_from_spec(spec)); "
        "print(sorted({'torch', 'transformers', 'sentence_transformers', 'mteb', 'datasets'} & set(sys.modules)))"
    )
    tasks_file = ROOT / "src" / "nomic_bert_hf" / "tasks.py"
    result = subprocess.run([sys.executable, "-c", code, str(tasks_file)], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
