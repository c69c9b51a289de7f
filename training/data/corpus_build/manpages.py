"""Linux man pages (Debian `manpages`, `manpages-dev`): rendered to text with groff, split into sections.

Rendering uses a very long line length and no hyphenation, so every filled paragraph comes out as one line while
code and tables (no-fill text) keep their lines.
"""

import gzip
import os
import re
import subprocess
from pathlib import Path

from .text import clean, one_line

GROFF = ["groff", "-k", "-t", "-man", "-Tutf8", "-P-cbou", "-rLL=3000n", "-rHY=0"]
_HEADING = re.compile(r"^[A-Z][A-Z0-9 ,/()'-]*$")  # section headings start in column 0, in capitals
_SPDX = re.compile(r"SPDX-License-Identifier:\s*([\w.+-]+)")
_LICENSE_MARKER = re.compile(r"%%%LICENSE_START\((\w+)\)")  # older man-pages licence markers
# groff -Tutf8 prints ASCII quotes as typographic ones; man-page sources mean the ASCII characters.
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})


def page_source(path: str | Path) -> str | None:
    """The roff source of a page file (gzipped or not); None for a `.so` redirect or a symbolic link."""
    path = Path(path)
    if path.is_symlink():
        return None
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    source = data.decode("utf-8")
    return None if source.startswith(".so ") else source


def license_of(source: str) -> str:
    """The page's SPDX licence identifier, else its man-pages licence marker (e.g. 'man-pages:VERBATIM_ONE_PARA'),
    else 'unknown'."""
    match = _SPDX.search(source)
    if match:
        return match.group(1)
    match = _LICENSE_MARKER.search(source)
    return f"man-pages:{match.group(1)}" if match else "unknown"


def render(source: str) -> str:
    """groff's plain-text rendering of a page."""
    environment = {**os.environ, "LC_ALL": "C.UTF-8"}
    result = subprocess.run(GROFF, input=source.encode("utf-8"), capture_output=True, env=environment, check=True)
    return result.stdout.decode("utf-8").translate(_QUOTES)


def sections(rendered: str) -> list[tuple[str, str]]:
    """(HEADING, cleaned body) pairs of a rendered page, without the running header and footer lines."""
    lines = rendered.splitlines()
    nonblank = [i for i, line in enumerate(lines) if line.strip()]
    if len(nonblank) < 2:
        return []
    lines = lines[nonblank[0] + 1 : nonblank[-1]]
    found: list[tuple[str, list[str]]] = []
    for line in lines:
        if line and not line[0].isspace() and _HEADING.match(line.strip()):
            found.append((line.strip(), []))
        elif found:
            found[-1][1].append(line)
    return [(heading, clean("\n".join(body))) for heading, body in found]


def name_line(page_sections: list[tuple[str, str]]) -> str | None:
    """The NAME one-liner, e.g. 'open, openat, creat - open and possibly create a file'."""
    for heading, body in page_sections:
        if heading == "NAME":
            return one_line(body) or None
    return None


def summary(name: str) -> str:
    """What a NAME line says the page is about, without the names: 'open and possibly create a file'."""
    _, separator, description = name.partition(" - ")
    return description.strip() if separator else name


def page_text(page_sections: list[tuple[str, str]], skip: tuple[str, ...] = ()) -> str:
    """The page as text: each heading on its own line, then its body."""
    return "\n\n".join(f"{heading}\n\n{body}" if body else heading for heading, body in page_sections
                       if heading not in skip)
