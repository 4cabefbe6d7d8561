import numpy as np
import pytest

from lineage.errors import InvalidArgumentError
from lineage.index import SignatureIndex


def test_search_matches_numpy_brute_force(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 32)).astype(np.float32)
    ids = rng.choice(10_000, size=500, replace=False)
    idx = SignatureIndex(32, tmp_path / "i.faiss")
    idx.upsert(ids, X)
    Q = rng.normal(size=(20, 32)).astype(np.float32)
    D, I = idx.search(Q, 10)
    S = Q @ X.T
    order = np.argsort(-S, axis=1)[:, :10]
    np.testing.assert_array_equal(I, ids[order])
    np.testing.assert_allclose(D, np.take_along_axis(S, order, 1), rtol=1e-5, atol=1e-5)


def test_persist_upsert_remove(tmp_path):
    p = tmp_path / "i.faiss"
    idx = SignatureIndex(4, p)
    idx.upsert(np.array([7, 9]), np.eye(4, dtype=np.float32)[:2])
    idx.upsert(np.array([7]), np.eye(4, dtype=np.float32)[3:4])  # replace
    idx.save()
    again = SignatureIndex(4, p)
    assert sorted(again.ids().tolist()) == [7, 9]
    np.testing.assert_array_equal(again.reconstruct(7), [0, 0, 0, 1])
    assert again.remove(np.array([9])) == 1
    assert again.ids().tolist() == [7]
    assert not list(tmp_path.glob(".index.*"))  # no temp files left behind


def test_bad_vectors_refused(tmp_path):
    idx = SignatureIndex(4)
    with pytest.raises(InvalidArgumentError):
        idx.upsert(np.array([1]), np.ones((1, 5), dtype=np.float32))
    with pytest.raises(InvalidArgumentError):
        idx.search(np.array([np.nan, 0, 0, 0], dtype=np.float32), 1)
