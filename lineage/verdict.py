"""The per-teacher test and the verdict.

Up to three statistics measure how close a generator G (the suspect, or a reference playing
the suspect) is to teacher T, each relative to a pool of references that excludes G:

1. *closeness*: how much more likely T finds G's own sampled text than the references do,
   in nats per character (characters, not tokens, so tokenizers do not matter):
       sum_x [log P_T(x) - mean_R log P_R(x)] / sum_x chars(x).
   A student that learned from T's text writes text that T finds unusually likely.
2. *similarity*: the cosine between G's and T's first-word signatures (`signatures`) after
   centring on the pool and projecting out the directions in which the pool's models differ.
3. *divergence* (full and logprobs access only, where G's own log-likelihood of its samples
   is visible): how many times smaller G's divergence to a sharpened T is than its divergence
   to the sharpened references, on a log scale:
       mean_R log KL(G || R_tau) - log KL(G || T_tau),   tau = SHARP_TEMPERATURE,
   with KL(G || M_tau) = sum_x [log P_G(x) - log P_M,tau(x)] / sum_x chars(x) estimated on
   G's samples, and M_tau the model M with its logits divided by tau. The sharpened scorer
   puts its mass on its modes, which a distilled student copies first (sequence-level KD
   data are usually sampled below temperature 1); the ratio, unlike a difference, does not
   grow with how far G is from every model.
4. *cross_entropy* (text access, where G's own log-likelihoods are not visible): the same
   ratio with cross-entropies in place of divergences,
       mean_R log CE(G, R_tau) - log CE(G, T_tau),   CE(G, M_tau) = -sum_x log P_M,tau(x).
   Both were measured against the difference forms and other temperatures in
   `benchmarks/research/` (kl_temperature, divergence_forms, divergence_zoo,
   cross_entropy_forms; README Results).
5. *teacher_text* (full access, or logprobs access through an endpoint that echoes prompt
   logprobs: where G can score text it did not write; and at least
   two teachers registered): how much more likely G finds T's own sharpened text (samples at
   SHARP_TEMPERATURE, stored with T) than the other registered teachers' sharpened text, in
   nats per character:
       LL_G(T text) / chars(T text) - mean_U [LL_G(U text) / chars(U text)],  U != T.
   A student trained on T's text prefers it; a student trained on any language model's text
   prefers all of it, which the other teachers' text cancels, and so does G's own capability.
   The references are the null (scoring the same texts), as for the others
   (`benchmarks/research/own_text.py`).

Each statistic is compared with its values over the references (each reference computed as a
suspect against the others) by the t prediction test (`stats.prediction_pvalue`), and the
p-values are combined by the weighted Simes rule (min over k of p_(k) / W_k, W_k the summed
weight of the k smallest; valid under independence or positive dependence, and all of them
measure closeness to T). Each access mode runs one sharpened ratio (divergence where G's
log-likelihoods are visible, else cross_entropy) with weight 0.8, and closeness and similarity
with 0.1 each: the ratio was the most powerful part on both zoos, and the other two still
catch what it misses at extremes (an exact copy's first words). Full access (or logprobs with
echo) with two or more teachers adds teacher_text with the same prior weight as the sharpened
ratio (0.8, so the two share most of the weight; chosen before measuring the combination).
Summing standardised statistics was tried first: with three references the sum's spread is
estimated from three points that can cancel, which gave false positives. References are
observed exactly as the suspect is (same probes, same number of samples, same access mode), so
the null draws carry the same noise as the suspect's statistic. Holm's correction runs across
teachers.

By default (`engine.Settings.contrast`) the divergence is tested as a *teacher contrast*
(`contrast`): its standard score against T minus its mean standard score against the other
registered teachers, with the references' contrasts as the null. It takes the divergence's
place and weight in the combination ("divergence_contrast"). The same form of cross_entropy
("cross_entropy_contrast") is available but not the default: on the held-out zoos it raised
text access's TPR but lost a cross-tokenizer student (README Results, session 14).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from lineage import stats

__all__ = ["CONTRAST_OF", "SHARP_STATS", "SHARP_TEMPERATURE", "WEIGHTS", "Observed",
           "TeacherTest", "combine", "contrast", "decide", "teacher_test"]

#: the temperature of the sharpened scorers in the divergence and cross_entropy statistics
SHARP_TEMPERATURE = 0.5
#: prior weights of the statistics in the weighted Simes combination (one of the first two
#: runs, by access mode)
WEIGHTS = {"divergence": 0.8, "cross_entropy": 0.8, "closeness": 0.1, "similarity": 0.1,
           "teacher_text": 0.8, "divergence_contrast": 0.8, "cross_entropy_contrast": 0.8}
#: the statistics whose teacher contrast (`contrast`) can stand in for them, and its name
CONTRAST_OF = {"divergence": "divergence_contrast", "cross_entropy": "cross_entropy_contrast"}
#: the statistics whose presence switches `combine` from equal weights to WEIGHTS
SHARP_STATS = ("divergence", "cross_entropy", "teacher_text", *CONTRAST_OF.values())
#: the contrast standardises each reference against the others: it needs this many
CONTRAST_MIN_REFERENCES = 3
#: ... and this many teachers. With one control teacher the contrast carries that teacher's
#: noise whole. It was judged on zoos with three teachers (README Results, session 14); on
#: the small zoo's two it weakened both students (divergence p 0.0006 -> 0.0051 and
#: 0.0007 -> 0.0035), so two teachers keep the plain statistic. (Chosen after that
#: measurement, and said so.)
CONTRAST_MIN_TEACHERS = 3
#: divergences are floored here (nats/char) before the log: an estimate can be <= 0
KL_FLOOR = 1e-4


@dataclass(frozen=True)
class Observed:
    """What is known about one generator on the probes in use.

    dist:    [P, B+1] float64 first-word distribution (exact or histogram)
    chars:   [P, n] float64 characters in each sample (at least 1)
    ll:      scorer model id -> [P, n] float64 log-likelihood (nats) of each sample
    self_ll: [P, n] float64 the generator's own log-likelihood of its samples, when the access
             mode reveals it (full, logprobs); None in text mode
    ll_sharp: scorer model id -> [P, n] float64 log-likelihood of each sample under the scorer
             at SHARP_TEMPERATURE; None when not available
    text_ll: teacher model id -> [P, n] float64 the generator's log-likelihood of that
             teacher's samples at SHARP_TEMPERATURE (full access, or logprobs with echo);
             None otherwise
    text_chars: teacher model id -> [P, n] float64 characters in those samples
    """

    dist: np.ndarray
    chars: np.ndarray
    ll: dict[int, np.ndarray]
    self_ll: np.ndarray | None = None
    ll_sharp: dict[int, np.ndarray] | None = None
    text_ll: dict[int, np.ndarray] | None = None
    text_chars: dict[int, np.ndarray] | None = None


@dataclass(frozen=True)
class TeacherTest:
    statistic: float  # the largest standardised statistic
    null: tuple[float, ...]  # the references' largest standardised statistics
    p_value: float  # Simes-combined
    similarity: float
    closeness: float
    contributions: np.ndarray  # [P] per-probe share of the closeness, nats/char
    p_parts: dict[str, float]  # each statistic's own p-value
    #: each statistic's (value, sampling standard error, the references' values)
    parts: dict[str, tuple[float, float, tuple[float, ...]]] = field(default_factory=dict)


def _closeness(g: Observed, t_id: int, pool: list[int]) -> tuple[float, float, np.ndarray]:
    """Teacher likelihood advantage on g's text: (value, standard error, per-probe [P])."""
    ref = np.mean([g.ll[r] for r in pool], axis=0)
    return _ratio(g.ll[t_id] - ref, g.chars)


def _log_ratio(g: Observed, t_id: int, pool: list[int], own: bool) -> tuple[float, float]:
    """mean_R log D(G, R_tau) - log D(G, T_tau), D the divergence per char (`own`: G's own
    log-likelihoods are subtracted) or the cross-entropy per char; (value, jackknife standard
    error over probes)."""
    assert g.ll_sharp is not None and (g.self_ll is not None or not own)
    base = g.self_ll if own else 0.0
    d = {m: (base - g.ll_sharp[m]).sum(axis=1) for m in [t_id, *pool]}  # [P] nats
    c = g.chars.sum(axis=1)

    def stat(dsum: dict[int, np.ndarray], csum: np.ndarray) -> np.ndarray:
        def log_d(m: int) -> np.ndarray:
            return np.log(np.maximum(dsum[m] / csum, KL_FLOOR))
        return np.mean([log_d(r) for r in pool], axis=0) - log_d(t_id)

    full = float(stat({m: np.array([v.sum()]) for m, v in d.items()}, np.array([c.sum()]))[0])
    P = c.size
    if P < 2:
        return full, 0.0
    loo = stat({m: v.sum() - v for m, v in d.items()}, c.sum() - c)  # leave one probe out
    return full, _jackknife_se(loo)


def _jackknife_se(loo: np.ndarray) -> float:
    """Standard error from the P leave-one-probe-out values of a statistic."""
    P = loo.size
    return float(np.sqrt((P - 1) / P * ((loo - loo.mean()) ** 2).sum()))


def _divergence(g: Observed, t_id: int, pool: list[int]) -> tuple[float, float]:
    """mean_R log KL(G || R_tau) - log KL(G || T_tau), with its standard error."""
    return _log_ratio(g, t_id, pool, own=True)


def _cross_entropy(g: Observed, t_id: int, pool: list[int]) -> tuple[float, float]:
    """mean_R log CE(G, R_tau) - log CE(G, T_tau), with its standard error."""
    return _log_ratio(g, t_id, pool, own=False)


def _teacher_text(g: Observed, t_id: int) -> tuple[float, float]:
    """G's preference for T's sharpened text over the other teachers' (nats per character),
    with its jackknife standard error over probes."""
    assert g.text_ll is not None and g.text_chars is not None
    ids = [t_id] + [u for u in sorted(g.text_ll) if u != t_id]
    ll = np.stack([g.text_ll[u].sum(axis=1) for u in ids])  # [U, P]
    ch = np.stack([g.text_chars[u].sum(axis=1) for u in ids])

    def stat(a: np.ndarray, c: np.ndarray) -> np.ndarray:  # a, c: [U, k] -> [k]
        r = a / c
        return r[0] - r[1:].mean(axis=0)

    full = float(stat(ll.sum(axis=1, keepdims=True), ch.sum(axis=1, keepdims=True))[0])
    P = ll.shape[1]
    if P < 2:
        return full, 0.0
    loo = stat(ll.sum(axis=1, keepdims=True) - ll, ch.sum(axis=1, keepdims=True) - ch)
    return full, _jackknife_se(loo)


def _has_text(g: Observed, t_id: int) -> bool:
    return g.text_ll is not None and g.text_chars is not None and t_id in g.text_ll \
        and len(g.text_ll) >= 2


def _ratio(diff: np.ndarray, chars: np.ndarray) -> tuple[float, float, np.ndarray]:
    total = float(chars.sum())
    c = float(diff.sum()) / total
    resid = (diff - c * chars).ravel()
    se = float(np.sqrt((resid**2).sum())) / total
    return c, se, diff.sum(axis=1) / total


def _similarity(g: Observed, t_dist: np.ndarray, pool_dists: list[np.ndarray]
                ) -> tuple[float, float]:
    """(residual cosine, standard error) between g's and t's signatures.

    Both signatures are centred on the pool's mean and then stripped of every direction in
    which the pool's models differ among themselves (model quality, tokenizer, architecture:
    what independent models vary in). What is left is idiosyncratic, and lineage shows up as
    shared idiosyncrasy.
    """
    U = np.stack([np.sqrt(d).ravel() for d in pool_dists])
    mu = U.mean(axis=0)
    basis = _span(U - mu)
    x = _residual(np.sqrt(g.dist).ravel() - mu, basis)
    y = _residual(np.sqrt(t_dist).ravel() - mu, basis)
    nx, ny = float(np.linalg.norm(x)), float(np.linalg.norm(y))
    if nx == 0.0 or ny == 0.0:
        return 0.0, 0.0
    per_probe = (x * y).reshape(g.dist.shape).sum(axis=1) / (nx * ny)
    return float(per_probe.sum()), float(per_probe.std(ddof=1) * np.sqrt(per_probe.size))


def _span(D: np.ndarray) -> np.ndarray:
    """Orthonormal basis [k, dim] of the rows of D (numerical rank k)."""
    if D.shape[0] == 0:
        return np.zeros((0, D.shape[1]))
    _, sv, vt = np.linalg.svd(D, full_matrices=False)
    keep = sv > 1e-8 * max(1.0, float(sv.max(initial=0.0)))
    return vt[keep]


def _residual(v: np.ndarray, basis: np.ndarray) -> np.ndarray:
    return v - basis.T @ (basis @ v) if basis.size else v


def simes(pvalues: list[float], weights: list[float] | None = None) -> float:
    """Weighted Simes' combination: min_k p_(k) / W_k, W_k the summed (normalised) weight of
    the k smallest p-values; equal weights give Simes' min_k m * p_(k) / k. Valid under
    independence or PRDS (the weighted linear step-up, Blanchard & Roquain 2008)."""
    m = len(pvalues)
    w = np.ones(m) if weights is None else np.asarray(weights, dtype=np.float64)
    if m == 0 or w.size != m or (w <= 0).any():
        raise ValueError("one positive weight per p-value")
    order = np.argsort(np.asarray(pvalues, dtype=np.float64), kind="stable")
    cum = np.cumsum(w[order]) / w.sum()
    return float(min(1.0, min(pvalues[i] / cum[k] for k, i in enumerate(order))))


def combine(p_parts: dict[str, float]) -> float:
    """One teacher's p-value from its statistics' p-values: weighted Simes with WEIGHTS when
    a sharpened statistic (divergence or cross_entropy) is among them, equal weights if not."""
    if not p_parts:
        raise ValueError("no p-values to combine")
    sharp = any(k in p_parts for k in SHARP_STATS)
    weights = [WEIGHTS[k] for k in p_parts] if sharp else None
    return simes(list(p_parts.values()), weights)


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
    parts: dict[str, tuple[float, float, list[float]]] = {}
    c, se_c, contrib = _closeness(suspect, t_id, ids)
    parts["closeness"] = (c, se_c, [
        _closeness(refs[j], t_id, [r for r in ids if r != j])[0] for j in ids])
    # the suspect is scored against the same leave-one-out pools as the references, so that
    # both see pools of n - 1 models (the residual projection depends on the pool's size)
    loo = [_similarity(suspect, t_dist, [ref_exact[r] for r in ids if r != j]) for j in ids]
    s, se_s = float(np.mean([a for a, _ in loo])), float(np.mean([b for _, b in loo]))
    parts["similarity"] = (s, se_s, [
        _similarity(refs[j], t_dist, [ref_exact[r] for r in ids if r != j])[0] for j in ids])
    sharp = _has_sharp(suspect, t_id, ids) \
        and all(_has_sharp(refs[j], t_id, [r for r in ids if r != j]) for j in ids)
    if sharp:
        own = suspect.self_ll is not None and all(refs[j].self_ll is not None for j in ids)
        name, fn = ("divergence", _divergence) if own else ("cross_entropy", _cross_entropy)
        v, se_v = fn(suspect, t_id, ids)
        parts[name] = (v, se_v, [fn(refs[j], t_id, [r for r in ids if r != j])[0]
                                 for j in ids])
    if _has_text(suspect, t_id) and all(_has_text(refs[j], t_id) for j in ids):
        v, se_v = _teacher_text(suspect, t_id)
        parts["teacher_text"] = (v, se_v, [_teacher_text(refs[j], t_id)[0] for j in ids])
    p_parts = {k: stats.prediction_pvalue(x, null, floor_sd=se)
               for k, (x, se, null) in parts.items()}
    z = {k: _standardise(x, se, null) for k, (x, se, null) in parts.items()}
    nulls = [max(_z_of(null)[j] for (_, _, null) in parts.values()) for j in range(len(ids))]
    return TeacherTest(
        statistic=max(z.values()), null=tuple(nulls), p_value=combine(p_parts),
        similarity=s, closeness=c, contributions=contrib, p_parts=p_parts,
        parts={k: (x, se, tuple(null)) for k, (x, se, null) in parts.items()})


def contrast(tests: dict[int, TeacherTest], names: tuple[str, ...] = tuple(CONTRAST_OF),
             min_teachers: int = CONTRAST_MIN_TEACHERS) -> dict[int, TeacherTest]:
    """The tests with each statistic in `names` (keys of CONTRAST_OF) replaced by its teacher
    contrast, where at least `min_teachers` (>= 2) teachers ran it on at least
    CONTRAST_MIN_REFERENCES references.

    `tests` holds one suspect's test against every registered teacher whose statistics could
    be computed (the controls too, not only the teachers being tested). For teacher T:

        c_T = z_T - mean_{U != T} z_U,   z_U = (x_U - mean(null_U)) / sd(null_U),

    x_U the suspect's statistic against U and null_U the references' values. A suspect that
    is merely close to every language model's text (or more capable than the references) is
    close to every teacher and cancels; a student of another teacher U has a large z_U and so
    a negative c_T. Each reference's contrast is formed the same way, its z standardised
    against the *other* references (leave one out, as the suspect is not among them), and
    c_T is compared with those by the t prediction test, its sampling error (the parts'
    errors in units of their null spreads, assumed independent) bounding the spread.
    """
    unknown = [n for n in names if n not in CONTRAST_OF]
    if unknown:
        raise ValueError(f"no teacher contrast of {unknown[0]!r}; one of {list(CONTRAST_OF)}")
    out = dict(tests)
    for name in names:
        cname = CONTRAST_OF[name]
        have = {t: x.parts[name] for t, x in tests.items() if name in x.parts}
        sizes = {len(null) for _, _, null in have.values()}
        if len(have) < max(2, min_teachers) or len(sizes) != 1 \
                or min(sizes) < CONTRAST_MIN_REFERENCES:
            continue
        z: dict[int, float] = {}
        z_refs: dict[int, np.ndarray] = {}
        rel_se: dict[int, float] = {}
        for t, (x, se, null) in have.items():
            a = np.asarray(null, dtype=np.float64)
            sd = max(float(a.std(ddof=1)), 1e-12)
            z[t], rel_se[t] = (x - float(a.mean())) / sd, se / sd
            z_refs[t] = np.asarray([_standardise(float(a[j]), 0.0, np.delete(a, j).tolist())
                                    for j in range(a.size)])
        for t in have:
            others = [u for u in have if u != t]
            c = z[t] - float(np.mean([z[u] for u in others]))
            c_refs = z_refs[t] - np.mean([z_refs[u] for u in others], axis=0)
            se_c = float(np.sqrt(rel_se[t] ** 2
                                 + sum(rel_se[u] ** 2 for u in others) / len(others) ** 2))
            p = stats.prediction_pvalue(c, c_refs.tolist(), floor_sd=se_c)
            p_parts = {(cname if k == name else k): (p if k == name else v)
                       for k, v in out[t].p_parts.items()}
            parts = {**out[t].parts, cname: (c, se_c, tuple(c_refs.tolist()))}
            out[t] = replace(out[t], p_parts=p_parts, p_value=combine(p_parts), parts=parts)
    return out


def _has_sharp(g: Observed, t_id: int, pool: list[int]) -> bool:
    return g.ll_sharp is not None and all(m in g.ll_sharp for m in [t_id, *pool])


def _standardise(x: float, se: float, null: list[float]) -> float:
    a = np.asarray(null, dtype=np.float64)
    return float((x - a.mean()) / max(float(a.std(ddof=1)), se, 1e-12))


def _z_of(null: list[float]) -> list[float]:
    a = np.asarray(null, dtype=np.float64)
    return ((a - a.mean()) / max(float(a.std(ddof=1)), 1e-12)).tolist()


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
