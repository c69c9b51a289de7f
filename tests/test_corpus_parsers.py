"""The corpus builder's source parsers, on small inline samples in each source's real format."""

import gzip
import shutil

import pytest
from corpus_build import debian, dictd, docs, html, manpages, wordnet
from corpus_build.text import clean, duplicate_key, reflow, split_of, truncate_words

# --- text helpers ----------------------------------------------------------------------------------------------


def test_clean_normalises_typography_and_spacing():
    assert clean("ls \u2010l  \u2212\u2212all\u00a0now \n\n\n\n next ") == "ls -l --all now\n\nnext"


def test_reflow_joins_hard_wrapped_lines_per_paragraph():
    assert reflow("one\ntwo\n\n  three\nfour  ") == "one two\n\nthree four"


def test_truncate_words_prefers_a_paragraph_end():
    text = "a b c d\n\ne f g h\n\ni j k l"
    assert truncate_words(text, 9) == "a b c d\n\ne f g h"
    assert truncate_words("one two three four five", 3) == "one two three"  # no paragraph end: cut inside
    assert truncate_words(text, 100) == text


def test_duplicate_key_ignores_case_punctuation_and_spacing():
    assert duplicate_key("Hello,  World!") == duplicate_key("hello world")
    assert duplicate_key("hello world") != duplicate_key("hello word")


def test_split_is_a_fixed_function_of_the_source_document():
    splits = [split_of("salt", "manpages", f"manpages/man1/p{i}.1", 0.1) for i in range(2000)]
    assert splits == [split_of("salt", "manpages", f"manpages/man1/p{i}.1", 0.1) for i in range(2000)]
    assert 0.07 < splits.count("validation") / len(splits) < 0.13
    assert split_of("other salt", "manpages", "manpages/man1/p0.1", 0.1) in ("train", "validation")


# --- WordNet ---------------------------------------------------------------------------------------------------

# Real data.noun / data.adj lines (WordNet 3.0); the last noun line is made up to give "dog" a sibling.
NOUNS = """\
  1 This software and database is being provided to you, the LICENSEE, by Princeton University
00001740 03 n 01 entity 0 001 ~ 00002137 n 0000 | that which is perceived or known or inferred to have its own distinct existence (living or nonliving)
00002137 03 n 02 abstraction 0 abstract_entity 0 003 @ 00001740 n 0000 ~ 00003000 n 0000 ~ 00004000 n 0000 | a general concept formed by extracting common features from specific examples
00003000 03 n 01 dog 0 001 @ 00002137 n 0000 | a member of the genus Canis; "the dog barked all night"; "a faithful dog"
00004000 03 n 02 cat 0 true_cat 0 001 @ 00002137 n 0000 | feline mammal usually having thick soft fur
"""
ADJECTIVES = """\
00001740 00 a 01 able 0 001 ! 00002098 a 0101 | (usually followed by `to') having the necessary means or skill; "able to swim"
00002312 00 s 01 abaxial(p) 0 001 & 00001740 a 0000 | facing away from the axis of an organ or organism
"""


@pytest.fixture
def synsets(tmp_path):
    (tmp_path / "data.noun").write_text(NOUNS)
    (tmp_path / "data.adj").write_text(ADJECTIVES)
    (tmp_path / "data.verb").write_text("")
    (tmp_path / "data.adv").write_text("")
    return wordnet.read_wordnet(tmp_path)


def test_wordnet_lines_give_lemmas_definition_examples_and_hypernyms(synsets):
    assert len(synsets) == 6  # the licence header line is skipped
    dog = synsets["n00003000"]
    assert dog.lemmas == ("dog",) and dog.definition == "a member of the genus Canis"
    assert dog.examples == ("the dog barked all night", "a faithful dog")
    assert dog.hypernyms == ("n00002137",)
    assert synsets["n00002137"].lemmas == ("abstraction", "abstract entity")


def test_wordnet_satellite_adjective_belongs_to_its_head(synsets):
    satellite = synsets["a00002312"]
    assert satellite.satellite and satellite.lemmas == ("abaxial",)  # the "(p)" marker is removed
    assert wordnet.adjective_head(satellite) == "a00001740"
    assert wordnet.adjective_head(synsets["a00001740"]) == "a00001740"


def test_path_similarity_and_subtree_groups(synsets):
    hierarchy = wordnet.Hierarchy(synsets)
    assert hierarchy.path_similarity("n00003000", "n00002137") == pytest.approx(1 / 2)  # hypernym
    assert hierarchy.path_similarity("n00003000", "n00004000") == pytest.approx(1 / 3)  # siblings
    assert hierarchy.path_similarity("n00003000", "n00001740") == pytest.approx(1 / 3)  # grandparent
    groups = hierarchy.groups(max_size=3)
    assert groups["n00003000"] == groups["n00004000"] == "n00002137"  # siblings share a split unit
    assert groups["n00001740"] == "n00001740"  # its own subtree is larger than 3


def test_gloss_without_examples():
    assert wordnet.parse_gloss("a general concept  ") == ("a general concept", ())


# --- dictd -----------------------------------------------------------------------------------------------------


def test_dictd_entries_are_read_by_base64_offsets(tmp_path):
    body = b"00-database-short\n     Test\n" + b"tcp\n\n   <networking> The {protocol}.\n\n   (1998-09-15)\n\n"
    start = len(b"00-database-short\n     Test\n")
    (tmp_path / "d.dict.dz").write_bytes(gzip.compress(body))
    offset, length = dictd._DIGITS[start], dictd._DIGITS[len(body) - start]
    assert dictd.decode_number("BA") == 64
    (tmp_path / "d.index").write_text(f"00-database-short\tA\tb\ntcp\t{offset}\t{length}\nTCP\t{offset}\t{length}\n")
    entries = dictd.read_entries(tmp_path / "d.index", tmp_path / "d.dict.dz")
    assert len(entries) == 1  # metadata skipped, the alias pointing at the same bytes kept once
    assert dictd.parse_foldoc(entries[0]) == ("tcp", "The protocol.")


def test_foldoc_entry_cleaning():
    entry = ("Transmission Control Protocol\nTCP\n\n   <networking, protocol> (TCP) The most common {transport\n"
             "   layer} protocol.\n\n   [{Jargon File}]\n\n   {(ftp://example.org/x.zip)}.\n\n   (1999-01-27)\n\n")
    assert dictd.parse_foldoc(entry) == ("Transmission Control Protocol", "(TCP) The most common transport layer protocol.")
    senses = "simplex\n\n   1. <communications> One direction only.\n\n   2. <algorithm> The simplex method.\n"
    assert dictd.parse_foldoc(senses)[1] == "1. One direction only.\n\n2. The simplex method."


def test_jargon_entry_drops_the_pronunciation_header():
    entry = "/dev/null\n /dev·nuhl/, n.\n\n    [from the Unix null device] A notional\n    black hole. See {bit bucket}.\n"
    assert dictd.parse_jargon(entry) == ("/dev/null", "[from the Unix null device] A notional black hole. See bit bucket.")


# --- man pages -------------------------------------------------------------------------------------------------

RENDERED = """\
open(2)                       System Calls Manual                       open(2)

NAME
       open, openat, creat - open and possibly create a file

SYNOPSIS
       #include <fcntl.h>

       int open(const char *pathname, int flags);

DESCRIPTION
       The open() system call opens the file specified by pathname.

   Subheading kept in the text
       More text.

Linux man-pages 6.03              2023-02-05                          open(2)
"""


def test_man_sections_name_line_and_summary():
    sections = manpages.sections(RENDERED)
    assert [heading for heading, _ in sections] == ["NAME", "SYNOPSIS", "DESCRIPTION"]
    name = manpages.name_line(sections)
    assert name == "open, openat, creat - open and possibly create a file"
    assert manpages.summary(name) == "open and possibly create a file"
    assert dict(sections)["DESCRIPTION"] == (
        "The open() system call opens the file specified by pathname.\n\nSubheading kept in the text\nMore text."
    )
    body = manpages.page_text(sections, skip=("NAME",))
    assert body.startswith("SYNOPSIS\n\n#include <fcntl.h>") and "open(2)" not in body  # header/footer dropped


def test_man_licence_and_redirects(tmp_path):
    assert manpages.license_of('.\\" SPDX-License-Identifier: GPL-2.0-or-later\n.TH X 1') == "GPL-2.0-or-later"
    assert manpages.license_of('.\\" %%%LICENSE_START(VERBATIM)\n') == "man-pages:VERBATIM"
    assert manpages.license_of(".TH X 1\n") == "unknown"
    (tmp_path / "alias.3.gz").write_bytes(gzip.compress(b".so man3/real.3\n"))
    (tmp_path / "real.3.gz").write_bytes(gzip.compress(b".TH REAL 3\n"))
    (tmp_path / "link.3.gz").symlink_to(tmp_path / "real.3.gz")
    assert manpages.page_source(tmp_path / "alias.3.gz") is None
    assert manpages.page_source(tmp_path / "link.3.gz") is None
    assert manpages.page_source(tmp_path / "real.3.gz") == ".TH REAL 3\n"


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
def test_groff_renders_a_page_with_unwrapped_paragraphs():
    source = (".TH DEMO 1\n.SH NAME\ndemo \\- show a demo\n.SH DESCRIPTION\n"
              + "This sentence is long enough to wrap at eighty columns in a terminal. " * 4 + "\n")
    sections = manpages.sections(manpages.render(source))
    assert manpages.name_line(sections) == "demo - show a demo"  # \- renders as an ASCII hyphen
    assert "\n" not in dict(sections)["DESCRIPTION"]  # one filled paragraph, one line


# --- HTML documentation ----------------------------------------------------------------------------------------

PYTHON_PAGE = """<html><head><title>shlex — Simple lexical analysis — Python 3.11.2 documentation</title></head>
<body><div class="related">Navigation</div><div class="body" role="main">
<h1><code>shlex</code> — Simple lexical analysis<a class="headerlink" href="#x">¶</a></h1>
<p>The <code>shlex</code> class makes it easy to write lexical analyzers.</p>
<dl class="py function"><dt class="sig" id="shlex.split"><span>shlex.</span><span>split</span>(<em>s</em>)<a class="headerlink">¶</a></dt>
<dd><p>Split the string <em>s</em> using shell-like syntax.</p></dd></dl>
<h2>shlex Objects<a class="headerlink">¶</a></h2>
<dl class="py class"><dt class="sig" id="shlex.shlex">class shlex.shlex(<em>instream=None</em>)</dt>
<dd><p>A lexical analyzer object.</p>
<dl class="py attribute"><dt class="sig" id="shlex.shlex.wordchars">wordchars</dt><dd><p>Characters that accumulate into tokens.</p></dd></dl>
</dd></dl>
<pre>&gt;&gt;&gt; shlex.split("a 'b c'")
['a', 'b c']</pre>
</div><div class="footer">Copyright</div></body></html>"""


def test_python_page_text_sections_and_api(tmp_path):
    path = tmp_path / "shlex.html"
    path.write_text(PYTHON_PAGE)
    page = docs.python_page(path, "library/shlex.html", "Simple lexical analysis for Unix shells.")
    assert page.title == "shlex — Simple lexical analysis"
    assert page.text.startswith("shlex — Simple lexical analysis\n\nThe shlex class makes it easy")
    assert "Navigation" not in page.text and "Copyright" not in page.text and "¶" not in page.text
    assert ">>> shlex.split(\"a 'b c'\")\n['a', 'b c']" in page.text  # preformatted lines kept
    assert page.api == [
        ("shlex.split(s)", "Split the string s using shell-like syntax."),
        ("class shlex.shlex(instream=None)", "A lexical analyzer object."),  # members are their own entries
        ("shlex.shlex.wordchars", "Characters that accumulate into tokens."),  # qualified from the anchor
    ]
    assert [heading for heading, _ in page.sections] == ["shlex Objects"]
    assert page.summary == "Simple lexical analysis for Unix shells."
    assert not page.body.startswith("shlex —")  # the title is not part of the long-document body


def test_html_implied_end_tags_and_tables():
    root = html.parse("<ul><li>one<li>two <b>bold</b></ul><p>para one<p>para two<table><tr><td>a<td>b</table>")
    assert [b.text for b in html.blocks(root)] == ["one", "two bold", "para one", "para two", "a b"]
    assert html.parse("<h1><span>1. </span>Overview</h1>").find("h1").text() == "1. Overview"


def test_postgresql_reference_page_purpose(tmp_path):
    page = """<html><head><title>CREATE TABLE</title></head><body><div class="navheader">Prev Next</div>
    <div class="refentry"><div class="refnamediv"><h2>CREATE TABLE</h2><p>CREATE TABLE — define a new table</p></div>
    <div class="refsect1"><h2>Description</h2><p>CREATE TABLE will create a new, initially empty table.</p></div></div>
    <div class="navfooter">Home</div></body></html>"""
    (tmp_path / "sql-createtable.html").write_text(page)
    document = docs.postgresql_page(tmp_path / "sql-createtable.html", "sql-createtable.html")
    assert document.summary == "define a new table"
    assert document.body == "Description\n\nCREATE TABLE will create a new, initially empty table."
    assert "Prev" not in document.text and "Home" not in document.text
    assert dict(document.sections)["Description"] == "CREATE TABLE will create a new, initially empty table."


def test_faq_questions_are_question_headings():
    found = html.blocks(html.parse("<h1>FAQ</h1><h2>Is it stable?</h2><p>Yes.</p><h2>History</h2><p>Long.</p>"))
    assert docs._faq(found) == [("Is it stable?", "Yes.")]


# --- POD (Perl FAQ) --------------------------------------------------------------------------------------------

POD = """=head1 NAME

perlfaq4 - Data Manipulation

=head2 Why is int() broken?

Your C<int()> is most probably working just fine. See L<perlop/"Floating-point Arithmetic">
and L<the manual|perlfunc>.

    printf "%.2f", 10/3;

=head2 How do I compare E<lt>stringsE<gt>?

Use C<< $a eq $b >>.

=head1 AUTHOR

Not an answer.
"""


def test_pod_faq_questions_answers_and_formatting_codes():
    assert docs.pod_faq(POD) == [
        ("Why is int() broken?", "Your int() is most probably working just fine. See perlop, Floating-point "
                                 'Arithmetic and the manual.\n\nprintf "%.2f", 10/3;'),
        ("How do I compare <strings>?", "Use $a eq $b."),
    ]


# --- Debian package descriptions -------------------------------------------------------------------------------

TRANSLATION = """Package: 0ad
Description-md5: d943033bedada21853d2ae54a2578a7b
Description-en: Real-time strategy game of ancient warfare
 0 A.D. is a free, open-source real-time strategy game
 of ancient warfare.

Package: 0ad-data
Description-md5: 26581e685027d5ae84824362a4ba59ee
Description-en: Real-time strategy game of ancient warfare (data files)
 0 A.D. is a free, open-source real-time strategy game
 of ancient warfare.
 .
 This package contains the main data files.

Package: libfoo-dev
Description-md5: 00000000000000000000000000000000
Description-en: library for foo - development files
 Foo does things.
  $ foo --verbose
 .
 This package contains the headers.

Package: bar
Description-md5: 11111111111111111111111111111111
Description-en: transitional package
 This is a transitional dummy package. It can safely be removed.
"""


def test_translation_stanzas_and_long_description_layout():
    found = debian.parse_translation(TRANSLATION)
    assert [d.package for d in found] == ["0ad", "0ad-data", "libfoo-dev", "bar"]
    assert found[1].long == ("0 A.D. is a free, open-source real-time strategy game of ancient warfare.\n\n"
                             "This package contains the main data files.")
    assert found[2].long == "Foo does things.\n$ foo --verbose\n\nThis package contains the headers."
    assert debian.is_placeholder(found[3]) and not debian.is_placeholder(found[0])


def test_sibling_packages_form_one_group():
    found = [d for d in debian.parse_translation(TRANSLATION) if not debian.is_placeholder(d)]
    groups = debian.group_siblings(found)
    assert sorted(groups) == ["0ad", "libfoo-dev"]
    assert [d.package for d in groups["0ad"]] == ["0ad", "0ad-data"]
