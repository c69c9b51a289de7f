"""HTML documentation pages (Python, PostgreSQL, SQLite, Django) to text, with the standard library's parser only.

`parse` builds a small element tree (HTML's implied end tags and void elements handled); `blocks` turns an element
into a flat list of headings, paragraphs and preformatted blocks; `sections` groups blocks under their headings.
"""

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

from .text import clean, one_line

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
# A start tag of the key closes an open element of the value's tags, up to the nearest enclosing list/table/block.
IMPLIED_END = {
    "li": {"li"}, "dt": {"dt", "dd"}, "dd": {"dt", "dd"}, "tr": {"tr", "td", "th"}, "td": {"td", "th"},
    "th": {"td", "th"}, "option": {"option"}, "p": {"p"},
}
SCOPE = {"ul", "ol", "dl", "table", "div", "body", "html", "section", "blockquote", "select"}
BLOCK = {
    "address", "article", "aside", "blockquote", "caption", "dd", "div", "dl", "dt", "figcaption", "figure", "footer",
    "form", "header", "hr", "li", "main", "nav", "ol", "p", "section", "table", "tbody", "thead", "tfoot", "tr", "ul",
}
HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
NEVER_TEXT = {"script", "style", "head", "svg", "math", "noscript", "button", "select", "form"}
PILCROW = "\u00b6"  # Sphinx's heading permalink sign


@dataclass
class Element:
    tag: str
    attrs: dict[str, str] = field(default_factory=dict)
    children: list["Element | str"] = field(default_factory=list)

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def iter(self):
        """This element and every element below it, in document order."""
        yield self
        for child in self.children:
            if isinstance(child, Element):
                yield from child.iter()

    def find(self, tag: str, cls: str | None = None, id: str | None = None) -> "Element | None":
        """The first element (this one included) with the tag, and the class and id when given."""
        for element in self.iter():
            if element.tag != tag or (cls is not None and cls not in element.classes):
                continue
            if id is None or element.attrs.get("id") == id:
                return element
        return None

    def text(self) -> str:
        """All text below this element, on one line."""
        return one_line("".join(_raw_text(self)))


class _TreeBuilder(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Element("document")
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        closes = IMPLIED_END.get(tag)
        if closes:
            for depth in range(len(self.stack) - 1, 0, -1):
                if self.stack[depth].tag in closes:
                    del self.stack[depth:]
                    break
                if self.stack[depth].tag in SCOPE:
                    break
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(element)
        if tag not in VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag, attrs):
        self.stack[-1].children.append(Element(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag):
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data):
        self.stack[-1].children.append(data)


def parse(html: str) -> Element:
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    return builder.root


def title(root: Element) -> str:
    element = root.find("title")
    return element.text() if element else ""


@dataclass(frozen=True)
class Block:
    kind: str  # "h1".."h6", "p" (filled text) or "pre" (line structure kept)
    text: str


def blocks(element: Element, skip=lambda element: False) -> list[Block]:
    """The element's text as headings, paragraphs and preformatted blocks; elements for which `skip` is true (and
    scripts, styles, forms, SVG) are left out."""
    out: list[Block] = []
    inline: list[str] = []

    def flush():
        text = one_line("".join(inline))
        if text:
            out.append(Block("p", text))
        inline.clear()

    def walk(node: Element):
        for child in node.children:
            if isinstance(child, str):
                inline.append(child)
            elif child.tag in NEVER_TEXT or skip(child):
                continue
            elif child.tag in HEADINGS:
                flush()
                text = child.text().replace(PILCROW, "").strip()
                if text:
                    out.append(Block(child.tag, text))
            elif child.tag == "pre":
                flush()
                text = clean("".join(_raw_text(child)))
                if text:
                    out.append(Block("pre", text))
            elif child.tag == "br":
                inline.append("\n")
            elif child.tag in BLOCK or child.tag in ("td", "th"):
                if child.tag in ("td", "th"):
                    inline.append(" ")
                else:
                    flush()
                walk(child)
                if child.tag not in ("td", "th"):
                    flush()
            else:
                walk(child)

    walk(element)
    flush()
    return [Block(b.kind, b.text.replace(PILCROW, "").strip()) for b in out if b.text.replace(PILCROW, "").strip()]


def _raw_text(element: Element) -> list[str]:
    """The text below `element` as written (line breaks for <br>, and around block elements)."""
    parts = []
    for child in element.children:
        if isinstance(child, str):
            parts.append(child)
        elif child.tag == "br":
            parts.append("\n")
        elif child.tag in BLOCK:
            parts.extend(["\n", *_raw_text(child), "\n"])
        else:
            parts.extend(_raw_text(child))
    return parts


def blocks_text(found: list[Block]) -> str:
    return "\n\n".join(block.text for block in found)


def sections(found: list[Block], levels=("h1", "h2", "h3")) -> list[tuple[str, str]]:
    """(heading, text up to the next heading of `levels`) pairs; deeper headings stay inside the text."""
    out: list[tuple[str, list[str]]] = []
    for block in found:
        if block.kind in levels:
            out.append((block.text, []))
        elif out:
            out[-1][1].append(block.text)
    return [(heading, "\n\n".join(body)) for heading, body in out]


def strip_title_suffix(text: str) -> str:
    """'shlex — Simple lexical analysis — Python 3.11.2 documentation' -> 'shlex — Simple lexical analysis'."""
    return re.sub(r"\s+[\u2014|-]+\s+(Python|Django|PostgreSQL) [\d.]+ [Dd]ocumentation$", "", text)
