"""Signatures: a model's output distributions turned into vectors that work across tokenizers.

For each probe the signature holds a distribution over *string-level* buckets: the first word of
the continuation (see `suites.first_word`), over the suite's named buckets plus one "other"
bucket. No token ids appear anywhere, so models with different tokenizers and architectures
land in the same space.

- With full logits the distribution is computed exactly (`ModelView.word_distribution`).
- With samples (text or logprobs access) it is the histogram of the samples' first words.

The vector is the square root of the probabilities, so the inner product of two signatures is
the sum of per-probe Bhattacharyya coefficients. Lineage lives in the idiosyncrasies, not in
what every model knows, so comparisons are made after subtracting the reference population's
mean vector (`centred_cosine`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from lineage.suites import Suite, first_word

__all__ = [
    "histogram",
    "exact_distribution",
    "to_vector",
    "centred_cosine",
    "per_probe_centred",
]


def exact_distribution(word_probs: Sequence[Sequence[float]]) -> np.ndarray:
    """Full-access bucket probabilities -> [P, B+1] float64 with the "other" mass appended."""
    p = np.clip(np.asarray(word_probs, dtype=np.float64), 0.0, 1.0)
    other = np.clip(1.0 - p.sum(axis=1, keepdims=True), 0.0, 1.0)
    d = np.concatenate([p, other], axis=1)
    return d / d.sum(axis=1, keepdims=True)


def histogram(suite: Suite, samples: Sequence[Sequence[str]]) -> np.ndarray:
    """Sampled continuations -> [P, B+1] float64 empirical first-word distributions.

    `samples[i]` are the continuations for probe i (any count >= 1).
    """
    B = len(suite.buckets)
    h = np.zeros((len(samples), B + 1), dtype=np.float64)
    for i, row in enumerate(samples):
        if not row:
            raise ValueError(f"probe {i} has no samples")
        for text in row:
            h[i, suite.bucket_index(first_word(text))] += 1.0
        h[i] /= len(row)
    return h


def to_vector(dist: np.ndarray) -> np.ndarray:
    """[P, B+1] distributions -> flat float32 vector sqrt(p) / sqrt(P).

    The inner product of two such vectors is the mean Bhattacharyya coefficient over probes,
    in [0, 1].
    """
    P = dist.shape[0]
    return (np.sqrt(dist) / np.sqrt(P)).astype(np.float32).ravel()


def per_probe_centred(a: np.ndarray, b: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Per-probe contributions to the centred inner product: [P] float64.

    a, b, mu: [P, B+1] distributions (mu is the reference mean of sqrt-probabilities, already
    square-rooted).
    """
    return ((np.sqrt(a) - mu) * (np.sqrt(b) - mu)).sum(axis=1)


def centred_cosine(a: np.ndarray, b: np.ndarray, mu: np.ndarray) -> float:
    """Cosine between sqrt(a) - mu and sqrt(b) - mu, flattened; 0.0 if either is zero."""
    x = (np.sqrt(a) - mu).ravel()
    y = (np.sqrt(b) - mu).ravel()
    nx, ny = float(np.linalg.norm(x)), float(np.linalg.norm(y))
    if nx == 0.0 or ny == 0.0:
        return 0.0
    return float(x @ y / (nx * ny))
