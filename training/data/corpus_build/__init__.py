"""The builder of the default corpus (`training/data/build_corpus.py`): fetch pinned Debian packages, parse each
source (`wordnet`, `dictd`, `manpages`, `docs`/`html`, `debian`), split by source document and derive the datasets
(`datasets`), write deterministic shards and the manifest (`shards`, `build`). Reading the corpus needs none of this:
see `nomic_bert_hf.data.corpus`."""
