import numpy as np
import pytest

from lineage.errors import InvalidArgumentError, StoreError
from lineage.index import IndexConfig, SignatureIndex, nlist_for


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


# -- compact mode (projection + inverted file) -------------------------------------------------

def _unit(rng, n, d):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _clustered(rng, n, d, centres=40, spread=0.5):
    """Unit vectors around `centres` random centres (signatures come in model families)."""
    c = _unit(rng, centres, d)
    x = c[rng.integers(0, centres, n)] + spread * _unit(rng, n, d) / np.sqrt(2)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_nlist_for_is_a_power_of_two_with_enough_points():
    for n in (1, 39, 100, 4097, 10_000, 1_000_000):
        nl = nlist_for(n)
        assert nl & (nl - 1) == 0 and (nl == 1 or n // nl >= 39)
    assert nlist_for(1_000_000) == 4096


def test_switches_to_compact_above_threshold_and_back_when_emptied(tmp_path):
    rng = np.random.default_rng(1)
    X = _clustered(rng, 700, 64)
    idx = SignatureIndex(64, tmp_path / "i.faiss", config=IndexConfig(exact_max=300,
                                                                       proj_dim=16))
    idx.upsert(np.arange(300), X[:300])
    assert idx.mode == "exact"
    idx.upsert(np.arange(300, 301), X[300:301])
    assert idx.mode == "compact" and len(idx) == 301
    idx.upsert(np.arange(301, 700), X[301:])
    assert sorted(idx.ids().tolist()) == list(range(700))
    assert idx.remove(np.arange(700)) == 700
    assert idx.mode == "exact" and len(idx) == 0


def test_compact_recall_vs_brute_force_in_projected_space(tmp_path):
    rng = np.random.default_rng(2)
    dim, d, n = 512, 64, 5000
    X = _clustered(rng, n, dim)
    ids = rng.choice(1_000_000, size=n, replace=False)
    cfg = IndexConfig(exact_max=1000, proj_dim=d, nprobe=16)
    idx = SignatureIndex(dim, tmp_path / "i.faiss", config=cfg)
    for lo in range(0, n, 1000):  # grows through two re-clusterings
        idx.upsert(ids[lo:lo + 1000], X[lo:lo + 1000])
    assert idx.mode == "compact" and idx._ivf().nlist == nlist_for(n)
    # the projection: seeded, scaled so projected inner products estimate raw ones
    import faiss

    lt = faiss.downcast_VectorTransform(idx._index.chain.at(0))
    A = faiss.vector_to_array(lt.A).reshape(d, dim)
    np.testing.assert_allclose(A @ A.T, np.eye(d) * dim / d, atol=1e-3)
    Y = X @ A.T
    Q = _clustered(np.random.default_rng(3), 50, dim)
    D, I = idx.search(Q, 10)
    S = (Q @ A.T) @ Y.T
    truth = ids[np.argsort(-S, axis=1)[:, :10]]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(I, truth)])
    assert recall >= 0.9
    found = I[:, 0] >= 0
    top = S[np.arange(len(Q)), np.argsort(-S, axis=1)[:, 0]]
    np.testing.assert_allclose(D[found, 0], top[found], atol=0.02)  # 8-bit codes
    # a stored vector finds itself, with a score that estimates its raw norm (1)
    D2, I2 = idx.search(X[:20], 10)
    own = I2 == ids[:20, None]
    assert own.sum() >= 19
    assert np.all(np.abs(D2[own] - 1.0) < 0.5)


def test_compact_persistence_round_trip_and_upsert(tmp_path):
    rng = np.random.default_rng(4)
    X = _clustered(rng, 800, 128)
    p = tmp_path / "i.faiss"
    cfg = IndexConfig(exact_max=200, proj_dim=32, nprobe=8)
    idx = SignatureIndex(128, p, config=cfg)
    idx.upsert(np.arange(800) + 5, X)
    idx.upsert(np.array([5]), X[799:800])  # replace in place
    idx.save()
    again = SignatureIndex(128, p, config=cfg)
    assert again.mode == "compact" and len(again) == 800
    assert sorted(again.ids().tolist()) == list(range(5, 805))
    Q = X[:30]
    np.testing.assert_array_equal(again.search(Q, 5)[1], idx.search(Q, 5)[1])
    np.testing.assert_allclose(again.reconstruct(5), idx.reconstruct(804), atol=1e-6)
    assert again.remove(np.array([6, 7, 10_000])) == 2 and len(again) == 798
    assert not list(tmp_path.glob(".index.*"))


def test_compact_refuses_duplicate_ids():
    idx = SignatureIndex(8)
    with pytest.raises(InvalidArgumentError):
        idx.upsert(np.array([1, 1]), np.ones((2, 8), dtype=np.float32))


def test_compact_search_is_exact_over_the_store_when_every_list_is_scanned(tmp_path):
    """Oracle: with every list scanned and every vector re-ranked, the compact search returns
    numpy's brute-force top-k over the stored (decoded) vectors, scores included."""
    rng = np.random.default_rng(5)
    X = _clustered(rng, 1500, 96)
    cfg = IndexConfig(exact_max=200, proj_dim=32, nprobe=1 << 16, rerank=10_000)
    idx = SignatureIndex(96, tmp_path / "i.faiss", config=cfg)
    ids = rng.choice(10**9, size=1500, replace=False)
    idx.upsert(ids, X)
    sid, Y = idx.stored()
    Q = _clustered(np.random.default_rng(6), 40, 96)
    D, I = idx.search(Q, 7)
    S = idx.project(Q) @ Y.T
    order = np.argsort(-S, axis=1, kind="stable")[:, :7]
    np.testing.assert_array_equal(I, sid[order])
    np.testing.assert_allclose(D, np.take_along_axis(S, order, 1), rtol=1e-5, atol=1e-5)


def test_compact_scanner_follows_removals_and_default_scans_a_quarter(tmp_path):
    rng = np.random.default_rng(7)
    X = _clustered(rng, 3000, 64)
    idx = SignatureIndex(64, config=IndexConfig(exact_max=100, proj_dim=32))
    idx.upsert(np.arange(3000), X)
    assert idx._nprobe() == idx._ivf().nlist // 4
    assert idx._fast.ntotal == 3000
    gone = np.arange(0, 3000, 3)
    assert idx.remove(gone) == 1000 and idx._fast.ntotal == 2000
    _, I = idx.search(X[:300], 10)
    assert not np.isin(I, gone).any()  # a removed vector is never a candidate again
    sid, Y = idx.stored()
    assert not np.isin(sid, gone).any()
    truth = sid[np.argsort(-(idx.project(X[:300]) @ Y.T), axis=1)[:, :10]]
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(I, truth)]) >= 0.95


def test_compact_index_saved_by_faiss_alone_gets_its_scanner_rebuilt(tmp_path):
    """Files written before the scanner existed hold the store alone: they still load."""
    import faiss

    rng = np.random.default_rng(8)
    X = _clustered(rng, 900, 64)
    cfg = IndexConfig(exact_max=100, proj_dim=32)
    idx = SignatureIndex(64, config=cfg)
    idx.upsert(np.arange(900), X)
    p = tmp_path / "old.faiss"
    faiss.write_index(idx._index, str(p))
    again = SignatureIndex(64, p, config=cfg)
    assert again.mode == "compact" and again._fast.ntotal == 900
    np.testing.assert_array_equal(again.search(X[:50], 5)[1], idx.search(X[:50], 5)[1])


def test_truncated_compact_file_is_a_store_error(tmp_path):
    rng = np.random.default_rng(9)
    p = tmp_path / "i.faiss"
    idx = SignatureIndex(64, p, config=IndexConfig(exact_max=100, proj_dim=32))
    idx.upsert(np.arange(500), _clustered(rng, 500, 64))
    idx.save()
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(StoreError):
        SignatureIndex(64, p)
    from lineage.index import _MAGIC

    p.write_bytes(_MAGIC + (2**62).to_bytes(8, "little") + b"x" * 64)  # a forged length
    with pytest.raises(StoreError):
        SignatureIndex(64, p)


def test_a_stale_rerank_copy_drops_unknown_candidates_instead_of_failing():
    """A search racing a change may hold a copy without the newest ids (dense and sparse)."""
    rng = np.random.default_rng(10)
    for base in (0, 10**12):  # dense ids use the row table, sparse ids binary search
        X = _clustered(rng, 600, 64)
        idx = SignatureIndex(64, config=IndexConfig(exact_max=100, proj_dim=32))
        idx.upsert(np.arange(500) + base, X[:500])
        idx.search(X[:1], 5)  # builds the copy
        stale = idx._rows
        idx.upsert(np.arange(500, 600) + base, X[500:])
        idx._rows = stale  # as if another search had rebuilt it mid-change
        D, I = idx.search(X[500:520], 5)
        assert not np.isin(I, np.arange(500, 600) + base).any()
        assert (I >= base).all() and np.isfinite(D).all()


def test_searches_run_alongside_upserts_and_removals_without_error():
    """Threads search a compact index while another adds, replaces and removes vectors
    (faiss alone would read lists mid-resize). Every answer is a well-formed top-k of ids
    that were stored at some point, and after the changes a search sees their end state."""
    import threading

    rng = np.random.default_rng(11)
    X = _clustered(rng, 1600, 64)
    idx = SignatureIndex(64, config=IndexConfig(exact_max=100, proj_dim=32))
    idx.upsert(np.arange(800), X[:800])
    errors: list[BaseException] = []
    answers: list[np.ndarray] = []
    done = threading.Event()

    def searcher(seed: int) -> None:
        r = np.random.default_rng(seed)
        try:
            while not done.is_set():
                q = X[r.integers(0, 1600, size=int(r.integers(1, 4)))]
                D, I = idx.search(q, 5)
                assert D.shape == I.shape == (len(q), 5)
                answers.append(I)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=searcher, args=(s,)) for s in range(3)]
    for t in threads:
        t.start()
    try:
        for lo in range(800, 1600, 50):  # grows past a re-clustering, with removals between
            idx.upsert(np.arange(lo, lo + 50), X[lo:lo + 50])
            idx.remove(np.arange(lo - 800, lo - 780))
            idx.upsert(np.arange(lo - 780, lo - 770), X[lo - 780:lo - 770])  # replace in place
    finally:
        done.set()
        for t in threads:
            t.join()
    assert not errors, errors[:1]
    assert len(answers) > 10
    got = np.concatenate([a.ravel() for a in answers])
    assert ((got >= -1) & (got < 1600)).all()
    removed = np.setdiff1d(np.arange(0, 800), idx.ids())
    assert removed.size > 0
    _, I = idx.search(X[removed[:20]], 5)
    assert not np.isin(I, removed).any()


def test_rwlock_readers_share_writers_exclude_and_go_first():
    import threading
    import time

    from lineage.rwlock import RWLock

    lock = RWLock()
    inside, log = [], []
    both_in = threading.Barrier(2, timeout=5)

    def reader(name: str) -> None:
        with lock.read():
            inside.append(name)
            both_in.wait()  # two readers hold the lock at once, or this times out
            log.append(f"{name} out")

    rs = [threading.Thread(target=reader, args=(n,)) for n in ("r1", "r2")]
    for t in rs:
        t.start()
    for t in rs:
        t.join()
    assert sorted(inside) == ["r1", "r2"]

    order = []
    holding = threading.Event()
    release = threading.Event()

    def long_reader() -> None:
        with lock.read():
            holding.set()
            release.wait(5)
            order.append("reader 1 done")

    def writer() -> None:
        with lock.write(), lock.write(), lock.read():  # reentrant, and the writer may read
            order.append("writer")

    def late_reader() -> None:
        with lock.read():
            order.append("reader 2")

    t1 = threading.Thread(target=long_reader)
    t1.start()
    holding.wait(5)
    tw = threading.Thread(target=writer)
    tw.start()
    time.sleep(0.1)  # the writer is waiting for reader 1
    t2 = threading.Thread(target=late_reader)
    t2.start()
    time.sleep(0.1)  # reader 2 must queue behind the waiting writer
    assert order == []
    release.set()
    for t in (t1, tw, t2):
        t.join(5)
    assert order == ["reader 1 done", "writer", "reader 2"]


def test_rerank_copy_is_kept_current_across_changes_without_a_rebuild():
    """After upserts, replacements and removals (no re-clustering) the re-rank copy is updated
    in place: it is never dropped, its live rows equal a rebuild's, and searches answer as
    they do after a rebuild."""
    rng = np.random.default_rng(12)
    X = _clustered(rng, 900, 64)
    cfg = IndexConfig(exact_max=100, proj_dim=32, nprobe=1 << 16, rerank=10_000)
    idx = SignatureIndex(64, config=cfg)
    idx.upsert(np.arange(700), X[:700])
    lists = idx._ivf().nlist
    assert nlist_for(900) < 2 * lists  # growing to 900 does not re-cluster
    idx.search(X[:1], 5)  # builds the copy
    sid, y, table = idx._rows
    idx._ybuf = y.copy()  # no spare room: the first add must grow the buffer
    idx._rows = (sid, idx._ybuf, table)
    for lo in range(700, 900, 50):
        idx.upsert(np.arange(lo, lo + 50), X[lo:lo + 50])
        idx.remove(np.arange(lo - 700, lo - 690))
        idx.upsert(np.arange(lo - 690, lo - 685), X[lo - 300:lo - 295])  # replaced vectors
        assert idx._rows is not None
    idx.upsert(np.zeros(0, np.int64), np.zeros((0, 64), np.float32))  # nothing to add
    assert idx._ivf().nlist == lists  # no re-clustering happened
    _, y, table = idx._rows
    live = idx.ids()
    fresh_ids, fresh_y, _ = idx._build_rows()
    assert np.array_equal(np.sort(live), fresh_ids)
    np.testing.assert_array_equal(y[table[fresh_ids]], fresh_y)
    assert (table[np.setdiff1d(np.arange(900), live)] == -1).all()
    Q = X[rng.integers(0, 900, 40)]
    kept = idx.search(Q, 10)
    idx._rows = None  # force a rebuild
    rebuilt = idx.search(Q, 10)
    np.testing.assert_array_equal(kept[1], rebuilt[1])
    np.testing.assert_allclose(kept[0], rebuilt[0], rtol=1e-6)
