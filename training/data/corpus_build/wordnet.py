"""WordNet 3.0 (Debian `wordnet-base`): synsets, their path similarity, and the unit of their split.

Synsets with their lemmas, definition, examples and hypernym links; the path similarity over the hypernym hierarchy;
the unit that decides a synset's split."""

import re
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

DATA_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")
HYPERNYM_POINTERS = ("@", "@i")  # hypernym, instance hypernym
_POS_OF_FILE = {"s": "a"}  # satellites live in data.adj: their offsets are adjective offsets
_ADJECTIVE_MARKER = re.compile(r"\((?:a|p|ip)\)$")


@dataclass(frozen=True)
class Synset:
    id: str  # part of speech (n, v, a, r) + byte offset in its data file, e.g. "n00002137"
    satellite: bool  # an adjective synset attached to a head adjective by a similar-to ('&') pointer
    lexfile: int
    lemmas: tuple[str, ...]
    definition: str
    examples: tuple[str, ...]
    pointers: tuple[tuple[str, str], ...] = field(repr=False)  # (symbol, target synset id)

    @property
    def hypernyms(self) -> tuple[str, ...]:
        return tuple(target for symbol, target in self.pointers if symbol in HYPERNYM_POINTERS)


def parse_gloss(gloss: str) -> tuple[str, tuple[str, ...]]:
    """'definition; "example one"; "example two"' -> (definition, examples)."""
    definition, _, rest = gloss.partition('; "')
    examples = re.findall(r'"([^"]+)"', '"' + rest) if rest else []
    return definition.strip().rstrip(";").strip(), tuple(e.strip() for e in examples if e.strip())


def parse_data_line(line: str) -> Synset | None:
    """One line of a `data.*` file (format wndb(5)); None for the licence header lines, which start with spaces."""
    if line.startswith(" ") or not line.strip():
        return None
    head, _, gloss = line.partition(" | ")
    fields = head.split()
    offset, lexfile, pos, n_words = fields[0], int(fields[1]), fields[2], int(fields[3], 16)
    lemmas = tuple(
        _ADJECTIVE_MARKER.sub("", fields[4 + 2 * i]).replace("_", " ") for i in range(n_words)
    )
    at = 4 + 2 * n_words
    n_pointers = int(fields[at])
    pointers = []
    for i in range(n_pointers):
        symbol, target_offset, target_pos = fields[at + 1 + 4 * i : at + 4 + 4 * i]
        pointers.append((symbol, _POS_OF_FILE.get(target_pos, target_pos) + target_offset))
    definition, examples = parse_gloss(gloss)
    synset_id = _POS_OF_FILE.get(pos, pos) + offset
    return Synset(synset_id, pos == "s", lexfile, lemmas, definition, examples, tuple(pointers))


def read_wordnet(directory: str | Path) -> dict[str, Synset]:
    """Every synset of the four `data.*` files under `directory`, keyed by id."""
    synsets = {}
    for name in DATA_FILES:
        with open(Path(directory) / name, encoding="utf-8") as f:
            for line in f:
                synset = parse_data_line(line)
                if synset is not None:
                    synsets[synset.id] = synset
    return synsets


class Hierarchy:
    """The hypernym graph of nouns and verbs: ancestors, path similarity and split groups."""

    def __init__(self, synsets: dict[str, Synset]):
        self.synsets = synsets
        self.ancestors = cache(self._ancestors)

    def _ancestors(self, synset_id: str) -> dict[str, int]:
        """Every ancestor (the synset itself included) with its shortest distance in hypernym steps."""
        found = {synset_id: 0}
        for parent in self.synsets[synset_id].hypernyms:
            for ancestor, distance in self.ancestors(parent).items():
                if found.get(ancestor, distance + 2) > distance + 1:
                    found[ancestor] = distance + 1
        return found

    def path_similarity(self, a: str, b: str) -> float:
        """1 / (1 + the number of hypernym/hyponym edges on the shortest path between a and b through a common
        ancestor); 0 when they share none (verbs have many roots)."""
        ancestors_a, ancestors_b = self.ancestors(a), self.ancestors(b)
        common = ancestors_a.keys() & ancestors_b.keys()
        if not common:
            return 0.0
        return 1 / (1 + min(ancestors_a[c] + ancestors_b[c] for c in common))

    def chain(self, synset_id: str) -> list[str]:
        """The first-hypernym chain from a root down to the synset."""
        chain = [synset_id]
        while self.synsets[chain[-1]].hypernyms:
            chain.append(self.synsets[chain[-1]].hypernyms[0])
        return chain[::-1]

    def groups(self, max_size: int) -> dict[str, str]:
        """The split unit of every noun and verb synset: the highest synset on its first-hypernym chain whose subtree
        (along first hypernyms) holds at most `max_size` synsets (or the synset itself, if its own subtree is larger),
        so that close relatives share a split and no unit is large."""
        chains = {s: self.chain(s) for s in self.synsets if s[0] in "nv"}
        sizes = Counter(a for chain in chains.values() for a in chain)
        return {s: next((a for a in chain if sizes[a] <= max_size), s) for s, chain in chains.items()}


def adjective_head(synset: Synset) -> str:
    """A satellite adjective's head synset (the '&' similar-to pointer), which decides its split; other synsets are
    their own unit."""
    if synset.satellite:
        for symbol, target in synset.pointers:
            if symbol == "&":
                return target
    return synset.id
