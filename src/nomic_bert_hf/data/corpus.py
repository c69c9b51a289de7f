"""A corpus folder (as `training/data/default/`) checked against its manifest, handing out `datasets` file lists.

Its file lists are what `datasets.load_dataset("json", data_files=...)` reads.

    from datasets import load_dataset
    from nomic_bert_hf.data.corpus import Corpus

    corpus = Corpus.load("training/data/default")           # verifies every shard's sha256
    mlm = load_dataset("json", data_files=corpus.data_files("mlm"))                  # text, source, doc_id
    for name in corpus.pair_datasets(stage=2):                                        # query, document, source, doc_id
        pairs = load_dataset("json", data_files=corpus.data_files(name), split="train")
        prompts = corpus.prompts(name)                       # {"query": "search_query: ", "document": ...}
        task_name = corpus.task(name)                        # "search", the task of those prefixes
    task = corpus.eval_files("perl_faq")                     # {"queries": ..., "corpus": ..., "qrels": ...}

The manifest (`manifest.json`) names every file with its row count and sha256, each pair dataset's training stage
(2: weakly supervised contrastive pretraining, 3: fine-tuning) and Nomic task prompts (a task's `column_prompts`,
`nomic_bert_hf.tasks`), and each evaluation task's type. DATA.md next to it documents sources, licences and
construction.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from nomic_bert_hf.tasks import task_of_prompts
from nomic_bert_hf.utils.files import sha256_file

MANIFEST = "manifest.json"
SPLITS = ("train", "validation")


class CorpusError(ValueError):
    """A corpus that is missing, malformed, or does not match its manifest."""


@dataclass(frozen=True)
class Corpus:
    root: Path
    manifest: dict

    @classmethod
    def load(cls, path: str | Path, verify: bool = True) -> "Corpus":
        """The corpus at `path`; with `verify`, every file's sha256 is checked."""
        root = Path(path)
        if not root.is_dir():
            raise CorpusError(f"corpus folder {root} does not exist")
        if not (root / MANIFEST).is_file():
            raise CorpusError(f"{root} has no {MANIFEST}: not a corpus folder")
        try:
            manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise CorpusError(f"{root / MANIFEST} is not valid JSON: {error}") from error
        missing = [key for key in ("files", "mlm", "pairs", "eval") if key not in manifest]
        if missing:
            raise CorpusError(f"{root / MANIFEST} lacks {missing}")
        if not manifest["files"]:
            raise CorpusError(f"{root / MANIFEST} lists no files: the corpus is empty")
        corpus = cls(root, manifest)
        if verify:
            corpus.verify()
        return corpus

    def verify(self, paths: list[str] | None = None) -> None:
        """Check files (default: all) against the manifest's sha256; a missing or changed file is an error naming
        it."""
        records = self.manifest["files"]
        for relative in sorted(records if paths is None else paths):
            if relative not in records:
                raise CorpusError(f"{relative} is not listed in {self.root / MANIFEST}")
            path = self.root / relative
            if not path.is_file():
                raise CorpusError(f"shard {relative} listed in the manifest is missing from {self.root}")
            actual = sha256_file(path)
            if actual != records[relative]["sha256"]:
                raise CorpusError(
                    f"shard {relative} does not match the manifest: sha256 {actual}, expected "
                    f"{records[relative]['sha256']} (modified or corrupted; restore it from the repository)"
                )

    def _path(self, relative: str) -> str:
        return str(self.root / relative)

    # --- training data ----------------------------------------------------------------------------------------

    def pair_datasets(self, stage: int | None = None) -> list[str]:
        """Names of the (query, document) datasets, optionally only those meant for training stage 2 or 3."""
        return [name for name, entry in self.manifest["pairs"].items() if stage is None or entry["stage"] == stage]

    def _pairs(self, name: str) -> dict:
        if name not in self.manifest["pairs"]:
            raise CorpusError(f"no pair dataset '{name}' in {self.root}; it has {sorted(self.manifest['pairs'])}")
        return self.manifest["pairs"][name]

    def data_files(self, name: str) -> dict[str, list[str]]:
        """{"train": [paths], "validation": [paths]} of "mlm" or a pair dataset, for `load_dataset("json", ...)`."""
        files = self.manifest["mlm"]["files"] if name == "mlm" else self._pairs(name)["files"]
        return {split: [self._path(p) for p in files[split]] for split in SPLITS}

    def prompts(self, name: str) -> dict[str, str]:
        """Column -> prompt (Nomic task prefix with its ': ') of a pair dataset or an evaluation task."""
        entry = self.manifest["eval"][name] if name in self.manifest["eval"] else self._pairs(name)
        return dict(entry["prompts"])

    def task(self, name: str) -> str:
        """The Nomic task (`nomic_bert_hf.tasks`) whose prefixes a pair dataset's or evaluation task's prompts are."""
        return task_of_prompts(self.prompts(name))

    def stage(self, name: str) -> int:
        return self._pairs(name)["stage"]

    def rows(self, name: str, split: str = "train") -> int:
        """Row count of a split of "mlm" or a pair dataset, from the manifest."""
        files = self.data_files(name)[split]
        return sum(self.manifest["files"][Path(p).relative_to(self.root).as_posix()]["rows"] for p in files)

    # --- evaluation -------------------------------------------------------------------------------------------

    def eval_tasks(self, type: str | None = None) -> list[str]:
        """Names of the evaluation tasks, optionally only one type ("retrieval" or "sts")."""
        return [name for name, entry in self.manifest["eval"].items() if type is None or entry["type"] == type]

    def eval_task(self, name: str) -> dict:
        """A task's manifest entry: type, prompts, held_out, description, files and row counts."""
        if name not in self.manifest["eval"]:
            raise CorpusError(f"no evaluation task '{name}' in {self.root}; it has {sorted(self.manifest['eval'])}")
        return self.manifest["eval"][name]

    def eval_files(self, name: str) -> dict[str, str]:
        """Table -> path: queries/corpus/qrels for retrieval, test for similarity."""
        return {table: self._path(p) for table, p in self.eval_task(name)["files"].items()}
