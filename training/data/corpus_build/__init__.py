"""The builder of the default corpus (`training/data/build_corpus.py`), for maintainers.

It fetches pinned Debian packages, parses each source (`wordnet`, `dictd`, `manpages`, `docs`/`html`, `debian`),
splits by source document and derives the datasets (`datasets`), and writes deterministic shards and the manifest
(`shards`, `build`). Reading the corpus needs none of this: see `nomic_bert_hf.data.corpus`."""
