"""The zoo: offline families of tiny models with known lineage, for tests and benchmarks."""
