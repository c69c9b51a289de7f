"""dictd dictionaries (Debian `dict-jargon`, `dict-foldoc`): headword -> definition entries.

An index line is `headword TAB offset TAB length`, both numbers in base 64 (alphabet A-Za-z0-9+/); the entry is
`data[offset:offset + length]` of the gunzipped `.dict.dz`. An entry's first line repeats its headword (in its real
case); the definition follows the first blank line.
"""

import gzip
import re
from pathlib import Path

from .text import reflow

_DIGITS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_LINK = re.compile(r"\{([^{}]*)\}")  # {cross reference}
# FOLDOC lines that are not prose: "(1998-09-15)" edit stamps, "[Jargon File]" citations, bare URLs.
_DROPPED_LINE = re.compile(r"\(\d{4}-\d{2}-\d{2}\)|\[[^\[\]]*\]|\(?\w+://\S+\)?\.?")
# FOLDOC's "<communications, hardware>" subject labels, at the start of a paragraph or of a numbered sense
_PRONUNCIATION = re.compile(r"^/[^/\s][^/\n]*/,?\s*")  # "/vay'pr-weir/" at the start of a definition
_CATEGORY = re.compile(r"(?m)^(\d+\. )?(?:<[^<>\n]+> ?)+")


def decode_number(digits: str) -> int:
    value = 0
    for digit in digits:
        value = value * 64 + _DIGITS.index(digit)
    return value


def read_entries(index: str | Path, data: str | Path) -> list[str]:
    """The raw text of every entry, in index order, once per distinct (offset, length); dictd's own `00-database-*`
    metadata entries are skipped."""
    body = gzip.decompress(Path(data).read_bytes())
    seen, entries = set(), []
    for line in Path(index).read_text(encoding="utf-8").splitlines():
        headword, offset, length = line.split("\t")
        span = (decode_number(offset), decode_number(length))
        if headword.startswith(("00-database", "00database")) or span in seen:
            continue
        seen.add(span)
        entries.append(body[span[0] : span[0] + span[1]].decode("utf-8"))
    return entries


def _split_entry(entry: str) -> tuple[str, list[str], str]:
    """(headword, the other header lines, the body) of a raw entry."""
    header, _, body = entry.strip("\n").partition("\n\n")
    lines = header.splitlines()
    return lines[0].strip(), lines[1:], body


def parse_jargon(entry: str) -> tuple[str, str]:
    """A Jargon File entry -> (term, definition). The header's second line (pronunciation, part of speech) is left
    out of the definition."""
    term, _, body = _split_entry(entry)
    return term, reflow(_LINK.sub(r"\1", body))


def parse_foldoc(entry: str) -> tuple[str, str]:
    """A FOLDOC entry -> (term, definition) without the header's alias lines, subject labels, link braces, URL-only
    and citation-only lines and the trailing date stamp."""
    term, _, body = _split_entry(entry)
    kept = [line for line in _LINK.sub(r"\1", body).splitlines() if not _DROPPED_LINE.fullmatch(line.strip())]
    return term, _PRONUNCIATION.sub("", _CATEGORY.sub(r"\1", reflow("\n".join(kept))))
