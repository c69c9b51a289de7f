"""The default corpus's sources: what to fetch (pinned through the manifest) and how each is parsed.

Each unpacked source becomes documents, dictionary entries, synsets or package descriptions."""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from . import debian, dictd, docs, manpages, wordnet
from .docs import Document
from .text import one_line

# name -> Debian package and licence of the text taken from it. Versions and sha256 are pinned in the manifest.
PACKAGES = {
    "wordnet": ("wordnet-base", "WordNet-3.0 (Princeton WordNet 3.0 licence: permissive, BSD-like)"),
    "jargon": ("dict-jargon", "public-domain"),
    "foldoc": ("dict-foldoc", "GFDL-1.1-or-later (no invariant sections)"),
    "manpages": ("manpages", "per page, SPDX in each source: Linux-man-pages-copyleft, GPL-2.0-or-later, "
                 "GPL-1.0-or-later, BSD-3-Clause, BSD-4-Clause-UC, ..."),
    "manpages-dev": ("manpages-dev", "per page, as manpages"),
    "python-docs": ("python3.11-doc", "PSF-2.0 (Python documentation licence; code examples 0BSD)"),
    "postgresql-docs": ("postgresql-doc-15", "PostgreSQL"),
    "sqlite-docs": ("sqlite3-doc", "public-domain"),
    "django-docs": ("python-django-doc", "BSD-3-Clause"),
    "perl-faq": ("perl-doc", "Artistic-1.0-Perl OR GPL-1.0-or-later (same terms as Perl)"),
}
# The archive index with the English package descriptions (an apt list file, pinned by its sha256).
DEBIAN_DESCRIPTIONS = {
    "list": "deb.debian.org_debian_dists_bookworm_main",
    "license": "each package's own free licence (descriptions are part of the Debian archive's package metadata)",
}

PYTHON_SECTIONS = ("tutorial/", "library/", "reference/", "howto/", "faq/", "using/", "extending/", "c-api/",
                   "installing/", "distributing/")
POSTGRESQL_SKIP = ("release-", "bookindex", "index.html", "legalnotice", "biblio")
DJANGO_SECTIONS = ("intro/", "topics/", "howto/", "ref/", "faq/", "misc/", "internals/")
SQLITE_SKIP = ("releaselog/", "syntax/", "index.html", "sitemap", "changes.html", "chronology", "docs.html",
               "keyword_index", "toc.html", "doclist")


@dataclass(frozen=True)
class Entry:
    """A dictionary entry: a term and its definition."""

    source: str
    term: str
    definition: str


def _pages(root: Path, include=None, skip=()) -> list[tuple[Path, str]]:
    found = []
    for path in sorted(root.rglob("*.html")):
        relative = path.relative_to(root).as_posix()
        if include is not None and not relative.startswith(include):
            continue
        if any(s in relative for s in skip):
            continue
        found.append((path, relative))
    return found


def python_documents(tree: Path) -> list[Document]:
    root = tree / "usr/share/doc/python3.11/html"
    synopses = docs.python_synopses(root)
    return [docs.python_page(p, r, synopses.get(r)) for p, r in _pages(root, PYTHON_SECTIONS, ("whatsnew/",))]


def postgresql_documents(tree: Path) -> list[Document]:
    root = tree / "usr/share/doc/postgresql-doc-15/html"
    return [docs.postgresql_page(p, r) for p, r in _pages(root, skip=POSTGRESQL_SKIP)]


def sqlite_documents(tree: Path) -> list[Document]:
    root = tree / "usr/share/doc/sqlite3"
    return [docs.sqlite_page(p, r) for p, r in _pages(root, skip=SQLITE_SKIP)]


def django_documents(tree: Path) -> list[Document]:
    root = tree / "usr/share/doc/python-django-doc/html"
    return [docs.django_page(p, r) for p, r in _pages(root, DJANGO_SECTIONS)]


def man_documents(trees: list[Path]) -> tuple[list[Document], dict[str, str]]:
    """Rendered man pages as documents (summary = the NAME line's description, body = the page without NAME), and
    each page's SPDX licence."""
    sources = {}
    for tree in trees:
        for path in sorted((tree / "usr/share/man").glob("man*/*")):
            source = manpages.page_source(path)
            if source is not None:
                sources[f"manpages/{path.parent.name}/{path.name.removesuffix('.gz')}"] = source
    with ThreadPoolExecutor(max_workers=4) as pool:  # groff runs in subprocesses
        rendered = dict(zip(sources, pool.map(manpages.render, sources.values()), strict=True))
    documents, licenses = [], {}
    for doc_id, text in rendered.items():
        sections = manpages.sections(text)
        name = manpages.name_line(sections)
        if not name:
            continue
        description = dict(sections).get("DESCRIPTION", "")
        document = Document(
            "manpages", doc_id, name, manpages.page_text(sections), sections=[],
            summary=manpages.summary(name), body=manpages.page_text(sections, skip=("NAME",)),
        )
        document.reference = (name, description)
        documents.append(document)
        licenses[doc_id] = manpages.license_of(sources[doc_id])
    return documents, licenses


def postgresql_references(documents: list[Document]) -> None:
    """PostgreSQL reference pages (a purpose line like man's NAME): (title — purpose, Description section)."""
    for document in documents:
        if document.summary:
            description = dict(document.sections).get("Description", "")
            document.reference = (f"{document.title} \u2014 {document.summary}", description)


def dictionary_entries(jargon_tree: Path, foldoc_tree: Path) -> list[Entry]:
    entries = []
    dictionaries = (("jargon", jargon_tree, dictd.parse_jargon), ("foldoc", foldoc_tree, dictd.parse_foldoc))
    for source, tree, parse in dictionaries:
        directory = tree / "usr/share/dictd"
        for raw in dictd.read_entries(directory / f"{source}.index", directory / f"{source}.dict.dz"):
            term, definition = parse(raw)
            entries.append(Entry(source, one_line(term), definition))
    return entries


def perl_faq(tree: Path) -> list[tuple[str, str, str]]:
    """(doc_id, question, answer) of perlfaq1-9."""
    root = next((tree / "usr/share/perl").glob("*/pod"))
    found = []
    for number in range(1, 10):
        name = f"perlfaq{number}"
        for question, answer in docs.pod_faq((root / f"{name}.pod").read_text(encoding="utf-8")):
            found.append((f"perl-faq/{name}", question, answer))
    return found


def wordnet_synsets(tree: Path) -> dict[str, wordnet.Synset]:
    return wordnet.read_wordnet(tree / "usr/share/wordnet")


def debian_descriptions(translation: Path) -> list[debian.Description]:
    return debian.parse_translation(translation.read_text(encoding="utf-8"))
