"""The per-teacher test and the verdict.

Two statistics measure how close a generator G (the suspect, or a reference playing the suspect)
is to teacher T, both relative to a pool of references that excludes G:

1. *closeness*: how much more likely T finds G's own sampled text than the references do,
   in nats per character (characters, not tokens, so tokenizers do not matter):
       sum_x [log P_T(x) - mean_R log P_R(x)] / sum_x chars(x).
   A student that learned from T's text writes text that T finds unusually likely.
2. *similarity*: the centred cosine between G's and T's first-word signatures (`signatures`).

Each statistic is compared with its values over the references (each reference computed as a
suspect against the others) by the t prediction test (`stats.prediction_pvalue`), and the two
p-values are combined by Simes' rule (min(2 * smaller, larger)), valid under independence or
positive dependence. (Summing standardised statistics was tried first: with three references the sum's
spread is estimated from three points that can cancel, which gave false positives.) References are observed
exactly as the suspect is (same probes, same number of samples, same access mode), so the null
draws carry the same noise as the suspect's statistic. Holm's correction runs across teachers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lineage import stats
from lineage.signatures import centred_cosine, per_probe_centred

__all__ = ["Observed", "TeacherTest", "teacher_test", "decide"]


@dataclass(frozen=True)
class Observed:
    """What is known about one generator on the probes in use.

    dist:  [P, B+1] float64 first-word distribution (exact or histogram)
    chars: [P, n] float64 characters in each sample (at least 1)
    ll:    scorer model id -> [P, n] float64 log-likelihood (nats) of each sample
    """

    dist: np.ndarray
    chars: np.ndarray
    ll: dict[int, np.ndarray]


@dataclass(frozen=True)
class TeacherTest:
    statistic: float
    null: tuple[float, ...]
    p_value: float
    similarity: float
    closeness: float
    contributions: np.ndarray  # [P] per-probe share of the closeness, nats/char
    p_closeness: float = 1.0
    p_similarity: float = 1.0


def _closeness(g: Observed, t_id: int, pool: list[int]) -> tuple[float, np.ndarray, float]:
    """(closeness, per-probe contributions [P], standard error) of generator g to teacher t."""
    ref = np.mean([g.ll[r] for r in pool], axis=0)
    diff = g.ll[t_id] - ref  # [P, n]
    total_chars = float(g.chars.sum())
    c = float(diff.sum()) / total_chars
    resid = (diff - c * g.chars).ravel()
    se = float(np.sqrt((resid**2).sum())) / total_chars
    return c, diff.sum(axis=1) / total_chars, se


def _similarity(g: Observed, t_dist: np.ndarray, pool_dists: list[np.ndarray]
                ) -> tuple[float, float]:
    """(centred cosine, standard error) between g's and t's signatures."""
    mu = np.mean([np.sqrt(d) for d in pool_dists], axis=0)
    s = centred_cosine(g.dist, t_dist, mu)
    x = np.linalg.norm(np.sqrt(g.dist) - mu) * np.linalg.norm(np.sqrt(t_dist) - mu)
    if x == 0:
        return s, 0.0
    contrib = per_probe_centred(g.dist, t_dist, mu) / x
    return s, float(contrib.std(ddof=1) * np.sqrt(contrib.size))


def teacher_test(
    t_id: int, t_dist: np.ndarray, suspect: Observed, refs: dict[int, Observed],
    ref_exact: dict[int, np.ndarray],
) -> TeacherTest:
    """Test `suspect` against teacher `t_id`. Needs >= 2 references.

    `refs` are the references observed like the suspect; `ref_exact` their exact distributions
    (used only for centring).
    """
    ids = sorted(refs)
    if len(ids) < stats.MIN_REFERENCES:
        raise ValueError("too few references")
    null_c, null_s = [], []
    for j in ids:
        pool = [r for r in ids if r != j]
        null_c.append(_closeness(refs[j], t_id, pool)[0])
        null_s.append(_similarity(refs[j], t_dist, [ref_exact[r] for r in pool])[0])
    c, contrib, se_c = _closeness(suspect, t_id, ids)
    s, se_s = _similarity(suspect, t_dist, [ref_exact[r] for r in ids])
    p_c = stats.prediction_pvalue(c, null_c, floor_sd=se_c)
    p_s = stats.prediction_pvalue(s, null_s, floor_sd=se_s)
    # Simes over the two statistics: valid when they are independent or positively dependent
    # (both measure closeness to T), and never worse than Bonferroni's 2 * min.
    p = min(1.0, 2.0 * min(p_c, p_s), max(p_c, p_s))
    zc = (c - float(np.mean(null_c))) / max(float(np.std(null_c, ddof=1)), se_c, 1e-12)
    zs = (s - float(np.mean(null_s))) / max(float(np.std(null_s, ddof=1)), se_s, 1e-12)
    x = max(zc, zs)
    null = [max(a, b) for a, b in zip(_z(null_c), _z(null_s))]
    return TeacherTest(float(x), tuple(float(v) for v in null), p, s, c, contrib, p_c, p_s)


def _z(a: list[float]) -> list[float]:
    v = np.asarray(a, dtype=np.float64)
    return ((v - v.mean()) / max(float(v.std(ddof=1)), 1e-12)).tolist()


def decide(raw: list[float], alpha: float, usable: list[bool]) -> tuple[list[float], list[str]]:
    """Holm-adjust `raw` p-values and turn them into verdicts at `alpha`.

    - derived: Holm-adjusted p <= alpha;
    - inconclusive: the test could not be run (`usable` False), or the raw p-value is below
      alpha but the correction across teachers lifts it above: evidence, not enough of it;
    - not_derived: otherwise.
    """
    adj = stats.holm(raw)
    out = []
    for p, q, ok in zip(raw, adj, usable):
        if not ok:
            out.append("inconclusive")
        elif q <= alpha:
            out.append("derived")
        elif p <= alpha:
            out.append("inconclusive")
        else:
            out.append("not_derived")
    return adj, out
