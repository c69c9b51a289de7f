"""Build the default corpus from the pinned sources: fetch, parse, split, write shards, manifest and counts.

    sudo PYTHONPATH=src python training/data/build_corpus.py              # rebuild training/data/default/
    sudo PYTHONPATH=src python training/data/build_corpus.py --check true # rebuild in a temporary folder and compare

The versions and sha256 of every input are pinned in the output's `manifest.json`; the builder refuses to use anything
else (`--repin true` re-pins to what the archive offers now and changes the output).
"""

import json
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from nomic_bert_hf.tasks import column_prompts
from nomic_bert_hf.utils.configs import parse_config
from nomic_bert_hf.utils.files import atomic_output_dir, sha256_file

from . import datasets as D
from . import fetch, sources
from .shards import jsonl_bytes, write_file, write_shards
from .text import word_count

MANIFEST = "manifest.json"
DATA_CARD = "DATA.md"
COUNTS_START, COUNTS_END = "<!-- counts:start (written by the builder) -->", "<!-- counts:end -->"
DEFAULT_OUTPUT = Path(__file__).resolve().parents[3] / "training" / "data" / "default"


@dataclass
class BuildArguments:
    output_dir: str = field(default=str(DEFAULT_OUTPUT), metadata={"help": "corpus folder (manifest = the pins)"})
    cache_dir: str = field(default="~/.cache/nomic-bert-hf/corpus", metadata={"help": "downloads, unpacked packages"})
    repin: bool = field(default=False, metadata={"help": "pin what the archive offers now, not the manifest's pins"})
    check: bool = field(default=False, metadata={"help": "build in a temporary folder and compare with output_dir"})
    apt_update: bool = field(default=True, metadata={"help": "apt-get update with English descriptions (root)"})


# --- pins -----------------------------------------------------------------------------------------------------


def current_pins() -> dict[str, dict]:
    """Pins for what the package lists offer now (the release suite's version of each package)."""
    pins = {}
    for name, (package, license) in sources.PACKAGES.items():
        version = fetch.resolve_version(package)
        pins[name] = {"package": package, "version": version, "sha256": fetch.archive_sha256(package, version),
                      "license": license}
    pins["debian-descriptions"] = {"index": sources.DEBIAN_DESCRIPTIONS["list"] + "_i18n_Translation-en",
                                   "release": release_of(sources.DEBIAN_DESCRIPTIONS["list"]), "sha256": None,
                                   "license": sources.DEBIAN_DESCRIPTIONS["license"]}
    return pins


def release_of(list_prefix: str) -> str:
    """'Debian 12.15 (Sat, 11 Jul 2026 10:16:37 UTC)' from the suite's InRelease file."""
    in_release = fetch.APT_LISTS / (list_prefix.rsplit("_", 1)[0] + "_InRelease")
    fields = dict(re.findall(r"^(\w+): (.*)$", in_release.read_text(errors="replace"), re.M))
    origin, version, codename = (fields.get(key, "?") for key in ("Origin", "Version", "Codename"))
    return f"{origin} {version} {codename} ({fields.get('Date', '?')})"


def check_tools(pinned: dict[str, str]) -> None:
    current = fetch.tool_versions()
    drift = {k: (v, current.get(k)) for k, v in pinned.items() if current.get(k) != v}
    if drift:
        raise fetch.PinError(f"this machine's tools differ from the pinned ones (pinned, here): {drift}; the output "
                             "would not be bit-identical. Use a machine with the pinned tools, or --repin true")


def fetch_all(pins: dict[str, dict], cache: Path) -> tuple[dict[str, Path], Path]:
    trees = {name: fetch.fetch_deb(pin["package"], pin["version"], pin["sha256"], cache)
             for name, pin in pins.items() if "package" in pin}
    descriptions = pins["debian-descriptions"]
    translation = fetch.fetch_translation(sources.DEBIAN_DESCRIPTIONS["list"], descriptions["sha256"], cache)
    descriptions["sha256"] = sha256_file(translation)
    return trees, translation


# --- assembling -----------------------------------------------------------------------------------------------


@dataclass
class Parsed:
    """Every source, parsed."""

    python: list
    postgresql: list
    sqlite: list
    django: list
    man: list
    man_licenses: dict
    synsets: dict
    entries: list
    descriptions: list
    perl: list


def parse_sources(trees: dict[str, Path], translation: Path, log=print) -> Parsed:
    log("parsing documentation (HTML) ...")
    python = sources.python_documents(trees["python-docs"])
    postgresql = sources.postgresql_documents(trees["postgresql-docs"])
    sources.postgresql_references(postgresql)
    sqlite = sources.sqlite_documents(trees["sqlite-docs"])
    django = sources.django_documents(trees["django-docs"])
    log("rendering man pages (groff) ...")
    man, man_licenses = sources.man_documents([trees["manpages"], trees["manpages-dev"]])
    log("parsing WordNet, dictionaries, package descriptions, Perl FAQ ...")
    synsets = sources.wordnet_synsets(trees["wordnet"])
    entries = sources.dictionary_entries(trees["jargon"], trees["foldoc"])
    descriptions = sources.debian_descriptions(translation)
    perl = sources.perl_faq(trees["perl-faq"])
    return Parsed(python, postgresql, sqlite, django, man, man_licenses, synsets, entries, descriptions, perl)


def assemble(parsed: Parsed):
    """The MLM rows, pair datasets and evaluation tasks derived from the parsed sources."""
    p = parsed
    python, postgresql, sqlite, django, man = p.python, p.postgresql, p.sqlite, p.django, p.man
    synsets, units = p.synsets, D.wordnet_units(p.synsets)
    documents = python + postgresql + sqlite + django + man
    mlm, mlm_stats = D.mlm_rows(documents)
    pairs = {
        "debian_packages": D.debian_pairs(p.descriptions),
        "wordnet_definitions": D.wordnet_pairs(synsets, units),
        "computing_dictionaries": D.dictionary_pairs(p.entries),
        "doc_sections": D.section_pairs(python + postgresql + sqlite + django),
        "reference_summaries": D.reference_pairs(man + postgresql),
        "python_api": D.api_pairs(python),
        "faq": D.faq_pairs(python + django),
    }
    pairs = {name: D.finish(name, dataset) for name, dataset in pairs.items()}
    limit, words = D.RECIPE["eval_max_queries"], D.RECIPE["eval_max_words"]
    evals = {
        name: (D.retrieval_task(pairs[name].rows["validation"], limit, words),
               {"type": "retrieval", "prompts": pairs[name].prompts, "held_out": False,
                "description": f"validation split of pairs/{name}: {pairs[name].description}"})
        for name in ("debian_packages", "wordnet_definitions", "reference_summaries", "python_api")
    }
    evals["perl_faq"] = (
        D.retrieval_task(D.perl_faq_rows(p.perl), limit, words),
        {"type": "retrieval", "prompts": D.SEARCH, "held_out": True,
         "description": "Perl FAQ (perlfaq1-9) question -> answer: a source family that no training data comes from"},
    )
    long_rows = D.long_document_rows(documents)
    evals["long_documents"] = (
        D.retrieval_task(long_rows, None, None),
        {"type": "retrieval", "prompts": D.SEARCH, "held_out": False,
         "description": "validation long documents (man pages, Python module pages, PostgreSQL reference pages of "
                        f">= {D.RECIPE['long_document_min_words']} words): the page's one-line summary (NAME "
                        "description, module synopsis, purpose line) -> the page without it"},
    )
    similarity, relations = D.similarity_task(synsets, units)
    evals["wordnet_similarity"] = (
        {"test": similarity},
        {"type": "sts", "prompts": column_prompts("classification", ["sentence1", "sentence2"]),
         "held_out": False, "score_range": [0.0, 1.0], "relations": relations,
         "description": "definitions of two validation WordNet synsets, scored by their path similarity in the "
                        "hypernym hierarchy"},
    )
    extra = {
        "mlm": mlm_stats,
        "man_page_licenses": dict(sorted(_count(p.man_licenses.get(row["doc_id"]) for split in mlm.values()
                                                for row in split if row["source"] == "manpages").items())),
        "long_document_words": _word_stats([row["document"] for row in long_rows]),
    }
    return mlm, pairs, evals, extra


def _count(values) -> dict:
    counts = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def _word_stats(texts: list[str]) -> dict:
    counts = sorted(word_count(t) for t in texts)
    if not counts:
        return {}
    return {"documents": len(counts), "min": counts[0], "median": counts[len(counts) // 2], "max": counts[-1]}


# --- writing --------------------------------------------------------------------------------------------------


def write_corpus(root: Path, mlm, pairs, evals, extra, pins, tools) -> dict:
    """Write every file under `root` and return the manifest (also written)."""
    files: dict[str, dict] = {}
    manifest = {
        "name": "nomic-bert-hf default corpus",
        "format": 1,
        "builder": "training/data/build_corpus.py",
        "recipe": D.RECIPE,
        "tools": tools,
        "sources": pins,
        "mlm": {"files": {}, "sources": extra["mlm"], "man_page_licenses": extra["man_page_licenses"]},
        "pairs": {},
        "eval": {},
        "files": files,
    }
    for split in ("train", "validation"):
        written = write_shards(root / "mlm", split, mlm[split], root)
        files.update(written)
        manifest["mlm"]["files"][split] = sorted(written)
    for name, dataset in pairs.items():
        entry = {"stage": dataset.stage, "prompts": dataset.prompts, "description": dataset.description,
                 "sources": sorted({r["source"] for rows in dataset.rows.values() for r in rows}), "files": {},
                 "rows": {}}
        for split in ("train", "validation"):
            written = write_shards(root / "pairs" / name, split, dataset.rows[split], root)
            files.update(written)
            entry["files"][split] = sorted(written)
            entry["rows"][split] = len(dataset.rows[split])
        manifest["pairs"][name] = entry
    for name, (tables, info) in evals.items():
        entry = {**info, "files": {}, "rows": {}}
        if name == "long_documents":
            entry["document_words"] = extra["long_document_words"]
        for table, rows in tables.items():
            path = root / "eval" / name / f"{table}.jsonl.gz"
            files[path.relative_to(root).as_posix()] = write_file(path, jsonl_bytes(rows), len(rows))
            entry["files"][table] = path.relative_to(root).as_posix()
            entry["rows"][table] = len(rows)
        manifest["eval"][name] = entry
    text = json.dumps(manifest, indent=1, ensure_ascii=False) + "\n"
    (root / MANIFEST).write_text(text, encoding="utf-8")
    return json.loads(text)


def counts_table(manifest: dict) -> str:
    """Markdown tables of the manifest: pinned sources, rows per part and compressed sizes."""
    size = lambda paths: sum(manifest["files"][p]["bytes"] for p in paths)
    lines = ["| source | pinned input | licence |", "|---|---|---|"]
    for name, pin in manifest["sources"].items():
        pinned = (f"`{pin['package']}={pin['version']}`" if "package" in pin
                  else f"`{pin['index']}` of {pin['release']}, sha256 `{pin['sha256'][:16]}...`")
        lines.append(f"| {name} | {pinned} | {pin['license']} |")
    tools = ", ".join(f"{k} {v}" for k, v in manifest["tools"].items())
    lines += ["", f"Tools pinned with them: {tools}.", ""]
    lines += ["| part | stage / type | prompts | train rows | validation rows | compressed |",
              "|---|---|---|---|---|---|"]
    mlm = manifest["mlm"]["files"]
    rows = lambda paths: sum(manifest["files"][p]["rows"] for p in paths)
    lines.append(f"| mlm | 1 (MLM) | - | {rows(mlm['train']):,} | {rows(mlm['validation']):,} | "
                 f"{(size(mlm['train']) + size(mlm['validation'])) / 1e6:.2f} MB |")
    for name, entry in manifest["pairs"].items():
        prompts = " / ".join(sorted(set(entry["prompts"].values()), reverse=True)).replace(": ", "")
        megabytes = size(entry["files"]["train"] + entry["files"]["validation"]) / 1e6
        lines.append(f"| pairs/{name} | {entry['stage']} | {prompts} | {entry['rows']['train']:,} | "
                     f"{entry['rows']['validation']:,} | {megabytes:.2f} MB |")
    lines += ["", "| eval task | type | held out | rows | compressed |", "|---|---|---|---|---|"]
    for name, entry in manifest["eval"].items():
        counts = ", ".join(f"{table} {n:,}" for table, n in entry["rows"].items())
        lines.append(f"| eval/{name} | {entry['type']} | {'yes' if entry['held_out'] else 'no'} | {counts} | "
                     f"{size(entry['files'].values()) / 1e6:.2f} MB |")
    total = sum(f["bytes"] for f in manifest["files"].values())
    lines += ["", f"Total: {len(manifest['files'])} files, {total / 1e6:.2f} MB compressed."]
    return "\n".join(lines)


def update_data_card(previous: Path, root: Path, manifest: dict) -> None:
    """Carry the hand-written DATA.md over into the new build, with its counts block rewritten."""
    if not (previous / DATA_CARD).is_file():
        return
    text = (previous / DATA_CARD).read_text(encoding="utf-8")
    if COUNTS_START in text and COUNTS_END in text:
        head, rest = text.split(COUNTS_START, 1)
        text = head + COUNTS_START + "\n" + counts_table(manifest) + "\n" + COUNTS_END + rest.split(COUNTS_END, 1)[1]
    (root / DATA_CARD).write_text(text, encoding="utf-8")


def compare(expected: dict, built: dict) -> list[str]:
    """Differences between two manifests' file records, one line each."""
    problems = []
    for path in sorted(set(expected["files"]) | set(built["files"])):
        old, new = expected["files"].get(path), built["files"].get(path)
        if old is None or new is None:
            problems.append(f"{path}: only in the {'new build' if old is None else 'committed corpus'}")
        elif old["sha256"] != new["sha256"]:
            problems.append(f"{path}: sha256 {new['sha256']} differs from the committed {old['sha256']}")
    for key in sorted(set(expected) | set(built)):
        if key != "files" and expected.get(key) != built.get(key):
            problems.append(f"manifest.json: '{key}' differs")
    return problems


def main(args=None) -> dict:
    (arguments,) = parse_config([BuildArguments], args)
    output, cache = Path(arguments.output_dir), Path(arguments.cache_dir).expanduser()
    started = time.monotonic()
    # 1. Pins: the manifest's, unless asked to re-pin (or there is none yet)
    previous = json.loads((output / MANIFEST).read_text()) if (output / MANIFEST).is_file() else None
    if arguments.apt_update:
        fetch.apt_update()
    if previous is None or arguments.repin:
        pins, tools = current_pins(), fetch.tool_versions()
    else:
        pins, tools = json.loads(json.dumps(previous["sources"])), previous["tools"]
        check_tools(tools)
    # 2. Fetch exactly the pinned packages and index
    trees, translation = fetch_all(pins, cache)
    # 3. Parse and derive rows
    mlm, pairs, evals, extra = assemble(parse_sources(trees, translation))
    # 4. Write (atomically), or build aside and compare
    if arguments.check:
        if previous is None:
            raise FileNotFoundError(f"--check needs a built corpus at {output}")
        with tempfile.TemporaryDirectory() as scratch:
            built = write_corpus(Path(scratch), mlm, pairs, evals, extra, pins, tools)
        problems = compare(previous, built)
        print(f"checked {len(built['files'])} files in {time.monotonic() - started:.0f} s: "
              + ("identical to the committed corpus" if not problems else f"{len(problems)} differ"))
        for problem in problems:
            print("  " + problem)
        if problems:
            raise SystemExit(1)
        return built
    with atomic_output_dir(output, overwrite=True) as staging:
        manifest = write_corpus(staging, mlm, pairs, evals, extra, pins, tools)
        update_data_card(output, staging, manifest)
    print(counts_table(manifest))
    print(f"built {output} in {time.monotonic() - started:.0f} s")
    return manifest
