import numpy as np
import pytest

from lineage import stats


def test_holm_matches_hand_computation():
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert stats.holm([0.5]) == [0.5]
    assert stats.holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])
    assert stats.holm([0.2, 0.3]) == pytest.approx([0.4, 0.4])


def test_clopper_pearson_known_values():
    lo, hi = stats.clopper_pearson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.3085, abs=1e-3)
    lo, hi = stats.clopper_pearson(5, 10)
    assert lo == pytest.approx(0.1871, abs=1e-3) and hi == pytest.approx(0.8129, abs=1e-3)


def test_auc_and_tpr():
    assert stats.auc([3, 4], [1, 2]) == 1.0
    assert stats.auc([1], [1]) == 0.5
    assert stats.tpr_at_fpr([99.5, 50, 200], list(range(100)), 0.01) == pytest.approx(2 / 3)
    # 1% of 100 negatives: one may sit above the threshold (99), so 99.5 and 200 count
    assert stats.tpr_at_fpr_count([99.5, 50, 200], list(range(100)), 0.01) == (2, 3)
    assert stats.tpr_at_fpr_count([], [1.0], 0.01) == (0, 0)


def test_auc_interval_brackets_the_auc_and_is_reproducible():
    rng = np.random.default_rng(3)
    pos, neg = rng.normal(1.0, 1.0, 21), rng.normal(0.0, 1.0, 102)
    lo, hi = stats.auc_interval(pos, neg)
    assert lo < stats.auc(pos, neg) < hi and 0.0 <= lo and hi <= 1.0
    assert stats.auc_interval(pos, neg) == (lo, hi)  # fixed seed
    # more data, narrower interval
    lo2, hi2 = stats.auc_interval(np.tile(pos, 10), np.tile(neg, 10))
    assert hi2 - lo2 < (hi - lo) / 2
    assert stats.auc_interval([3.0, 4.0], [1.0, 2.0]) == (1.0, 1.0)  # separated: every draw is 1
    assert all(np.isnan(stats.auc_interval([], [1.0])))


def test_prediction_pvalue_reaches_001_with_three_references():
    assert stats.prediction_pvalue(100.0, [0.0, 1.0, -1.0]) < 0.01
    with pytest.raises(ValueError):
        stats.prediction_pvalue(1.0, [0.0])


@pytest.mark.parametrize("n_refs", [3, 5, 10])
def test_prediction_pvalue_is_calibrated_under_seeded_null(n_refs):
    """Null: the suspect is one more independent draw. FPR at 0.05 within the binomial bound."""
    rng = np.random.default_rng(n_refs)
    trials = 4000
    hits = 0
    for _ in range(trials):
        x = rng.normal(size=n_refs + 1)
        hits += stats.prediction_pvalue(x[0], x[1:]) <= 0.05
    fpr = hits / trials
    bound = 0.05 + 3 * np.sqrt(0.05 * 0.95 / trials)
    assert fpr <= bound
    assert fpr >= 0.05 - 3 * np.sqrt(0.05 * 0.95 / trials)  # and not wastefully conservative
