"""Statistics: the null test, multiple-testing correction and the benchmark's summaries.

The per-teacher test is a *prediction test* against the reference population. References are
independent models; the statistic computed for each of them (as if it were the suspect) is a
draw from the null. If the null draws are roughly normal, a new independent suspect's statistic
x satisfies

    (x - mean) / (sd * sqrt(1 + 1/n))  ~  Student t with n - 1 degrees of freedom,

which is exact for normal data and needs no large-sample approximation. It reaches small p-values
with few references when the suspect sits far outside the null (with n = 3 references, p = 0.01
needs about 8 null standard deviations). See README "Method" for the assumptions.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats as sps

__all__ = [
    "prediction_pvalue",
    "holm",
    "clopper_pearson",
    "auc",
    "auc_interval",
    "tpr_at_fpr",
    "tpr_at_fpr_count",
    "MIN_REFERENCES",
]

#: below this the null spread cannot be estimated at all
MIN_REFERENCES = 2


def prediction_pvalue(x: float, null: Sequence[float], *, floor_sd: float = 0.0) -> float:
    """One-sided p-value of `x` being above the null draws, by the t prediction interval.

    `floor_sd` bounds the null spread from below (e.g. by the suspect's own sampling error), so
    that references that happen to agree closely cannot make any difference look significant.
    """
    a = np.asarray(null, dtype=np.float64)
    n = a.size
    if n < MIN_REFERENCES:
        raise ValueError(f"need at least {MIN_REFERENCES} null draws, got {n}")
    sd = max(float(a.std(ddof=1)), float(floor_sd), 1e-12)
    t = (x - float(a.mean())) / (sd * math.sqrt(1.0 + 1.0 / n))
    return float(sps.t.sf(t, df=n - 1))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (monotone, capped at 1), in the input order."""
    p = np.asarray(pvalues, dtype=np.float64)
    m = p.size
    order = np.argsort(p, kind="stable")
    adj = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adj[i] = running
    return adj.tolist()


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact binomial confidence interval for k successes out of n."""
    if n == 0:
        return (0.0, 1.0)
    a = 1.0 - level
    lo = 0.0 if k == 0 else float(sps.beta.ppf(a / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(sps.beta.ppf(1 - a / 2, k + 1, n - k))
    return (lo, hi)


def auc(pos: Sequence[float], neg: Sequence[float]) -> float:
    """P(score of a positive > score of a negative), ties counted half (Mann-Whitney)."""
    p = np.asarray(pos, dtype=np.float64)
    q = np.asarray(neg, dtype=np.float64)
    if p.size == 0 or q.size == 0:
        return float("nan")
    gt = (p[:, None] > q[None, :]).sum()
    eq = (p[:, None] == q[None, :]).sum()
    return float((gt + 0.5 * eq) / (p.size * q.size))


def tpr_at_fpr(pos: Sequence[float], neg: Sequence[float], fpr: float) -> float:
    """Largest TPR with a threshold whose empirical FPR on `neg` is <= `fpr` (higher = positive)."""
    k, n = tpr_at_fpr_count(pos, neg, fpr)
    return k / n if n else float("nan")


def tpr_at_fpr_count(pos: Sequence[float], neg: Sequence[float], fpr: float
                     ) -> tuple[int, int]:
    """(positives above the threshold, positives) for tpr_at_fpr, so that a Clopper-Pearson
    interval can go beside the rate. (0, 0) when either side is empty."""
    p = np.asarray(pos, dtype=np.float64)
    q = np.sort(np.asarray(neg, dtype=np.float64))
    if p.size == 0 or q.size == 0:
        return (0, 0)
    allowed = math.floor(fpr * q.size)  # negatives allowed above the threshold
    thr = q[q.size - 1 - allowed] if allowed < q.size else -np.inf
    return int((p > thr).sum()), int(p.size)


def auc_interval(pos: Sequence[float], neg: Sequence[float], level: float = 0.95,
                 n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval for auc(pos, neg), resampling positives and negatives
    apart (fixed seed: the same scores give the same interval). (nan, nan) when a side is
    empty."""
    p = np.asarray(pos, dtype=np.float64)
    q = np.asarray(neg, dtype=np.float64)
    if p.size == 0 or q.size == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    # rank form of the Mann-Whitney statistic, one bootstrap draw per row
    ip = rng.integers(0, p.size, size=(n_boot, p.size))
    iq = rng.integers(0, q.size, size=(n_boot, q.size))
    gt = (p[:, None] > q[None, :]).astype(np.float64) + 0.5 * (p[:, None] == q[None, :])
    # mean over the drawn (positive, negative) pairs = mean_i mean_j gt[ip_i, iq_j]
    cp = np.stack([np.bincount(r, minlength=p.size) for r in ip]) / p.size  # [B, P]
    cq = np.stack([np.bincount(r, minlength=q.size) for r in iq]) / q.size  # [B, Q]
    vals = np.einsum("bp,pq,bq->b", cp, gt, cq)
    a = (1.0 - level) / 2
    return (float(np.quantile(vals, a)), float(np.quantile(vals, 1 - a)))