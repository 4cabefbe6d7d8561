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
