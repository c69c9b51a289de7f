"""Documentation sets as `Document`s: Python, PostgreSQL, SQLite and Django HTML pages, and the Perl FAQ.

Python 3.11, PostgreSQL 15, SQLite 3 and Django 3.2; the Perl FAQ from its POD.

Each page keeps its own structure: sections (heading -> text), API entries (signature -> description), FAQ entries
(question -> answer) and, where the documentation states one, a one-line summary of the whole page (Python module
synopsis, PostgreSQL reference-page purpose).
"""

import re
from dataclasses import dataclass, field
from pathlib import Path

from . import html
from .text import clean, one_line, reflow

API_ROLES = {
    "function", "method", "classmethod", "staticmethod", "class", "exception", "attribute", "data", "decorator",
    "macro", "type", "member", "var",
}


@dataclass
class Document:
    source: str
    doc_id: str
    title: str
    text: str  # the whole page
    sections: list[tuple[str, str]] = field(default_factory=list)
    api: list[tuple[str, str]] = field(default_factory=list)
    faq: list[tuple[str, str]] = field(default_factory=list)
    summary: str | None = None  # what the page is about, in one line, stated by the documentation itself
    body: str | None = None  # the page without its title and summary (for summary -> page retrieval)
    reference: tuple[str, str] | None = None  # reference pages: (one-line summary with the name, Description section)


def _skipper(classes=(), ids=()):
    classes, ids = set(classes), set(ids)
    return lambda element: bool(element.classes & classes) or element.attrs.get("id") in ids


def _api_entry(dl: html.Element, skip) -> tuple[str, str] | None:
    """(signature, description) of a Sphinx object description (`<dl class="py function">` and kin)."""
    dt = next((c for c in dl.children if isinstance(c, html.Element) and c.tag == "dt"), None)
    dd = next((c for c in dl.children if isinstance(c, html.Element) and c.tag == "dd"), None)
    if dt is None or dd is None:
        return None
    signature = _qualified(dt.text().replace(html.PILCROW, "").strip(), dt.attrs.get("id", ""), dl)
    nested = lambda element: skip(element) or (element.tag == "dl" and _is_api(element))  # members: own entries
    description = html.blocks_text(html.blocks(dd, nested))
    return (signature, description) if signature and description else None


def _qualified(signature: str, anchor: str, dl: html.Element) -> str:
    """Python members are printed unqualified inside their class ('scope_id'); Sphinx's anchor holds the full name
    ('ipaddress.IPv6Address.scope_id'), which then replaces the bare name."""
    if "py" not in dl.classes or not anchor or anchor in signature:
        return signature
    name = anchor.rsplit(".", 1)[-1]
    return re.sub(rf"(?<![\w.]){re.escape(name)}(?!\w)", anchor, signature, count=1) if name in signature else anchor


def _is_api(element: html.Element) -> bool:
    classes = element.classes
    return bool(classes & {"py", "c"}) and bool(classes & API_ROLES)


def _faq(found: list[html.Block]) -> list[tuple[str, str]]:
    """Question headings (ending in '?') with the text up to the next heading."""
    return [(q, a) for q, a in html.sections(found, ("h1", "h2", "h3", "h4")) if q.endswith("?") and a]


def python_synopses(html_root: Path) -> dict[str, str]:
    """Page path -> module synopsis, from the module index; pages that document several modules are left out."""
    root = html.parse((html_root / "py-modindex.html").read_text(encoding="utf-8"))
    found: dict[str, list[str]] = {}
    for row in root.iter():
        if row.tag != "tr":
            continue
        link, emphasis = row.find("a"), row.find("em")
        if link is None or emphasis is None or "#module-" not in link.attrs.get("href", ""):
            continue
        found.setdefault(link.attrs["href"].split("#")[0], []).append(emphasis.text().replace("``", ""))
    return {page: synopses[0] for page, synopses in found.items() if len(synopses) == 1}


def python_page(path: Path, relative: str, synopsis: str | None) -> Document:
    root = html.parse(path.read_text(encoding="utf-8"))
    content = root.find("div", cls="body") or root
    skip = _skipper(classes=("headerlink",))
    found = html.blocks(content, skip)
    entries = (_api_entry(dl, skip) for dl in content.iter() if dl.tag == "dl" and _is_api(dl))
    api = [entry for entry in entries if entry]
    title = html.strip_title_suffix(html.title(root))
    body = html.blocks_text(found[1:] if found and found[0].kind == "h1" else found)
    return Document(
        "python-docs", f"python-docs/{relative}", title, html.blocks_text(found), html.sections(found, ("h2", "h3")),
        api, _faq(found) if relative.startswith("faq/") else [], synopsis, body if synopsis else None,
    )


def postgresql_page(path: Path, relative: str) -> Document:
    root = html.parse(path.read_text(encoding="utf-8"))
    skip = _skipper(classes=("navheader", "navfooter", "toc", "titlepage-toc"))
    content = root.find("body") or root
    found = html.blocks(content, skip)
    purpose_div = content.find("div", cls="refnamediv")
    summary = body = None
    if purpose_div is not None:  # reference page: "CREATE TABLE — define a new table"
        purpose = purpose_div.find("p")
        if purpose is not None:
            summary = re.split(r"\s+\u2014\s+", purpose.text(), maxsplit=1)[-1]
            body = html.blocks_text(html.blocks(content, lambda e: skip(e) or e is purpose_div))
    return Document(
        "postgresql-docs", f"postgresql-docs/{relative}", html.title(root), html.blocks_text(found),
        html.sections(found, ("h2", "h3")), summary=summary, body=body,
    )


def sqlite_page(path: Path, relative: str) -> Document:
    root = html.parse(path.read_text(encoding="utf-8"))
    navigation = _skipper(classes=("nosearch", "fancy_toc", "fancy-toc1", "fancy-toc2", "fancy-toc3"))
    # syntax-diagram captions ("select-stmt:") sit in a paragraph with the diagram's show/hide button
    skip = lambda element: navigation(element) or (element.tag == "p" and element.find("button") is not None)
    found = html.blocks(root.find("body") or root, skip)
    return Document(
        "sqlite-docs", f"sqlite-docs/{relative}", html.title(root), html.blocks_text(found),
        html.sections(found, ("h1", "h2")),
    )


def django_page(path: Path, relative: str) -> Document:
    root = html.parse(path.read_text(encoding="utf-8"))
    content = root.find("div", id="yui-main") or root
    found = html.blocks(content, _skipper(classes=("headerlink", "sphinxsidebar", "nav")))
    return Document(
        "django-docs", f"django-docs/{relative}", html.strip_title_suffix(html.title(root)), html.blocks_text(found),
        html.sections(found, ("h2", "h3")), faq=_faq(found) if relative.startswith("faq/") else [],
    )


# --- POD (the Perl FAQ) ---------------------------------------------------------------------------------------

# A formatting code with single brackets and no nested brackets inside (C<x>), or with doubled brackets (C<< x >>).
_POD_CODE = re.compile(r"([BCEFILSXZ])<<+\s(.*?)\s>>+|([BCEFILSXZ])<([^<>]*)>")
_POD_ESCAPES = {"lt": "<", "gt": ">", "verbar": "|", "sol": "/", "quot": '"', "amp": "&"}


def _pod_code(code: str, inner: str) -> str:
    if code == "E":
        return _POD_ESCAPES.get(inner, "")
    if code in "XZ":  # index entries, null
        return ""
    if code == "L":  # L<text|target>, L<perlop/"Section">, L<perlfunc>
        label, bar, _ = inner.partition("|")
        return label if bar else inner.replace('/"', ", ").replace('"', "")
    return inner


def pod_inline(text: str) -> str:
    """POD formatting codes to plain text: C<code>, B<< bold >>, L<text|target>, L<perlop/"Section">, E<gt>."""
    previous = None
    while previous != text:  # nested codes resolve from the inside out
        previous = text
        text = _POD_CODE.sub(lambda m: _pod_code(*(m.group(1, 2) if m.group(1) else m.group(3, 4))), text)
    return text


def pod_faq(pod: str) -> list[tuple[str, str]]:
    """(=head2 question, answer) pairs of a perlfaq file; verbatim (code) paragraphs keep their lines."""
    entries: list[tuple[str, list[str]]] = []
    for paragraph in re.split(r"\n\s*\n", pod):
        if paragraph.startswith("=head2 "):
            entries.append((one_line(pod_inline(paragraph[len("=head2 ") :])), []))
        elif paragraph.startswith("="):
            if paragraph.startswith(("=head1", "=head2")) and entries:
                entries.append(("", []))  # a new =head1 ends the current answer
            continue
        elif entries and entries[-1][0]:
            if paragraph[:1].isspace():
                entries[-1][1].append(clean(paragraph))
            else:
                entries[-1][1].append(reflow(pod_inline(paragraph)))
    return [(question, "\n\n".join(answer)) for question, answer in entries if question and answer]
