"""Seeded synthetic signatures that look like real ones, for the index and RPC benchmarks.

A real signature is, per probe, the square root of a first-word distribution over the suite's
48 buckets plus "other", minus the reference population's mean, flattened and normalised to
unit length (`Lineage._signature_vectors`). Real registries come in families (a teacher, its
students, its fine-tunes), so the generator does too:

- bucket prior: Zipf-like over the named buckets, with a heavy "other" bucket;
- family f, probe p: base distribution ~ Dirichlet(ALPHA * prior);
- member of family f, probe p: (1 - lam) * base[f, p] + lam * noise, where noise is one of a
  seeded pool of POOL Dirichlet(ALPHA * prior) draws picked at random per (member, probe), and
  lam ~ U(0.2, 0.8) per member (how far it drifted from its family);
- centring: the mean sqrt-distribution of REFS independent family bases (the "references").

Every chunk is generated from its own seed, so chunk c is the same whatever was generated
before it, and generation streams in bounded memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

PROBES = 128
BUCKETS = 49  # 48 named buckets + "other", as in the default suite
ALPHA = 4.0
POOL = 65_536
REFS = 64
FAMILY_SIZE = 100


@dataclass
class Synth:
    n: int
    seed: int = 0
    probes: int = PROBES
    buckets: int = BUCKETS

    def __post_init__(self) -> None:
        rng = np.random.default_rng([self.seed, 0])
        w = 1.0 / np.arange(1, self.buckets) ** 1.1
        prior = np.concatenate([w / w.sum() * 0.6, [0.4]])
        self.alpha = (ALPHA * prior).astype(np.float64)
        self.families = max(1, self.n // FAMILY_SIZE)
        self.base = self._dirichlet(rng, (self.families, self.probes))
        self.pool = self._dirichlet(rng, (POOL,))
        refs = self._dirichlet(rng, (REFS, self.probes))
        self.mu = np.sqrt(refs).mean(axis=0).astype(np.float32)  # [P, B]

    @property
    def dim(self) -> int:
        return self.probes * self.buckets

    def _dirichlet(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        g = rng.standard_gamma(self.alpha, size=shape + (self.buckets,)).astype(np.float32)
        g += 1e-12
        return g / g.sum(axis=-1, keepdims=True)

    def _members(self, rng: np.random.Generator, fam: np.ndarray) -> np.ndarray:
        """Unit signatures [len(fam), dim] float32 for new members of families fam."""
        m = len(fam)
        lam = rng.uniform(0.2, 0.8, size=(m, 1, 1)).astype(np.float32)
        pick = rng.integers(0, POOL, size=(m, self.probes))
        out = np.empty((m, self.probes, self.buckets), dtype=np.float32)
        for lo in range(0, m, 256):  # cache-sized blocks: no full-size temporaries
            hi = min(m, lo + 256)
            d = out[lo:hi]
            np.multiply(self.base[fam[lo:hi]], 1 - lam[lo:hi], out=d)
            d += lam[lo:hi] * self.pool[pick[lo:hi]]
            np.sqrt(d, out=d)
            d -= self.mu
            flat = d.reshape(hi - lo, self.dim)
            flat /= np.sqrt(np.einsum("ij,ij->i", flat, flat))[:, None]
        return out.reshape(m, self.dim)

    def chunks(self, size: int = 10_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids [m] int64, signatures [m, dim] float32) chunks covering ids 0..n-1."""
        for c, lo in enumerate(range(0, self.n, size)):
            rng = np.random.default_rng([self.seed, 1, c])
            ids = np.arange(lo, min(self.n, lo + size), dtype=np.int64)
            yield ids, self._members(rng, ids % self.families)

    def queries(self, nq: int) -> tuple[np.ndarray, np.ndarray]:
        """(queries [nq, dim] float32, derived [nq] bool).

        The first half are new members of stored families (a suspect derived from a
        registered model); the rest are members of new, unrelated families.
        """
        rng = np.random.default_rng([self.seed, 2])
        half = nq // 2
        derived = self._members(rng, rng.integers(0, self.families, size=half))
        fresh_base = self._dirichlet(rng, (nq - half, self.probes))
        saved = self.base
        try:
            self.base = fresh_base
            unrelated = self._members(rng, np.arange(nq - half))
        finally:
            self.base = saved
        kinds = np.concatenate([np.ones(half, bool), np.zeros(nq - half, bool)])
        return np.concatenate([derived, unrelated]), kinds
