import json

import pytest

from lineage.errors import InvalidArgumentError, SuiteMismatchError
from lineage.suites import Suite, build_suite, default_suite, first_word, load_suite


def _suite_dict():
    return {"name": "t", "version": 1, "max_new_tokens": 8, "buckets": ["the", "a", "("],
            "probes": [{"id": "p0", "prompt": "Return the"}, {"id": "p1", "prompt": "Get"}]}


def test_first_word_rules():
    assert first_word(" the value") == "the"
    assert first_word("\n  foo_bar2(x)") == "foo_bar2"
    assert first_word(" (x)") == "("
    assert first_word("   ") == ""
    assert first_word("") == ""


def test_hash_is_content_hash_and_stable(tmp_path):
    a = Suite.from_dict(_suite_dict())
    p = tmp_path / "s.json"
    p.write_text(json.dumps(_suite_dict(), indent=3))
    b = load_suite(p)
    assert a.hash == b.hash
    d = _suite_dict()
    d["probes"][1]["prompt"] = "Set"
    assert Suite.from_dict(d).hash != a.hash
    with pytest.raises(SuiteMismatchError):
        a.check_same(Suite.from_dict(d).hash)


def test_bucket_index_other():
    s = Suite.from_dict(_suite_dict())
    assert s.bucket_index("the") == 0
    assert s.bucket_index("(") == 2
    assert s.bucket_index("zebra") == 3


@pytest.mark.parametrize("mutate,field", [
    (lambda d: d.update(probes=[]), "probes"),
    (lambda d: d.update(buckets=["a", "a"]), "buckets"),
    (lambda d: d.update(max_new_tokens=10_000), "max_new_tokens"),
    (lambda d: d["probes"].append({"id": "p0", "prompt": "dup"}), "probes"),
    (lambda d: d["probes"].append({"id": "p9", "prompt": "x" * 5000}), "probes[2].prompt"),
])
def test_bad_suites_are_refused_with_field(mutate, field):
    d = _suite_dict()
    mutate(d)
    with pytest.raises(InvalidArgumentError) as e:
        Suite.from_dict(d)
    assert e.value.field == field


def test_default_suite_ships_and_is_sane():
    s = default_suite()
    assert s.name == "default"
    assert len(s.probes) >= 64
    assert len(set(p.prompt for p in s.probes)) == len(s.probes)
    assert len(s.hash) == 64


def test_build_suite_is_deterministic():
    texts = [f"Return the value number {i} of the given list of things" for i in range(50)]
    a = build_suite(texts, n_probes=10, n_buckets=5, seed=3)
    b = build_suite(texts, n_probes=10, n_buckets=5, seed=3)
    assert a.hash == b.hash
    assert len(a.probes) == 10
    assert a.subset(4).probes == a.probes[:4]
