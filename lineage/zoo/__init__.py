"""The zoo: offline families of tiny models with known lineage, for tests and benchmarks.

`lineage.zoo.build.build_zoo` trains them; `lineage.zoo.corpus.load_corpus` gives the corpora."""
