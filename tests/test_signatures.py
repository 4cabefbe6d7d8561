import numpy as np

from lineage.signatures import centred_cosine, exact_distribution, histogram, to_vector
from lineage.suites import Suite


def _suite():
    return Suite.from_dict({"name": "t", "version": 1, "buckets": ["the", "a"],
                            "probes": [{"id": "p0", "prompt": "x"}, {"id": "p1", "prompt": "y"}]})


def test_histogram_counts_first_words_and_other():
    h = histogram(_suite(), [[" the cat", " a dog", " zebra", "the"], [" a"]])
    np.testing.assert_allclose(h, [[0.5, 0.25, 0.25], [0.0, 1.0, 0.0]])


def test_exact_distribution_appends_other_and_normalises():
    d = exact_distribution([[0.2, 0.3], [0.9, 0.4]])
    np.testing.assert_allclose(d[0], [0.2, 0.3, 0.5])
    np.testing.assert_allclose(d[1].sum(), 1.0)
    assert d[1, 2] == 0.0


def test_vector_inner_product_is_mean_bhattacharyya():
    rng = np.random.default_rng(0)
    a = rng.dirichlet(np.ones(5), size=7)
    b = rng.dirichlet(np.ones(5), size=7)
    bc = np.mean(np.sum(np.sqrt(a * b), axis=1))
    assert abs(float(to_vector(a) @ to_vector(b)) - bc) < 1e-6
    assert abs(float(to_vector(a) @ to_vector(a)) - 1.0) < 1e-6


def test_centred_cosine_removes_shared_component():
    rng = np.random.default_rng(1)
    base = rng.dirichlet(np.ones(6) * 5, size=20)
    mu = np.sqrt(base)
    a = base.copy()
    assert centred_cosine(a, base, mu) == 0.0  # identical to the population: no signal
    noise = rng.dirichlet(np.ones(6) * 50, size=20)
    x = 0.7 * base + 0.3 * noise
    assert centred_cosine(x, x, mu) > 0.999
