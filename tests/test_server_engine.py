"""The server over the real `Lineage` engine, on tiny random models (fast; no zoo needed)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from lineage import errors as E
from lineage.client import LineageClient
from lineage.suites import default_suite
from serverutil import BackgroundServer

SUITE = default_suite().subset(12)
TOKEN = "engine-token"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from tinymodels import make_tiny_model

    root = tmp_path_factory.mktemp("models")
    return {n: str(make_tiny_model(root / n, seed=i, arch="llama" if i % 2 else "neox"))
            for i, n in enumerate(["t1", "r1", "r2", "r3", "s1"])}


def test_server_over_real_engine(tmp_path, models, monkeypatch):
    import lineage.engine as engine_mod
    from lineage.engine import Lineage

    opened: list[str] = []
    lock = threading.Lock()
    real_open = engine_mod.open_model

    def counting_open(uri, **kw):
        with lock:
            opened.append(uri)
        return real_open(uri, **kw)

    monkeypatch.setattr(engine_mod, "open_model", counting_open)
    (tmp_path / "tokens").write_text(TOKEN + "\n")
    home = tmp_path / "home"
    eng = Lineage(home, suite=SUITE)
    with BackgroundServer(eng, token_file=str(tmp_path / "tokens"), workers=2) as srv, \
            LineageClient(srv.address, token=TOKEN) as c:
        t1 = c.register("t1", models["t1"], "teacher", request_id="reg-t1")
        assert (t1.name, t1.role, t1.suite_hash) == ("t1", "teacher", SUITE.hash)
        assert c.register("t1", models["t1"], "teacher", request_id="reg-t1") == t1
        for r in ("r1", "r2", "r3"):
            c.register(r, models[r], "reference")
        with pytest.raises(E.AlreadyExistsError):
            c.register("r1", models["r1"], "reference")
        assert [m.name for m in c.list_models(page_size=3)] == ["t1", "r1", "r2", "r3"]
        assert [m.name for m in c.list_models(role="reference", page_size=1)] == \
            ["r1", "r2", "r3"]
        assert c.get_model("r2") == eng.get_model("r2")

        eng._cache.clear()  # cold cache: both scans need every registered model
        opened.clear()
        with ThreadPoolExecutor(2) as pool:  # concurrent scans share loaded models
            scans = list(pool.map(lambda i: c.scan(models["s1"], access="text",
                                                   max_queries=24, request_id=f"s{i}"),
                                  range(2)))
        registered = {m.uri for m in eng.list_models()}
        loads = [u for u in opened if u in registered]
        assert sorted(loads) == sorted(registered)  # each loaded exactly once
        assert c.scan(models["s1"], access="text", max_queries=24,
                      request_id="s0").id == scans[0].id
        scans.append(c.scan(models["s1"], max_queries=30))
        listed = [s.id for s in c.list_scans(page_size=2)]  # concurrent ones in any order
        assert set(listed[:2]) == {scans[0].id, scans[1].id} and listed[2:] == [scans[2].id]
        got = c.get_scan(scans[2].id)
        assert got.to_json() == eng.get_scan(scans[2].id).to_json()
        assert [x.teacher for x in got.candidates] == ["t1"] and got.queries <= 30
        assert got.suite_hash == SUITE.hash

        cmp = c.compare(models["s1"], "t1", access="logprobs", max_queries=24)
        assert [x.teacher for x in cmp.candidates] == ["t1"]
        with pytest.raises(E.UnknownModelError) as e:
            c.compare(models["s1"], "nope", max_queries=24)
        assert e.value.field == "teacher"
        top = c.search(vector=eng.index.reconstruct(t1.id), k=1)[0]
        assert top.teacher == "t1" and top.score == pytest.approx(1.0, abs=1e-4)
        assert [h.teacher for h in c.search(model=models["s1"], k=5)] == ["t1"]
        with pytest.raises(E.InvalidArgumentError) as e:
            c.scan(str(tmp_path / "missing"))
        assert e.value.field == "model"

    # local mode on the same home and suite gives the same candidates and verdicts
    local = Lineage(home, suite=SUITE).scan(models["s1"], max_queries=30)
    remote = scans[2]
    assert [(x.teacher, x.verdict) for x in local.candidates] == \
        [(x.teacher, x.verdict) for x in remote.candidates]
    assert [x.p_value for x in local.candidates] == pytest.approx(
        [x.p_value for x in remote.candidates])
    assert [x.similarity for x in local.candidates] == pytest.approx(
        [x.similarity for x in remote.candidates])
