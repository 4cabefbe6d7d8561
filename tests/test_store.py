import numpy as np
import pytest

from lineage.errors import AlreadyExistsError, UnknownModelError
from lineage.store import Store, decode_array, encode_array


def _add(st, name, role="reference", extra=None):
    return st.add_model(name=name, role=role, uri=f"/m/{name}", identity={"kind": "local"},
                        suite_name="s", suite_hash="h" * 64, dist=np.eye(3),
                        samples=[["a", "b"]], score_rows=extra or {}, request_id=None)


def test_roundtrip_and_wal(tmp_path):
    st = Store(tmp_path / "db.sqlite")
    a = _add(st, "a")
    b = _add(st, "b", "teacher", {("a", "b"): np.ones((1, 2), np.float32)})
    assert [m.name for m in st.list_models()] == ["a", "b"]
    assert [m.name for m in st.list_models(role="teacher")] == ["b"]
    assert [m.name for m in st.list_models(after_id=a.id)] == ["b"]
    d, s = st.fingerprint(b.id)
    np.testing.assert_array_equal(d, np.eye(3))
    assert s == [["a", "b"]]
    assert st.score_matrix()[(a.id, b.id)].shape == (1, 2)
    with st.engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_duplicate_and_unknown(tmp_path):
    st = Store(tmp_path / "db.sqlite")
    _add(st, "a")
    with pytest.raises(AlreadyExistsError):
        _add(st, "a")
    with pytest.raises(UnknownModelError):
        st.get_model("zzz")


def test_delete_cascades_scores(tmp_path):
    st = Store(tmp_path / "db.sqlite")
    _add(st, "a")
    _add(st, "b", extra={("a", "b"): np.ones((1, 2), np.float32)})
    st.delete_model("a")
    assert st.score_matrix() == {}


def test_arrays_never_pickle():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(decode_array(encode_array(a)), a)
    with pytest.raises(ValueError):
        decode_array(encode_array(np.array([object()], dtype=object)))


def test_tempered_rows_roundtrip_fill_and_delete(tmp_path):
    st = Store(tmp_path / "db.sqlite")
    a = _add(st, "a")
    b = st.add_model(name="b", role="teacher", uri="/m/b", identity={}, suite_name="s",
                     suite_hash="h" * 64, dist=np.eye(3), samples=[["a", "b"]], score_rows={},
                     tempered_rows={("a", "b", 0.5): np.full((1, 2), -3.0, np.float32)})
    assert set(st.tempered_matrix(0.5)) == {(a.id, b.id)}
    assert st.tempered_matrix(0.7) == {}  # rows are per temperature
    # filling: an existing row is kept, a missing one added, a deleted model's row skipped
    st.add_tempered({(a.id, b.id): np.zeros((1, 2), np.float32),
                     (b.id, a.id): np.ones((1, 2), np.float32),
                     (b.id, 999): np.ones((1, 2), np.float32)}, 0.5)
    m = st.tempered_matrix(0.5)
    assert set(m) == {(a.id, b.id), (b.id, a.id)}
    np.testing.assert_array_equal(m[(a.id, b.id)], np.full((1, 2), -3.0))
    st.delete_model("a")
    assert st.tempered_matrix(0.5) == {}


def test_sharp_texts_and_their_scores_fill_once_and_go_with_their_models(tmp_path):
    st = Store(tmp_path / "db.sqlite")
    a, b = _add(st, "a"), _add(st, "b", "teacher")
    st.add_sharp_texts({b.id: [["x", "y"]], 999: [["gone"]]}, 0.5)
    st.add_sharp_texts({b.id: [["other"]]}, 0.5)  # a concurrent fill: the first one stays
    assert st.sharp_texts(0.5) == {b.id: [["x", "y"]]}
    assert st.sharp_texts(0.7) == {}
    st.add_sharp_text_scores({(a.id, b.id): np.full((1, 2), -4.0, np.float32),
                              (a.id, 999): np.ones((1, 2), np.float32)}, 0.5)
    st.add_sharp_text_scores({(a.id, b.id): np.zeros((1, 2), np.float32)}, 0.5)
    m = st.sharp_text_matrix(0.5)
    assert set(m) == {(a.id, b.id)}
    np.testing.assert_array_equal(m[(a.id, b.id)], np.full((1, 2), -4.0))
    st.delete_model("b")
    assert st.sharp_texts(0.5) == {} and st.sharp_text_matrix(0.5) == {}
