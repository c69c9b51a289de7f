"""Debian package descriptions (the archive's English `Translation-en` index): short description -> long description.

Sibling binary packages of one source (`libfoo1`, `libfoo-dev`, `foo-doc`, ...) repeat one long description with a
different last paragraph, and often one short description with a different parenthesised suffix. Packages that share
either are one group: the group keeps a single pair (its representative) and decides the split.
"""

import re
from dataclasses import dataclass

from .text import duplicate_key, one_line

_PLACEHOLDER = re.compile(r"\b(transitional|dummy) package\b|\bmetapackage\b", re.IGNORECASE)
_SUFFIX = re.compile(r"\s*(\([^()]*\)|\[[^\[\]]*\]|\s-\s.*)$")  # "(data files)", "[dev]", " - documentation"


@dataclass(frozen=True)
class Description:
    package: str
    short: str
    long: str


def parse_long(lines: list[str]) -> str:
    """The extended description field (lines after the first, each indented by one space): ' .' separates
    paragraphs, lines indented further are verbatim."""
    paragraphs, current = [], []
    for line in lines:
        body = line[1:]
        if body.strip() == ".":
            paragraphs.append(current)
            current = []
        elif body.startswith(" "):
            current.append("\n" + body.strip())  # verbatim line: keep the break
        else:
            current.append(" " + body.strip())
    paragraphs.append(current)
    texts = ["".join(p).strip() for p in paragraphs]
    return "\n\n".join(" ".join(t.split(" ")) for t in texts if t)


def parse_translation(text: str) -> list[Description]:
    """Every stanza (Package, Description-md5, Description-en + continuation lines) of a Translation-en file."""
    found = []
    for stanza in text.split("\n\n"):
        package, lines = None, []
        for line in stanza.splitlines():
            if line.startswith("Package: "):
                package = line[len("Package: ") :].strip()
            elif line.startswith("Description-en: "):
                lines = [line[len("Description-en: ") :]]
            elif line.startswith(" ") and lines:
                lines.append(line)
        if package and lines:
            found.append(Description(package, one_line(lines[0]), parse_long(lines[1:])))
    return found


def is_placeholder(description: Description) -> bool:
    """Transitional, dummy and meta packages: their description is about packaging, not software."""
    return bool(_PLACEHOLDER.search(description.short) or _PLACEHOLDER.search(description.long))


def sibling_keys(description: Description) -> tuple[str, str]:
    """Keys that siblings share: the first paragraph of the long description, and the short description without a
    parenthesised or dash suffix."""
    first_paragraph = description.long.split("\n\n")[0]
    return "long:" + duplicate_key(first_paragraph), "short:" + duplicate_key(_SUFFIX.sub("", description.short))


def group_siblings(descriptions: list[Description]) -> dict[str, list[Description]]:
    """Union of packages that share a sibling key; each group keyed by its representative (shortest package name,
    then alphabetical), members sorted the same way."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for description in descriptions:
        for key in sibling_keys(description):
            parent[find("pkg:" + description.package)] = find(key)
    groups: dict[str, list[Description]] = {}
    for description in descriptions:
        groups.setdefault(find("pkg:" + description.package), []).append(description)
    order = lambda d: (len(d.package), d.package)
    return {min(members, key=order).package: sorted(members, key=order) for members in groups.values()}
