"""End to end through the CLI on the small zoo: the contract, and the verdicts that matter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lineage.verdict import combine

pytestmark = pytest.mark.slow


def lineage(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, LINEAGE_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "lineage.cli", *args], capture_output=True,
                          text=True, env=env, timeout=900)


def _by_recipe(manifest: dict, recipe: str, parent: str | None = "t1") -> dict:
    return next(m for m in manifest["models"]
                if m["recipe"] == recipe and m.get("parent") == parent and m["role"] == "suspect")


@pytest.fixture(scope="module")
def scans(registered_home, small_zoo, zoo_manifest):
    """Scan a logit-KD student, a sequence-KD student and an independent, via the CLI."""
    return _scan_three(registered_home, small_zoo, zoo_manifest)


@pytest.fixture(scope="module")
def whole_scans(registered_home, small_zoo, zoo_manifest):
    """The same three with every probe asked (no early stopping): a ranking needs p-values
    that a futility stop has not capped at 1 (it stops a teacher whose raw p after a quarter
    of the probes is above 0.2, which happens to a sequence-KD student for some seeds)."""
    return _scan_three(registered_home, small_zoo, zoo_manifest, "--no-early-stop")


def _scan_three(home, small_zoo, zoo_manifest, *flags):
    out = {}
    indep = next(m for m in zoo_manifest["models"]
                 if m["role"] == "suspect" and not m.get("parent"))
    for key, m in (("logit_kd", _by_recipe(zoo_manifest, "logit_kd")),
                   ("seq_kd", _by_recipe(zoo_manifest, "seq_kd")), ("independent", indep)):
        p = lineage("scan", str(small_zoo / m["path"]), "--json", *flags, home=home)
        assert p.returncode == 0, p.stderr
        out[key] = (p.stdout, json.loads(p.stdout))
    return out


def test_json_contract(scans, zoo_manifest):
    teachers = {m["name"] for m in zoo_manifest["models"] if m["role"] == "teacher"}
    for stdout, d in scans.values():
        assert stdout.count("\n") == 1  # exactly one JSON object on stdout, nothing else
        assert isinstance(d["suspect"], str) and d["access"] == "full"
        assert isinstance(d["queries"], int) and d["queries"] > 0
        assert {c["teacher"] for c in d["candidates"]} == teachers
        ps = [c["p_value"] for c in d["candidates"]]
        assert ps == sorted(ps)
        # ties in p_value are ordered by the evidence at the last look, then the statistic
        order = [(c["p_value"], combine(c["p_parts"]) if c.get("p_parts") else 1.0,
                  -c["statistic"]) for c in d["candidates"]]
        assert order == sorted(order)
        for c in d["candidates"]:
            assert set(c) >= {"teacher", "similarity", "p_value", "verdict"}
            # full access, two teachers: the suspect's preference for each one's text runs
            # (the divergence contrast waits for a third teacher)
            assert set(c["p_parts"]) == {"closeness", "similarity", "divergence",
                                         "teacher_text"}
            assert isinstance(c["similarity"], float) and 0.0 <= c["p_value"] <= 1.0
            assert c["verdict"] in ("derived", "not_derived", "inconclusive")


@pytest.mark.parametrize("key", ["logit_kd", "seq_kd"])
def test_students_are_derived_from_their_teacher(scans, key):
    d = scans[key][1]
    top = d["candidates"][0]
    assert (top["teacher"], top["verdict"]) == ("t1", "derived"), d["candidates"]


def test_logit_kd_student_is_most_similar_to_its_teacher(scans):
    """The ranking is right even where the p-value is not yet small enough."""
    d = scans["logit_kd"][1]
    best = max(d["candidates"], key=lambda c: c["similarity"])
    assert best["teacher"] == "t1"


def test_students_rank_above_the_independent_for_their_teacher(whole_scans):
    """Power, as a ranking: each student's p against t1 is below the independent's, and t1
    is each student's first candidate."""
    def t1(key: str) -> dict:
        return next(c for c in whole_scans[key][1]["candidates"] if c["teacher"] == "t1")

    for key in ("logit_kd", "seq_kd"):
        assert t1(key)["raw_p_value"] < t1("independent")["raw_p_value"], key
        assert t1(key)["statistic"] > t1("independent")["statistic"], key
        assert whole_scans[key][1]["candidates"][0]["teacher"] == "t1"


def test_independent_is_not_derived_from_any_teacher(scans):
    d = scans["independent"][1]
    assert [c["verdict"] for c in d["candidates"]] == ["not_derived"] * len(d["candidates"])


def test_models_list_json(registered_home, zoo_manifest):
    p = lineage("models", "list", "--json", home=registered_home)
    assert p.returncode == 0
    names = [m["name"] for m in json.loads(p.stdout)["models"]]
    assert names == [m["name"] for m in zoo_manifest["models"]
                     if m["role"] in ("teacher", "reference")]


def test_bad_input_exits_nonzero_with_one_line(registered_home, tmp_path):
    p = lineage("scan", str(tmp_path / "missing"), "--json", home=registered_home)
    assert p.returncode != 0 and p.stdout == ""
    assert p.stderr.strip().count("\n") == 0 and "does not exist" in p.stderr
    p = lineage("scan", str(tmp_path), "--alpha", "2", home=registered_home)
    assert p.returncode != 0 and p.stderr.startswith("lineage: error:")


def test_register_via_cli_refuses_pickles(home_copy, tmp_path, small_zoo, zoo_manifest):
    import shutil

    src = small_zoo / zoo_manifest["models"][0]["path"]
    bad = tmp_path / "pickled"
    shutil.copytree(src, bad)
    (bad / "model.safetensors").unlink()
    (bad / "pytorch_model.bin").write_bytes(b"\x80\x04.")
    p = lineage("register", "evil", str(bad), "--role", "teacher", home=home_copy)
    assert p.returncode != 0 and "pickle" in p.stderr
    p = lineage("models", "list", "--json", home=home_copy)
    assert "evil" not in p.stdout


def test_cli_echo_scan_and_compare(home_copy, small_zoo, zoo_manifest):
    """`--echo` (logprobs access): the suspect scores the teachers' text within the budget,
    and teacher_text is in the evidence; elsewhere it is a one-line input error."""
    m = _by_recipe(zoo_manifest, "seq_kd")
    path = str(small_zoo / m["path"])
    p = lineage("scan", path, "--access", "logprobs", "--echo", "--echo-texts", "1",
                "--max-queries", "60", "--no-early-stop", "--json", home=home_copy)
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["queries"] == 60 and d["identity"]["echo"] == "used"  # 20 probes x (1 + 2)
    assert all("teacher_text" in c["p_parts"] for c in d["candidates"])
    p = lineage("compare", path, "t1", "--access", "logprobs", "--echo", "--max-queries", "30",
                "--json", home=home_copy)
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["queries"] <= 30 and [c["teacher"] for c in d["candidates"]] == ["t1"]
    assert "teacher_text" in d["candidates"][0]["p_parts"]
    for args in (("scan", path, "--echo"), ("scan", path, "--access", "text", "--echo")):
        p = lineage(*args, home=home_copy)
        assert p.returncode == 2 and p.stderr.count("\n") == 1 and "echo" in p.stderr
