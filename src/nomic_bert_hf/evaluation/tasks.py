"""Task selection by name: mteb tasks, mteb benchmarks and local task folders, in one list."""

import difflib
from collections.abc import Sequence
from pathlib import Path

import mteb
from mteb.abstasks import AbsTask

from .local_tasks import load_local_task


def known_names() -> list[str]:
    """Every mteb task and benchmark name."""
    return [task.metadata.name for task in mteb.get_tasks()] + [benchmark.name for benchmark in mteb.get_benchmarks()]


def resolve_tasks(names: Sequence[str]) -> list[AbsTask]:
    """Tasks for task names (`STSBenchmark`), benchmark names (`MTEB(eng, v2)`, `LongEmbed`) and local task folders,
    in order and without repeats. An unknown name is an error that lists the closest known names."""
    if not names:
        raise ValueError("no tasks given: name mteb tasks, benchmarks or local task folders")
    benchmarks = {benchmark.name for benchmark in mteb.get_benchmarks()}
    tasks: dict[str, AbsTask] = {}
    for name in names:
        if Path(name).is_dir():
            found = [load_local_task(name)]
        elif name in benchmarks:
            found = list(mteb.get_benchmark(name).tasks)
        else:
            try:
                found = list(mteb.get_tasks(tasks=[name]))
            except KeyError:
                matches = difflib.get_close_matches(name, known_names(), n=5, cutoff=0.5)
                hint = f"; close matches: {', '.join(matches)}" if matches else ""
                raise ValueError(f"{name!r} is neither an mteb task, an mteb benchmark nor a local task folder{hint}")
        for task in found:
            tasks.setdefault(task.metadata.name, task)
    return list(tasks.values())
