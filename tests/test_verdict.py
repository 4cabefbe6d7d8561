"""The per-teacher test on seeded synthetic populations: calibrated under the null, powerful
when the suspect copies the teacher."""

import numpy as np
import pytest

from lineage import verdict as V
from lineage.verdict import Observed, combine, decide, simes, teacher_test


def _population(rng, n_refs, P=40, n=2, B=6, copy=0.0):
    """Teacher id 0, references 1..n_refs, suspect id 99 (a copy of the teacher by `copy`)."""
    ids = list(range(n_refs + 1))
    base = rng.dirichlet(np.ones(B + 1) * 2, size=P)
    dists = {i: np.stack([rng.dirichlet(base[p] * 30) for p in range(P)]) for i in ids}
    dists[99] = (1 - copy) * np.stack([rng.dirichlet(base[p] * 30) for p in range(P)]) \
        + copy * dists[0]
    bias = {i: rng.normal(0, 2.0) for i in ids}  # per-scorer quality offset

    def observe(g):
        difficulty = rng.normal(-60, 10, size=(P, n))
        ll = {s: difficulty + bias[s] + rng.normal(0, 3, size=(P, n)) for s in ids if s != g}
        if g == 99:
            ll[0] = ll[0] + copy * 20.0
        return Observed(dists[g], np.full((P, n), 40.0), ll)

    refs = {i: observe(i) for i in ids[1:]}
    return dists[0], observe(99), refs, {i: dists[i] for i in ids[1:]}


def _assert_calibrated(draw, parts, trials=300, alpha=0.05):
    """`draw()` gives (t, suspect, refs, exact) under the null; the test's rejection rate at
    `alpha` stays within 3 binomial sd of alpha, and every test ran exactly `parts`."""
    hits = 0
    for _ in range(trials):
        t, s, refs, exact = draw()
        r = teacher_test(0, t, s, refs, exact)
        assert set(r.p_parts) == parts
        assert r.p_value == combine(r.p_parts)
        hits += r.p_value <= alpha
    assert hits / trials <= alpha + 3 * np.sqrt(alpha * (1 - alpha) / trials)


@pytest.mark.parametrize("n_refs", [3, 6])
def test_false_positive_rate_within_binomial_bound(n_refs):
    rng = np.random.default_rng(100 + n_refs)
    _assert_calibrated(lambda: _population(rng, n_refs), {"closeness", "similarity"})


def test_a_copy_is_detected_with_three_references():
    rng = np.random.default_rng(7)
    detected = 0
    for _ in range(20):
        t, s, refs, exact = _population(rng, 3, copy=1.0)
        detected += teacher_test(0, t, s, refs, exact).p_value <= 0.01
    assert detected >= 15


def test_decide_verdicts():
    adj, v = decide([0.001, 0.02, 0.5, 0.0], 0.01, [True, True, True, False])
    assert v == ["derived", "not_derived", "not_derived", "inconclusive"]
    adj, v = decide([0.004, 0.008], 0.01, [True, True])
    assert v == ["derived", "derived"]
    adj, v = decide([0.006, 0.3], 0.01, [True, True])
    assert v == ["inconclusive", "not_derived"]  # significant only before Holm
    assert adj == pytest.approx([0.012, 0.3])


def _logit_population(rng, n_refs, P=40, n=2, copy=0.0):
    """Like `_population`, with the generator's own log-likelihoods and sharpened scores, as
    full/logprobs access gives them. Each generator g has a per-model divergence scale to each
    scorer (log-normal: how far apart two independent models are); a copy (`copy` 1) of the
    teacher has a small divergence to it."""
    ids = list(range(n_refs + 1))
    t, indep, _, exact = _population(rng, n_refs, P=P, n=n)
    exact = {**exact, 99: indep.dist}  # the suspect's first words are an independent's
    scale = {}

    def observe(g):  # a copy is 20 times closer to T than independents are
        near = {0: copy * 3.0} if g == 99 else {}
        return _observe_logits(rng, g, ids, exact[g], scale, P, n, near)

    refs = {i: observe(i) for i in ids[1:]}
    return t, observe(99), refs, {i: exact[i] for i in ids[1:]}


def _observe_logits(rng, g, ids, dist, scale, P, n, near):
    """Generator g observed with its own log-likelihoods and its samples' scores (at
    temperature 1 and sharpened) under every other model in `ids`. `scale` holds each
    (generator, scorer) divergence, drawn log-normal on first use (how far apart two
    independent models are); `near` maps a scorer to how many e-folds closer g is to it."""
    chars = np.full((P, n), 40.0)
    own = rng.normal(-60, 10, size=(P, n))
    ll, sharp = {}, {}
    for s in ids:
        if s == g:
            continue
        kl = scale.setdefault((g, s), np.exp(rng.normal(np.log(0.3), 0.2)))
        kl *= np.exp(-near.get(s, 0.0))
        ll[s] = own - kl * chars + rng.normal(0, 2, size=(P, n))
        sharp[s] = own - 2 * kl * chars + rng.normal(0, 2, size=(P, n))
    return Observed(dist, chars, ll, own, sharp)


@pytest.mark.parametrize("n_refs", [3, 6])
def test_divergence_false_positive_rate_within_binomial_bound(n_refs):
    rng = np.random.default_rng(300 + n_refs)
    _assert_calibrated(lambda: _logit_population(rng, n_refs),
                       {"closeness", "similarity", "divergence"})


def test_divergence_detects_a_close_student_with_three_references():
    rng = np.random.default_rng(11)
    detected = 0
    for _ in range(20):
        t, s, refs, exact = _logit_population(rng, 3, copy=1.0)
        r = teacher_test(0, t, s, refs, exact)
        detected += r.p_parts["divergence"] <= 0.01 and r.p_value <= 0.01 / 0.8
    assert detected >= 15


def test_divergence_value_is_the_log_ratio_of_divergences():
    P, n = 3, 2
    chars = np.full((P, n), 10.0)
    own = np.full((P, n), -5.0)
    # per char: KL to T 0.1, to reference 1 0.2, to reference 2 0.8
    sharp = {0: own - 1.0, 1: own - 2.0, 2: own - 8.0}
    g = Observed(np.ones((P, 2)) / 2, chars, {}, own, sharp)
    v, se = V._divergence(g, 0, [1, 2])
    assert v == pytest.approx((np.log(0.2) + np.log(0.8)) / 2 - np.log(0.1))
    assert se == pytest.approx(0.0, abs=1e-12)  # every probe says the same
    sharp[0] = own + 1.0  # a negative estimate is floored, not a log of a negative
    assert np.isfinite(V._divergence(g, 0, [1, 2])[0])


def test_without_sharpened_scores_the_parts_have_equal_weights():
    rng = np.random.default_rng(5)
    t, s, refs, exact = _population(rng, 3)
    r = teacher_test(0, t, s, refs, exact)
    assert set(r.p_parts) == {"closeness", "similarity"}
    assert r.p_value == pytest.approx(simes(list(r.p_parts.values())))


def _text_only(o):
    return Observed(o.dist, o.chars, o.ll, None, o.ll_sharp)


@pytest.mark.parametrize("n_refs", [3, 6])
def test_cross_entropy_in_text_mode_is_calibrated(n_refs):
    """Text access: no own log-likelihoods, so the sharpened ratio uses cross-entropies."""
    rng = np.random.default_rng(500 + n_refs)

    def draw():
        t, s, refs, exact = _logit_population(rng, n_refs)
        return t, _text_only(s), {k: _text_only(v) for k, v in refs.items()}, exact

    _assert_calibrated(draw, {"closeness", "similarity", "cross_entropy"})


def test_cross_entropy_value_is_the_log_ratio_of_cross_entropies():
    P, n = 3, 2
    chars = np.full((P, n), 10.0)
    sharp = {0: np.full((P, n), -10.0), 1: np.full((P, n), -20.0), 2: np.full((P, n), -40.0)}
    g = Observed(np.ones((P, 2)) / 2, chars, {}, None, sharp)
    v, _ = V._cross_entropy(g, 0, [1, 2])
    assert v == pytest.approx((np.log(2.0) + np.log(4.0)) / 2 - np.log(1.0))


def test_weighted_simes():
    assert simes([0.01, 0.04]) == pytest.approx(0.02)  # Simes: min(2 * 0.01, 0.04)
    assert simes([0.01, 0.5, 0.9], [0.8, 0.1, 0.1]) == pytest.approx(0.0125)
    assert simes([0.5, 0.01, 0.9], [0.1, 0.8, 0.1]) == pytest.approx(0.0125)
    assert simes([0.3, 0.02, 0.02], [0.8, 0.1, 0.1]) == pytest.approx(0.1)  # 0.02 / 0.2
    assert simes([0.9, 0.95], [1, 1]) == pytest.approx(0.95)
    with pytest.raises(ValueError):
        simes([0.1, 0.2], [1.0])
    with pytest.raises(ValueError):
        simes([0.1], [0.0])


def test_combine_weights_the_sharpened_statistic_only_when_present():
    parts = {"closeness": 0.5, "similarity": 0.9, "divergence": 0.01}
    assert combine(parts) == pytest.approx(0.0125)  # 0.01 / 0.8
    assert combine({**parts, "divergence": 0.3}) == simes([0.5, 0.9, 0.3], [0.1, 0.1, 0.8])
    assert combine({"closeness": 0.01, "similarity": 0.9}) == pytest.approx(0.02)  # Simes
    with pytest.raises(ValueError):
        combine({})


def _text_population(rng, n_refs, P=40, n=2, U=3, copy=0.0):
    """_population plus teacher_text inputs: every generator's log-likelihood of U teachers'
    sharpened texts (teacher 0 is the one tested; 100..100+U-2 the other teachers). Each
    scorer has its own quality offset and each text its own difficulty, shared by every
    scorer; the suspect prefers teacher 0's text by `copy` nats per sample."""
    t, s, refs, exact = _population(rng, n_refs, P, n)
    teachers = [0] + [100 + k for k in range(U - 1)]
    diff = {u: rng.normal(-60, 10, size=(P, n)) for u in teachers}
    chars = {u: np.full((P, n), 40.0) for u in teachers}

    def add(o, g):
        q = rng.normal(0, 3.0)
        ll = {u: diff[u] + q + rng.normal(0, 4, size=(P, n)) for u in teachers}
        if g == 99:
            ll[0] = ll[0] + copy
        return Observed(o.dist, o.chars, o.ll, o.self_ll, o.ll_sharp, ll, chars)

    return t, add(s, 99), {i: add(o, i) for i, o in refs.items()}, exact


@pytest.mark.parametrize("n_refs", [3, 6])
def test_teacher_text_false_positive_rate_within_binomial_bound(n_refs):
    rng = np.random.default_rng(700 + n_refs)
    _assert_calibrated(lambda: _text_population(rng, n_refs),
                       {"closeness", "similarity", "teacher_text"})


def test_teacher_text_detects_a_student_that_prefers_the_teachers_text():
    rng = np.random.default_rng(13)
    detected = 0
    for _ in range(20):  # 8 nats per sample of 40 characters, 6 references
        t, s, refs, exact = _text_population(rng, 6, copy=8.0)
        r = teacher_test(0, t, s, refs, exact)
        detected += r.p_parts["teacher_text"] <= 0.01
    assert detected >= 15


def test_teacher_text_value_contrasts_the_other_teachers_text():
    P, n = 3, 2
    ll = {0: np.full((P, n), -20.0), 5: np.full((P, n), -40.0), 6: np.full((P, n), -60.0)}
    chars = {0: np.full((P, n), 10.0), 5: np.full((P, n), 20.0), 6: np.full((P, n), 20.0)}
    g = Observed(np.ones((P, 2)) / 2, np.ones((P, n)), {}, text_ll=ll, text_chars=chars)
    v, se = V._teacher_text(g, 0)
    assert v == pytest.approx(-2.0 - (-2.0 + -3.0) / 2)  # nats/char: own text minus controls
    assert se == pytest.approx(0.0, abs=1e-12)
    assert V._teacher_text(g, 5)[0] == pytest.approx(-2.0 - (-2.0 + -3.0) / 2)
    # one teacher alone has no controls: the statistic does not run
    assert not V._has_text(Observed(g.dist, g.chars, {}, text_ll={0: ll[0]},
                                    text_chars={0: chars[0]}), 0)


def _teachers_population(rng, n_refs, U=3, P=40, n=2, near=None):
    """Teachers 0..U-1, references U..U+n_refs-1 and a suspect (99), each observed like the
    suspect (own log-likelihoods and sharpened scores under every other model). `near` maps
    a teacher to how many e-folds closer (in divergence) the suspect is to it than an
    independent model would be. Returns (teacher dists, suspect, references, exact dists)."""
    teachers = list(range(U))
    ids = teachers + list(range(U, U + n_refs))
    near = near or {}
    exact = {i: rng.dirichlet(np.ones(7), size=P) for i in [*ids, 99]}
    scale: dict[tuple[int, int], float] = {}

    def observe(g):
        return _observe_logits(rng, g, ids, exact[g], scale, P, n, near if g == 99 else {})

    refs = {i: observe(i) for i in ids[U:]}
    return {t: exact[t] for t in teachers}, observe(99), refs, {i: exact[i] for i in refs}


def _contrasted(draw, min_teachers=V.CONTRAST_MIN_TEACHERS):
    t_dists, s, refs, exact = draw
    return V.contrast({t: teacher_test(t, d, s, refs, exact) for t, d in t_dists.items()},
                      min_teachers=min_teachers)


@pytest.mark.parametrize("n_refs", [3, 6])
def test_contrast_false_positive_rate_within_binomial_bound(n_refs):
    """An independent suspect: every teacher's contrast p is calibrated, and the contrast
    stands in for the divergence in the combination."""
    rng = np.random.default_rng(900 + n_refs)
    trials, alpha, hits = 200, 0.05, 0
    for _ in range(trials):
        tests = _contrasted(_teachers_population(rng, n_refs))
        for r in tests.values():
            assert set(r.p_parts) == {"closeness", "similarity", "divergence_contrast"}
            assert r.p_value == combine(r.p_parts)
        hits += tests[0].p_value <= alpha
    assert hits / trials <= alpha + 3 * np.sqrt(alpha * (1 - alpha) / trials)


def test_contrast_clears_a_student_of_another_teacher_that_the_divergence_flags():
    """Two teachers; a student of teacher 1 that is also closer than independents to teacher
    0, by half as much (they share something, as a tokenizer or family): the divergence
    alone flags teacher 0; the contrast does not, and mostly puts teacher 1 first (each z is
    in units of its own teacher's null spread, estimated from six references)."""
    rng = np.random.default_rng(17)
    plain = contrasted = ranked = 0
    for _ in range(20):
        draw = _teachers_population(rng, 6, U=2, near={1: 3.0, 0: 1.5})
        t_dists, s, refs, exact = draw
        plain += teacher_test(0, t_dists[0], s, refs, exact).p_parts["divergence"] <= 0.01
        tests = _contrasted(draw, min_teachers=2)  # the default asks for three teachers
        contrasted += tests[0].p_parts["divergence_contrast"] <= 0.01
        ranked += tests[1].p_parts["divergence_contrast"] \
            < tests[0].p_parts["divergence_contrast"]
    assert plain >= 15 and contrasted == 0 and ranked >= 15


def test_contrast_detects_a_student_close_to_its_teacher_only():
    rng = np.random.default_rng(23)
    detected = 0
    for _ in range(20):
        tests = _contrasted(_teachers_population(rng, 6, near={0: 3.0}))
        detected += tests[0].p_parts["divergence_contrast"] <= 0.01
    assert detected >= 15


def test_contrast_needs_three_teachers_and_three_references():
    rng = np.random.default_rng(19)
    t_dists, s, refs, exact = _teachers_population(rng, 6, U=1)
    alone = {0: teacher_test(0, t_dists[0], s, refs, exact)}
    assert V.contrast(alone, min_teachers=1) == alone  # nothing to contrast with, ever
    t_dists, s, refs, exact = _teachers_population(rng, 6, U=2)
    two = {t: teacher_test(t, d, s, refs, exact) for t, d in t_dists.items()}
    assert V.contrast(two) == two  # by default two teachers keep the plain statistic
    assert "divergence_contrast" in V.contrast(two, min_teachers=2)[0].p_parts
    t_dists, s, refs, exact = _teachers_population(rng, 2, U=3)
    three = {t: teacher_test(t, d, s, refs, exact) for t, d in t_dists.items()}
    assert V.contrast(three) == three  # two references: no leave-one-out spread
    with pytest.raises(ValueError, match="no teacher contrast"):
        V.contrast(three, ("closeness",))
