"""Batched signature search: the engine's search_batch and the server's batcher."""

import asyncio

import numpy as np
import pytest
import sqlalchemy as sa

from lineage.engine import Lineage
from lineage.errors import InvalidArgumentError
from lineage.store import models, utcnow
from server.service import _SearchBatcher


def _engine_with(tmp_path, n: int, refs: int):
    eng = Lineage(tmp_path / "home")
    rows = [{"id": i, "name": f"m{i}", "role": "reference" if i <= refs else "teacher",
             "uri": f"/x/{i}", "identity": "{}", "suite_name": "default", "suite_hash": "h",
             "created_at": utcnow()} for i in range(1, n + 1)]
    with eng.store.engine.begin() as c:
        c.execute(sa.insert(models), rows)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, eng.index.dim)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    eng.index.upsert(np.arange(1, n + 1), X)
    return eng, X


def test_search_batch_matches_brute_force_over_teachers(tmp_path):
    eng, X = _engine_with(tmp_path, 60, refs=5)
    Q = np.random.default_rng(1).normal(size=(7, eng.index.dim)).astype(np.float32)
    got = eng.search_batch(list(Q), [3, 1, 5, 2, 4, 3, 10])
    qn = Q / np.linalg.norm(Q, axis=1, keepdims=True)
    S = qn @ X[5:].T  # teachers are ids 6..60
    for r, hits in enumerate(got):
        k = [3, 1, 5, 2, 4, 3, 10][r]
        order = np.argsort(-S[r])[:k]
        assert [h.teacher for h in hits] == [f"m{i + 6}" for i in order]
        np.testing.assert_allclose([h.score for h in hits], S[r, order], atol=1e-5)
    assert got[0] == eng.search(vector=Q[0], k=3)
    with pytest.raises(InvalidArgumentError):
        eng.search_batch([Q[0][:10]], 3)
    eng.close()


class _FakeEngine:
    def __init__(self) -> None:
        self.calls: list[int] = []

    def search_batch(self, vectors, ks):
        self.calls.append(len(vectors))
        if any(not np.isfinite(v).all() for v in vectors):
            raise InvalidArgumentError("signature contains NaN or inf", field="vector")
        return [[("hit", float(v[0]), k)] for v, k in zip(vectors, ks)]


def test_batcher_coalesces_and_isolates_errors():
    eng = _FakeEngine()

    async def run(fn, *a, **kw):
        await asyncio.sleep(0.01)  # the executor: later calls pile up meanwhile
        return fn(*a, **kw)

    async def main():
        b = _SearchBatcher(run, eng)
        vecs = [np.array([float(i), 0.0]) for i in range(10)]
        vecs[4] = np.array([np.nan, 0.0])
        return await asyncio.gather(*(b.search(v, k=i + 1) for i, v in enumerate(vecs)),
                                    return_exceptions=True)

    out = asyncio.run(main())
    assert isinstance(out[4], InvalidArgumentError)
    assert [o for i, o in enumerate(out) if i != 4] == \
        [[("hit", float(i), i + 1)] for i in range(10) if i != 4]
    assert eng.calls == [10] + [1] * 10  # one batch; it failed, so one by one


def test_batcher_serves_later_arrivals_in_the_next_batch():
    eng = _FakeEngine()

    async def run(fn, *a, **kw):
        await asyncio.sleep(0.01)
        return fn(*a, **kw)

    async def main():
        b = _SearchBatcher(run, eng)
        first = asyncio.ensure_future(b.search(np.array([0.0]), k=1))
        await asyncio.sleep(0)  # the first batch (of one) is running
        rest = [asyncio.ensure_future(b.search(np.array([float(i)]), k=1)) for i in (1, 2, 3)]
        return await asyncio.gather(first, *rest)

    out = asyncio.run(main())
    assert [o[0][1] for o in out] == [0.0, 1.0, 2.0, 3.0]
    assert eng.calls == [1, 3]
