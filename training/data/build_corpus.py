"""Build the project's default corpus (training/data/default/) from pinned Debian packages.

A maintainer's tool: it runs `apt-get update` (root) and `apt-get download` of the exact package versions that the
corpus's manifest.json pins, and refuses to build from anything else. Users and CI use the committed corpus.

    sudo PYTHONPATH=src python training/data/build_corpus.py               # rebuild training/data/default/
    sudo PYTHONPATH=src python training/data/build_corpus.py --check true  # rebuild aside, compare bit for bit
    sudo PYTHONPATH=src python training/data/build_corpus.py --repin true  # re-pin to the archive's current versions

Downloads and unpacked packages are cached in ~/.cache/nomic-bert-hf/corpus (--cache_dir), so a rerun is quick.
"""

from corpus_build.build import main

if __name__ == "__main__":
    main()
