"""Text helpers shared by the source parsers.

Normalisation, paragraphs, word counts, exact-duplicate keys and the deterministic train/validation assignment."""

import hashlib
import re
import unicodedata

# Typographic characters that renderers (groff -Tutf8, Sphinx) substitute for plain ASCII in technical text.
_ASCII = str.maketrans({"\u2010": "-", "\u2011": "-", "\u2212": "-", "\u00ad": "", "\u00a0": " ", "\u200b": ""})
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SPACES = re.compile(r"[ \t]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")
_NON_WORD = re.compile(r"\W+")


def clean(text: str) -> str:
    """NFC, typographic hyphens and spaces to ASCII, control characters removed, runs of spaces collapsed, line-end
    whitespace removed, at most one blank line between paragraphs."""
    text = _CONTROL.sub("", unicodedata.normalize("NFC", text).translate(_ASCII))
    lines = [_SPACES.sub(" ", line).strip() for line in text.splitlines()]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def one_line(text: str) -> str:
    """`clean`, then every run of whitespace (newlines included) as one space."""
    return " ".join(clean(text).split())


def reflow(text: str) -> str:
    """Join the lines of each paragraph (blank-line separated) into one line: undoes hard wrapping."""
    return "\n\n".join(one_line(paragraph) for paragraph in re.split(r"\n\s*\n", text) if paragraph.strip())


def word_count(text: str) -> int:
    return len(text.split())


def truncate_words(text: str, max_words: int) -> str:
    """The first `max_words` whitespace tokens of `text`, cut at a paragraph end where one falls in the last half."""
    if word_count(text) <= max_words:
        return text
    kept, total = [], 0
    for paragraph in text.split("\n\n"):
        n = word_count(paragraph)
        if total + n > max_words:
            if total < max_words // 2:  # no paragraph boundary late enough: cut inside this paragraph
                kept.append(" ".join(paragraph.split()[: max_words - total]))
            break
        kept.append(paragraph)
        total += n
    return "\n\n".join(kept)


def duplicate_key(text: str) -> str:
    """Key under which two texts count as the same text: case, punctuation and spacing ignored."""
    return _NON_WORD.sub(" ", text.lower()).strip()


def stable_fraction(*parts: str) -> float:
    """A number in [0, 1) fixed by `parts` alone (sha256; unlike `hash`, the same in every process and version)."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(salt: str, source: str, group: str, validation_fraction: float) -> str:
    """'validation' or 'train' for a whole source document (`group`): every record derived from it lands in the same
    split, in every dataset and stage."""
    return "validation" if stable_fraction(salt, source, group) < validation_fraction else "train"
