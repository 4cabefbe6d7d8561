"""The engine on tiny random models: registration, scans, idempotency, crash recovery."""

import numpy as np
import pytest

import lineage
from lineage.engine import Lineage, _scan_from_json, plan_queries
from lineage.backends import AccessMode
from lineage.errors import AlreadyExistsError, InvalidArgumentError, UnknownModelError
from lineage.suites import default_suite

SUITE = default_suite().subset(12)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from tinymodels import make_tiny_model

    root = tmp_path_factory.mktemp("models")
    return {n: str(make_tiny_model(root / n, seed=i, arch="llama" if i % 2 else "neox"))
            for i, n in enumerate(["t1", "r1", "r2", "r3", "s1", "s2"])}


@pytest.fixture()
def eng(tmp_path, models):
    e = Lineage(tmp_path / "home", suite=SUITE)
    e.register("t1", models["t1"], "teacher")
    for r in ("r1", "r2", "r3"):
        e.register(r, models[r], "reference")
    yield e
    e.close()


def test_plan_spends_budget():
    s = default_suite().subset(50)
    assert plan_queries(s, AccessMode.TEXT, 100, 4).total == 100
    assert plan_queries(s, AccessMode.TEXT, 100, 4).samples == 2
    p = plan_queries(s, AccessMode.FULL, 60, 4)
    assert (p.probes, p.samples, p.total) == (30, 1, 60)
    assert plan_queries(s, AccessMode.TEXT, None, 4).total == 50
    with pytest.raises(InvalidArgumentError):
        plan_queries(s, AccessMode.TEXT, 5, 4)
    # echo: each probe also costs one text per teacher (3 here)
    p = plan_queries(s, AccessMode.LOGPROBS, 32, 4, 3)
    assert (p.probes, p.samples, p.texts, p.text_queries, p.total) == (8, 1, 1, 24, 32)
    p = plan_queries(s, AccessMode.LOGPROBS, 500, 4, 3)  # then more texts per probe
    assert (p.probes, p.samples, p.texts, p.total) == (50, 1, 3, 500)
    p = plan_queries(s, AccessMode.LOGPROBS, None, 4, 3)  # every probe, n_reg texts
    assert (p.probes, p.samples, p.texts, p.total) == (50, 1, 4, 50 * 13)
    assert plan_queries(s, AccessMode.LOGPROBS, None, 4, 3, 1).total == 50 * 4
    with pytest.raises(InvalidArgumentError, match="echo_texts"):
        plan_queries(s, AccessMode.LOGPROBS, None, 4, 3, 5)
    with pytest.raises(InvalidArgumentError, match="at least 8"):
        plan_queries(s, AccessMode.LOGPROBS, 31, 4, 3)
    with pytest.raises(InvalidArgumentError, match="logprobs access only"):
        plan_queries(s, AccessMode.TEXT, 100, 4, 3)


def test_scan_reports_every_teacher_and_counts_queries(eng, models):
    for mode in ("full", "logprobs", "text"):
        r = eng.scan(models["s1"], access=mode, max_queries=30)
        assert r.queries <= 30
        assert r.queries == (24 if mode == "full" else 24)  # 12 probes x (1 + 1) or 12 x 2
        assert [c.teacher for c in r.candidates] == ["t1"]
        c = r.candidates[0]
        assert 0.0 <= c.p_value <= 1.0 and c.verdict in ("derived", "not_derived", "inconclusive")
        assert r.generated_tokens > 0
        assert eng.get_scan(r.id).to_json() == r.to_json()


def test_request_ids_are_idempotent(eng, models):
    a = eng.scan(models["s1"], access="text", request_id="req-1")
    b = eng.scan(models["s1"], access="text", request_id="req-1")
    # the version that ran a scan travels with it, also when the stored scan is replayed
    assert a.lineage_version == b.lineage_version == lineage.__version__
    old = {k: v for k, v in a.to_json().items() if k != "lineage_version"}  # stored before
    assert _scan_from_json(old).lineage_version == ""
    assert a.id == b.id
    assert len(eng.list_scans()) == 1
    rec = eng.register("t2", models["s1"], "teacher", request_id="reg-1")
    assert eng.register("t2-again", models["s1"], "teacher", request_id="reg-1").id == rec.id


def test_duplicate_unknown_and_bad_names(eng, models):
    with pytest.raises(AlreadyExistsError):
        eng.register("t1", models["s1"], "teacher")
    with pytest.raises(InvalidArgumentError):
        eng.register("bad name!", models["s1"], "teacher")
    with pytest.raises(InvalidArgumentError):
        eng.register("x", models["s1"], "boss")
    with pytest.raises(UnknownModelError):
        eng.compare(models["s1"], "nobody")
    with pytest.raises(InvalidArgumentError):
        eng.scan("/does/not/exist")


def test_a_home_is_opened_with_the_suite_its_models_were_registered_with(eng):
    """Stored samples and signatures are per probe of their suite: opening a home with another
    suite is refused before anything is read or written (it used to mix them silently)."""
    from lineage.errors import SuiteMismatchError

    other = default_suite().subset(13)
    with pytest.raises(SuiteMismatchError, match="one home per suite") as e:
        Lineage(eng.home, suite=other)
    assert e.value.field == "suite" and SUITE.hash[:12] in e.value.message
    assert len(Lineage(eng.home, suite=SUITE).list_models()) == 4  # the right suite opens


def test_no_references_gives_inconclusive(tmp_path, models):
    e = Lineage(tmp_path / "h", suite=SUITE)
    e.register("t1", models["t1"], "teacher")
    r = e.scan(models["s1"], access="text")
    assert r.candidates[0].verdict == "inconclusive"


def test_index_is_rebuilt_from_store_after_crash(eng, models, tmp_path):
    ids = sorted(eng.index.ids().tolist())
    assert ids == sorted(m.id for m in eng.list_models())
    (eng.home / "index.faiss").unlink()  # as if killed before the index was written
    again = Lineage(eng.home, suite=SUITE)
    assert sorted(again.index.ids().tolist()) == ids
    hits = again.search(model=models["t1"], k=3)
    assert hits[0].teacher == "t1" and hits[0].score == pytest.approx(1.0, abs=1e-4)


def test_delete_removes_everywhere(eng):
    rid = eng.get_model("r3").id
    eng.delete_model("r3")
    assert [m.name for m in eng.list_models()] == ["t1", "r1", "r2"]
    assert len(eng.index) == 3 and rid not in eng.index.ids().tolist()
    assert not [k for k in eng.store.score_matrix() if rid in k]
    with pytest.raises(UnknownModelError):
        eng.get_model("r3")


def test_signature_vectors_are_unit_norm(eng):
    for m in eng.list_models():
        v = eng.index.reconstruct(m.id)
        assert np.linalg.norm(v) == pytest.approx(1.0, abs=1e-5)


def test_same_weights_at_two_paths_get_the_same_scan(eng, models, tmp_path):
    # the scan seed follows the weights' sha256, not the path: a copy of the suspect elsewhere
    # is sampled identically and gets identical p-values (it once flipped a ranking test)
    import shutil

    copy = tmp_path / "elsewhere" / "s1"
    shutil.copytree(models["s1"], copy)
    a = eng.scan(models["s1"], access="text", early_stop=False)
    b = eng.scan(str(copy), access="text", early_stop=False)
    assert a.identity["sha256"] == b.identity["sha256"]
    assert [(c.teacher, c.raw_p_value, c.statistic) for c in a.candidates] == \
        [(c.teacher, c.raw_p_value, c.statistic) for c in b.candidates]
    assert a.generated_tokens == b.generated_tokens


def test_divergence_part_by_access_and_tempered_rows_filled_for_old_homes(eng, models):
    """Registration stores every cross-score at the sharp temperature too; the divergence
    part runs where the suspect's own log-likelihoods are visible (full, logprobs). A home
    from before the tempered table (rows missing) gets them filled in by the next scan, with
    the same values registration computes, so the scan's p-values do not change."""
    import sqlalchemy as sa

    from lineage.store import tempered_scores
    from lineage.verdict import SHARP_TEMPERATURE

    ids = [r.id for r in eng.list_models()]
    before = eng.store.tempered_matrix(SHARP_TEMPERATURE)
    assert set(before) == {(a, b) for a in ids for b in ids if a != b}
    parts = {m: set(eng.scan(models["s1"], access=m, max_queries=30).candidates[0].p_parts)
             for m in ("full", "logprobs", "text")}
    assert parts == {"full": {"closeness", "similarity", "divergence"},
                     "logprobs": {"closeness", "similarity", "divergence"},
                     "text": {"closeness", "similarity", "cross_entropy"}}
    first = eng.scan(models["s1"], access="full", max_queries=30).candidates[0]
    with eng.store.engine.begin() as c:
        c.execute(sa.delete(tempered_scores))
    again = eng.scan(models["s1"], access="full", max_queries=30).candidates[0]
    after = eng.store.tempered_matrix(SHARP_TEMPERATURE)
    assert set(after) == set(before)
    for k in before:
        np.testing.assert_allclose(after[k], before[k], atol=1e-4)
    assert again.p_parts == pytest.approx(first.p_parts, abs=1e-6)


def test_a_sequential_scan_run_to_its_end_has_the_fixed_scans_samples(tmp_path, models,
                                                                       monkeypatch):
    """Early stopping changes when a scan looks, not what it asks: both modes sample in the
    same chunks with the same seeds, so a sequential scan that runs to its last look computes
    the fixed scan's statistics, and its p-value differs only by the looks' weights."""
    import lineage.engine as E

    monkeypatch.setattr(E, "FUTILITY_P", 1.0)  # never stop for futility: run to the end
    e = Lineage(tmp_path / "h", suite=default_suite().subset(32))
    e.register("t1", models["t1"], "teacher")
    for r in ("r1", "r2", "r3"):
        e.register(r, models[r], "reference")
    for mode in ("text", "full"):
        fixed = e.scan(models["s1"], access=mode, early_stop=False)
        seq = e.scan(models["s1"], access=mode, early_stop=True)
        assert seq.queries == fixed.queries and not seq.stopped_early
        a, b = fixed.candidates[0], seq.candidates[0]
        assert (b.closeness, b.similarity, b.p_parts) == (a.closeness, a.similarity, a.p_parts)
        assert b.raw_p_value <= min(1.0, a.raw_p_value / E.LOOK_WEIGHTS[-1]) + 1e-12
    e.close()


def test_only_remote_access_modes_stop_early_by_default(tmp_path, models, monkeypatch):
    """Full access reads local weights, where every probe costs a forward pass and no
    endpoint budget: it asks them all unless told otherwise. Text and logprobs stop early."""
    import lineage.engine as E

    monkeypatch.setattr(E, "FUTILITY_P", -1.0)  # every look is decided: stop at the first
    e = Lineage(tmp_path / "h", suite=default_suite().subset(32))
    e.register("t1", models["t1"], "teacher")
    for r in ("r1", "r2", "r3"):
        e.register(r, models[r], "reference")
    full = e.scan(models["s1"], access="full")
    assert not full.stopped_early and full.queries == 32 * 2  # every probe, with its dist
    assert e.scan(models["s1"], access="full", early_stop=True).stopped_early
    assert e.scan(models["s1"], access="text").stopped_early
    assert not e.scan(models["s1"], access="text", early_stop=False).stopped_early
    e.close()


def test_teacher_text_runs_with_two_teachers_and_is_dropped_when_it_cannot(tmp_path, models,
                                                                          monkeypatch):
    """Two teachers: the full scan scores both teachers' sharpened texts under the suspect
    (stored once, with the references' scores). If the suspect cannot score them (a text
    longer than its context), the scan still finishes, without that statistic."""
    from lineage.backends.base import ModelView
    from lineage.verdict import SHARP_TEMPERATURE

    e = Lineage(tmp_path / "h", suite=default_suite().subset(8))
    e.register("t1", models["t1"], "teacher")
    e.register("t2", models["s1"], "teacher")
    for r in ("r1", "r2", "r3"):
        e.register(r, models[r], "reference")
    texts = e.store.sharp_texts(SHARP_TEMPERATURE)  # stored by registration
    assert len(texts) == 2 and all(len(t) == 8 for t in texts.values())
    assert len(e.store.sharp_text_matrix(SHARP_TEMPERATURE)) == 2 * 3
    a = e.scan(models["r1"], access="full")
    assert all("teacher_text" in c.p_parts for c in a.candidates)
    assert e.store.sharp_texts(SHARP_TEMPERATURE) == texts
    # a home from before these tables: the next full scan fills them in, the same texts
    import sqlalchemy as sa
    from lineage.store import sharp_text_scores, sharp_texts

    with e.store.engine.begin() as c:
        c.execute(sa.delete(sharp_text_scores))
        c.execute(sa.delete(sharp_texts))
    again = e.scan(models["r1"], access="full")
    assert e.store.sharp_texts(SHARP_TEMPERATURE) == texts
    for x, y in zip(again.candidates, a.candidates):
        assert x.teacher == y.teacher and x.p_parts == pytest.approx(y.p_parts, abs=1e-6)
    assert "teacher_text" not in e.scan(models["r1"], access="text").candidates[0].p_parts

    def refuse(self, v, samples, offset=0):  # the suspect scoring teacher text
        assert isinstance(v, ModelView)
        raise InvalidArgumentError("continuation longer than the model's context")

    monkeypatch.setattr(Lineage, "_score_text", refuse)
    b = e.scan(models["r1"], access="full")
    assert all(set(c.p_parts) == {"closeness", "similarity", "divergence"}
               for c in b.candidates)
    e.close()


def test_echo_scans_score_teacher_text_one_query_each(tmp_path, models):
    """Logprobs access with echo: the suspect scores one sharpened text per teacher per
    probe, each a query, and teacher_text joins the test; local weights do it only when
    asked, and echo is refused outside logprobs access."""
    e = Lineage(tmp_path / "h", suite=default_suite().subset(8))
    e.register("t1", models["t1"], "teacher")
    e.register("t2", models["s1"], "teacher")
    for r in ("r1", "r2", "r3"):
        e.register(r, models[r], "reference")
    plain = e.scan(models["r2"], access="logprobs", early_stop=False)
    assert plain.queries == 8 and "echo" not in plain.identity
    assert all("teacher_text" not in c.p_parts for c in plain.candidates)
    echo = e.scan(models["r2"], access="logprobs", echo=True, early_stop=False)
    # every probe: one sample, and n_reg = 4 texts of each of the two teachers
    assert echo.queries == 8 * (1 + 2 * 4) and echo.identity["echo"] == "used"
    assert all("teacher_text" in c.p_parts for c in echo.candidates)
    # the other statistics saw the same samples
    for x, y in zip(sorted(plain.candidates, key=lambda c: c.teacher),
                    sorted(echo.candidates, key=lambda c: c.teacher)):
        assert x.p_parts["divergence"] == pytest.approx(y.p_parts["divergence"], abs=1e-9)
    assert e.scan(models["r2"], access="logprobs", echo=True, max_queries=25).queries == 24
    for access in ("text", "full"):
        with pytest.raises(InvalidArgumentError, match="logprobs access only"):
            e.scan(models["r2"], access=access, echo=True)
    e.close()


def test_the_teacher_contrast_uses_every_teacher_whichever_are_tested(tmp_path, models):
    """With the contrast on, the sharpened ratio is tested as a contrast across every
    registered teacher, so a compare against one teacher gets that teacher's p-values from
    the full scan. By default only the divergence is contrasted, and only with three
    teachers or more; Settings(contrast=()) keeps both plain."""
    from lineage.engine import Settings

    S = default_suite().subset(8)
    e = Lineage(tmp_path / "h", suite=S, settings=Settings(contrast=()))
    e.register("t1", models["t1"], "teacher")
    e.register("t2", models["s1"], "teacher")
    for r in ("r1", "r2", "r3"):
        e.register(r, models[r], "reference")
    d = Lineage(tmp_path / "h", suite=S)  # two teachers: the default contrasts nothing yet
    assert "divergence" in d.scan(models["r1"], access="logprobs").candidates[0].p_parts
    d.close()
    e.register("t3", models["s2"], "teacher")
    c = Lineage(tmp_path / "h", suite=S,
                settings=Settings(contrast=("divergence", "cross_entropy")))
    d = Lineage(tmp_path / "h", suite=S)
    assert set(d.scan(models["r1"], access="logprobs").candidates[0].p_parts) == \
        {"closeness", "similarity", "divergence_contrast"}
    assert set(d.scan(models["r1"], access="text").candidates[0].p_parts) == \
        {"closeness", "similarity", "cross_entropy"}
    for mode, plain in (("logprobs", "divergence"), ("text", "cross_entropy")):
        every = c.scan(models["r1"], access=mode, early_stop=False)
        assert all(set(x.p_parts) == {"closeness", "similarity", f"{plain}_contrast"}
                   for x in every.candidates)
        one = c.compare(models["r1"], "t1", access=mode, early_stop=False).candidates[0]
        assert one.p_parts == pytest.approx(
            {x.teacher: x.p_parts for x in every.candidates}["t1"], abs=1e-9)
        assert plain in e.scan(models["r1"], access=mode, early_stop=False
                               ).candidates[0].p_parts
    for x in (c, d, e):
        x.close()
