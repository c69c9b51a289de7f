"""Nomic Embed's tasks and their prefixes, defined once.

Search is asymmetric (`search_query: ` on queries, `search_document: ` on documents); classification and clustering
put one prefix on both sides. Every other form derives from `TASKS`: the prompts saved with an embedder
(`embedder_prompts`), the prompt of each training column of the contrastive stage and of each column in the corpus
manifest (`column_prompts`, read back by `task_of_prompts`), and mteb's prompt keys (`mteb_prompts`).
Plain Python, so the corpus builder and the evaluation protocol can import it.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    """A Nomic task: the prefix of its query side, of its document side, and the mteb task types it is used for."""

    name: str
    query_prefix: str
    document_prefix: str
    mteb_types: tuple[str, ...]

    @property
    def symmetric(self) -> bool:
        return self.query_prefix == self.document_prefix


SEARCH = Task("search", "search_query: ", "search_document: ", ("Retrieval", "Reranking"))
TASKS = {
    task.name: task
    for task in (
        SEARCH,
        Task("classification", "classification: ", "classification: ",
             ("Classification", "MultilabelClassification", "PairClassification", "STS", "Summarization")),
        Task("clustering", "clustering: ", "clustering: ", ("Clustering",)),
    )
}


def task_prefixes(name: str) -> tuple[str, str]:
    """The (query, document) prefixes of a task, e.g. ("search_query: ", "search_document: ") for search."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {sorted(TASKS)}")
    return TASKS[name].query_prefix, TASKS[name].document_prefix


def column_prompts(name: str, columns: Sequence[str] = ("query", "document")) -> dict[str, str]:
    """The prompt of each column: the first (query) column gets the task's query prefix, the others (the document and
    its negatives, or the second sentence of a pair) the document prefix."""
    query_prefix, document_prefix = task_prefixes(name)
    return {column: query_prefix if position == 0 else document_prefix for position, column in enumerate(columns)}


def task_of_prompts(prompts: Mapping[str, str]) -> str:
    """The task whose `column_prompts` a column -> prompt mapping is (e.g. a corpus manifest's)."""
    for name in TASKS:
        if column_prompts(name, list(prompts)) == dict(prompts):
            return name
    raise ValueError(f"prompts {dict(prompts)} are no Nomic task's prefixes ({sorted(TASKS)})")


def embedder_prompts() -> dict[str, str]:
    """sentence-transformers' `prompts` saved with an embedder: search's sides as `query` and `document` (what
    `encode_query` / `encode_document` use), each symmetric task under its own name."""
    symmetric = {task.name: task.query_prefix for task in TASKS.values() if task.symmetric}
    return {**column_prompts(SEARCH.name), **symmetric}


def mteb_prompts() -> dict[str, str]:
    """mteb's prompt keys: each task type a task is used for (`<type>-query` / `<type>-document` for search's sides),
    then bare `query` / `document` for any other task type that encodes queries and documents."""
    prompts = {}
    for task in TASKS.values():
        for task_type in task.mteb_types:
            if task.symmetric:
                prompts[task_type] = task.query_prefix
            else:
                prompts.update({f"{task_type}-{side}": prefix for side, prefix in column_prompts(task.name).items()})
    return {**prompts, **column_prompts(SEARCH.name)}
