"""From parsed sources to the corpus's rows, purely and deterministically.

Source-document splits, MLM documents, (query, document) pair datasets and evaluation tasks: the same inputs give
the same rows in the same order."""

import re
from collections import defaultdict
from dataclasses import dataclass, field

from nomic_bert_hf.tasks import column_prompts

from . import wordnet
from .debian import Description, group_siblings, is_placeholder
from .docs import Document
from .sources import Entry
from .text import duplicate_key, split_of, stable_fraction, truncate_words, word_count

RECIPE = {
    "salt": "nomic-bert-hf/default-corpus/v1",
    # share of source documents (split units) held out for validation and evaluation
    "validation_fraction": {"documents": 0.1, "long_documents": 0.25, "entries": 0.05},
    "long_document_min_words": 1000,  # a page with a one-line summary and a body this long is a long document
    "long_document_max_words": 6000,  # about 8k tokens
    "mlm_min_words": 50,
    "mlm_train_words": {  # per source, train documents taken in a fixed pseudo-random order up to this many words
        "python-docs": 400_000, "postgresql-docs": 300_000, "sqlite-docs": 200_000, "django-docs": 200_000,
        "manpages": 400_000,
    },
    "mlm_validation_words": 40_000,  # per source
    "pair_max_words": {"stage_2": 160, "stage_3": 320},  # pair documents are cut to this many words
    "pair_train_rows": {"debian_packages": 15_000, "wordnet_definitions": 40_000, "doc_sections": 6_000},
    "wordnet_group_size": 300,
    "eval_max_queries": 500,
    "eval_max_words": 320,  # retrieval corpora of the in-domain and held-out tasks (512-token protocol)
    "similarity_anchors": 400,
}
_SECTION_NUMBER = re.compile(r"^\d+(\.\d+)*\.?\s+")  # "9.4.1. format" -> "format"
SEARCH = column_prompts("search")  # pair datasets' and evaluation tasks' prompts, column -> Nomic task prefix
CLUSTERING = column_prompts("clustering")


@dataclass
class PairDataset:
    stage: int
    prompts: dict[str, str]
    description: str
    rows: dict[str, list[dict]] = field(default_factory=lambda: {"train": [], "validation": []})


@dataclass(frozen=True)
class Unit:
    """A source document: every record derived from it shares its split."""

    source: str
    doc_id: str
    kind: str = "entries"  # which validation fraction applies: "entries", "documents" or "long_documents"

    def split(self) -> str:
        return split_of(RECIPE["salt"], self.source, self.doc_id, RECIPE["validation_fraction"][self.kind])


def is_long(document: Document) -> bool:
    return bool(document.summary and document.body and word_count(document.body) >= RECIPE["long_document_min_words"])


def unit_of(document: Document) -> Unit:
    return Unit(document.source, document.doc_id, "long_documents" if is_long(document) else "documents")


def document_split(document: Document) -> str:
    return unit_of(document).split()


def _order(*parts: str) -> float:
    return stable_fraction(RECIPE["salt"], "order", *parts)


# --- MLM ------------------------------------------------------------------------------------------------------


def mlm_rows(documents: list[Document]) -> tuple[dict[str, list[dict]], dict[str, dict]]:
    """Whole pages as MLM documents, exact duplicates removed (a train page equal to a validation page is dropped),
    capped per source in words. Returns rows per split and word/document counts per source."""
    by_split: dict[str, list[Document]] = {"train": [], "validation": []}
    for document in documents:
        if word_count(document.text) >= RECIPE["mlm_min_words"]:
            by_split[document_split(document)].append(document)
    rows, stats, seen = {}, defaultdict(lambda: defaultdict(int)), set()
    for split in ("validation", "train"):
        kept, used = [], defaultdict(int)
        for document in sorted(by_split[split], key=lambda d: _order(d.doc_id)):
            key = duplicate_key(document.text)
            budget = RECIPE["mlm_train_words"][document.source] if split == "train" else RECIPE["mlm_validation_words"]
            if key in seen or used[document.source] >= budget:
                continue
            seen.add(key)
            used[document.source] += word_count(document.text)
            kept.append({"text": document.text, "source": document.source, "doc_id": document.doc_id})
            stats[document.source][f"{split}_documents"] += 1
            stats[document.source][f"{split}_words"] += word_count(document.text)
        rows[split] = sorted(kept, key=lambda row: row["doc_id"])
    return rows, {source: dict(counts) for source, counts in sorted(stats.items())}


# --- pairs ----------------------------------------------------------------------------------------------------


def _add(dataset: PairDataset, unit: Unit, query: str, document: str, min_words: int = 3) -> None:
    document = truncate_words(document, RECIPE["pair_max_words"][f"stage_{dataset.stage}"])
    if query and word_count(document) >= min_words:
        dataset.rows[unit.split()].append(
            {"query": query, "document": document, "source": unit.source, "doc_id": unit.doc_id}
        )


def finish(name: str, dataset: PairDataset) -> PairDataset:
    """Exact duplicates out (same document text, or same query and document), validation first so that no train
    pair repeats a validation text; train capped (fixed pseudo-random order) where the recipe says; rows sorted."""
    seen = set()
    for split in ("validation", "train"):
        kept = []
        for row in dataset.rows[split]:
            key = duplicate_key(row["document"])
            if key in seen:
                continue
            seen.add(key)
            kept.append(row)
        cap = RECIPE["pair_train_rows"].get(name) if split == "train" else None
        if cap is not None and len(kept) > cap:
            kept = sorted(kept, key=lambda r: _order(r["doc_id"], r["query"]))[:cap]
        dataset.rows[split] = sorted(kept, key=lambda r: (r["doc_id"], r["query"], r["document"]))
    return dataset


def debian_pairs(descriptions: list[Description]) -> PairDataset:
    dataset = PairDataset(2, SEARCH, "Debian package short description -> long description (one pair per group of "
                                     "sibling packages; transitional/dummy packages left out)")
    usable = [d for d in descriptions if not is_placeholder(d)]
    for representative, members in sorted(group_siblings(usable).items()):
        _add(dataset, Unit("debian-descriptions", f"debian/{representative}"), members[0].short, members[0].long, 5)
    return dataset


def wordnet_units(synsets: dict[str, wordnet.Synset]) -> dict[str, Unit]:
    """The split unit of every synset: a small hypernym subtree for nouns and verbs, the head synset's cluster for
    adjectives, the synset itself for adverbs."""
    groups = wordnet.Hierarchy(synsets).groups(RECIPE["wordnet_group_size"])
    units = {}
    for synset_id, synset in synsets.items():
        group = groups.get(synset_id) or wordnet.adjective_head(synset)
        units[synset_id] = Unit("wordnet", f"wordnet/{group}")
    return units


def wordnet_pairs(synsets: dict[str, wordnet.Synset], units: dict[str, Unit]) -> PairDataset:
    dataset = PairDataset(2, SEARCH, "WordNet 3.0 synset lemmas (comma-separated) -> definition")
    for synset_id in sorted(synsets):
        synset = synsets[synset_id]
        _add(dataset, units[synset_id], ", ".join(synset.lemmas[:6]), synset.definition, 3)
    return dataset


def dictionary_pairs(entries: list[Entry]) -> PairDataset:
    dataset = PairDataset(2, SEARCH, "Computing dictionaries (FOLDOC, Jargon File): term -> definition")
    for entry in entries:
        _add(dataset, Unit(entry.source, f"{entry.source}/{entry.term.lower()}"), entry.term, entry.definition, 4)
    return dataset


def section_pairs(documents: list[Document]) -> PairDataset:
    dataset = PairDataset(2, CLUSTERING, "Documentation section title (with its page title) -> section text "
                                         "(Python, PostgreSQL, SQLite and Django documentation)")
    for document in documents:
        unit = unit_of(document)
        for heading, text in document.sections:
            heading = _SECTION_NUMBER.sub("", heading)
            query = heading if heading in document.title else f"{document.title}: {heading}"
            _add(dataset, unit, query, text, 20)
    return dataset


def reference_pairs(documents: list[Document]) -> PairDataset:
    dataset = PairDataset(3, SEARCH, "Reference-page one-line summary -> its DESCRIPTION section (Linux man pages' "
                                     "NAME line; PostgreSQL reference pages' purpose line)")
    for document in documents:
        if document.reference:
            _add(dataset, unit_of(document), *document.reference, 10)
    return dataset


def api_pairs(documents: list[Document]) -> PairDataset:
    dataset = PairDataset(3, SEARCH, "Python API signature (functions, methods, classes, C API) -> its description")
    for document in documents:
        unit = unit_of(document)
        for signature, description in document.api:
            _add(dataset, unit, signature, description, 5)
    return dataset


def faq_pairs(documents: list[Document]) -> PairDataset:
    dataset = PairDataset(3, SEARCH, "FAQ question -> answer (Python and Django FAQs)")
    for document in documents:
        unit = unit_of(document)
        for question, answer in document.faq:
            _add(dataset, unit, question, answer, 5)
    return dataset


# --- evaluation -----------------------------------------------------------------------------------------------


def retrieval_task(rows: list[dict], max_queries: int | None, max_words: int | None) -> dict[str, list[dict]]:
    """queries {id, text}, corpus {id, title, text}, qrels {query_id, doc_id, score} from (query, document) rows: the
    corpus holds every distinct document; a query's relevant documents are all those paired with the same query
    text; at most `max_queries` queries (fixed pseudo-random choice)."""
    documents: dict[str, str] = {}
    relevant: dict[str, set[str]] = defaultdict(set)
    for row in sorted(rows, key=lambda r: (r["doc_id"], r["document"])):
        text = truncate_words(row["document"], max_words) if max_words else row["document"]
        key = duplicate_key(text)
        documents.setdefault(key, text)
        relevant[row["query"]].add(key)
    doc_ids = {key: f"d{index:05d}" for index, key in enumerate(documents)}
    chosen = sorted(relevant, key=lambda q: _order("query", q))[:max_queries]
    queries = [{"id": f"q{index:05d}", "text": query} for index, query in enumerate(sorted(chosen))]
    qrels = [
        {"query_id": q["id"], "doc_id": doc_ids[key], "score": 1}
        for q in queries
        for key in sorted(relevant[q["text"]], key=doc_ids.get)
    ]
    corpus = [{"id": doc_ids[key], "title": "", "text": text} for key, text in documents.items()]
    return {"queries": queries, "corpus": corpus, "qrels": qrels}


def long_document_rows(documents: list[Document]) -> list[dict]:
    """(summary, page body) of the validation long documents; the summary is also removed from the body."""
    rows = []
    for document in documents:
        if is_long(document) and document_split(document) == "validation" and word_count(document.summary) >= 3:
            body = document.body.replace(document.summary, "").strip()
            body = truncate_words(body, RECIPE["long_document_max_words"])
            rows.append({"query": document.summary, "document": body, "source": document.source,
                         "doc_id": document.doc_id})
    return rows


def perl_faq_rows(entries: list[tuple[str, str, str]]) -> list[dict]:
    """Perl FAQ (question, answer) rows; answers of fewer than 5 words (bare cross-references) are left out."""
    return [{"query": q, "document": a, "source": "perl-faq", "doc_id": doc_id} for doc_id, q, a in entries
            if word_count(a) >= 5]


def similarity_task(synsets: dict[str, wordnet.Synset], units: dict[str, Unit]) -> tuple[list[dict], dict[str, int]]:
    """Graded similarity between the definitions of two validation noun (or two verb) synsets, scored by the path
    similarity of the synsets in WordNet's hypernym hierarchy, 1 / (1 + edges on the shortest path). Each anchor is
    paired with (where the validation split has one) a direct hypernym, a sibling, another synset of its subtree
    group and a synset from another group, so scores spread over the whole range."""
    hierarchy = wordnet.Hierarchy(synsets)
    validation = {s for s, synset in synsets.items() if s[0] in "nv" and units[s].split() == "validation"
                  and word_count(synset.definition) >= 4}
    children = defaultdict(list)
    for s in sorted(validation):
        for parent in synsets[s].hypernyms:
            children[parent].append(s)
    by_group = defaultdict(list)
    for s in sorted(validation):
        by_group[f"{s[0]} {units[s].doc_id}"].append(s)
    anchors = sorted(validation, key=lambda s: _order("anchor", s))[: RECIPE["similarity_anchors"]]
    pairs, relations, seen = [], defaultdict(int), set()
    for anchor in anchors:

        def pick(options: list[str], tag: str, anchor: str = anchor) -> str | None:
            """One of `options`, fixed by the anchor and the relation."""
            return min(options, key=lambda option: _order(tag, anchor, option)) if options else None

        parents = [p for p in synsets[anchor].hypernyms if p in validation]
        siblings = [c for p in synsets[anchor].hypernyms for c in children[p] if c != anchor]
        own = f"{anchor[0]} {units[anchor].doc_id}"
        group = [s for s in by_group[own] if s != anchor and s not in siblings and s not in parents]
        others = [g for g in sorted(by_group) if g[0] == anchor[0] and g != own]
        other_group = pick(others, "other-group")
        candidates = {
            "hypernym": pick(parents, "hypernym"),
            "sibling": pick(siblings, "sibling"),
            "same_group": pick(group, "group"),
            "other_group": pick(by_group[other_group], "other") if other_group else None,
        }
        for relation, partner in candidates.items():
            if partner is None or frozenset((anchor, partner)) in seen:
                continue
            seen.add(frozenset((anchor, partner)))
            relations[relation] += 1
            pairs.append({
                "sentence1": synsets[anchor].definition,
                "sentence2": synsets[partner].definition,
                "score": round(hierarchy.path_similarity(anchor, partner), 4),
            })
    return pairs, dict(relations)
