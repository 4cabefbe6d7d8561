"""The detection benchmark's grading and issue 4's targets table, on a hand-made run."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _cand(teacher: str, p_div: float, reported: float | None = None) -> dict:
    parts = {"closeness": 0.5, "similarity": 0.5, "cross_entropy": p_div}
    raw = p_div / 0.8 if reported is None else reported
    return {"teacher": teacher, "p_value": min(1.0, 2 * raw), "raw_p_value": raw,
            "statistic": 1.0 - p_div, "similarity": 0.0, "closeness": 0.0,
            "verdict": "derived" if 2 * raw <= 0.01 else "not_derived", "p_parts": parts}


def _run() -> dict:
    scans = []
    # two positives: one strong; one whose scan stopped for futility at its first look (the
    # reported p is 1) although its evidence (p 0.04) beats every negative's
    for name, recipe, parent, p1, p2, rep in [
            ("s1", "seq_kd_xtok", "t1", 0.001, 0.6, None),
            ("s2", "mix05", "t2", 0.5, 0.04, 1.0)]:
        c1 = _cand("t1", p1, rep if parent == "t1" else None)
        c2 = _cand("t2", p2, rep if parent == "t2" else None)
        cands = sorted([c1, c2], key=lambda c: c["p_value"])
        scans.append({"suspect": name, "recipe": recipe, "parent": parent, "queries": 100,
                      "top1": cands[0]["teacher"], "stopped_early": rep is not None,
                      "candidates": cands})
    for i in range(50):  # null suspects: evidence p from 0.1 upwards
        cands = [_cand("t1", 0.1 + 0.017 * i), _cand("t2", 0.11 + 0.017 * i)]
        scans.append({"suspect": f"n{i}", "recipe": "independent_seed", "parent": None,
                      "queries": 25, "top1": "t1", "stopped_early": True, "candidates": cands})
    return {"zoo": "synthetic", "access": "text", "max_queries": 100, "alpha": 0.01,
            "early_stop": True, "teachers": ["t1", "t2"], "n_references": 8,
            "register_seconds": 0.0, "scan_seconds": 0.0, "scans": scans, "distillation": []}


def test_grade_ranks_by_evidence_and_puts_intervals_beside_rates():
    det = _load("detection")
    res = det.grade(_run())
    rows = {r["recipe"]: r for r in res["rows"]}
    assert res["negative_pairs"] == 102
    # ranked by evidence p, both positives beat all 102 negative pairs...
    assert rows["all"]["tpr_at_fpr_0.01"] == 1.0 and rows["all"]["auc"] == 1.0
    assert rows["all"]["tpr_at_fpr_0.01_ci"] == pytest.approx((0.158, 1.0), abs=1e-3)
    lo, hi = rows["all"]["auc_ci"]
    assert lo <= 1.0 <= hi
    # ...while on the reported p the futility-stopped positive ties with the nulls at 1
    assert rows["all"]["auc_reported_p"] < 1.0
    assert rows["mix05"]["top1"] == 0.0  # its reported p ordered t1 first
    assert {r["recipe"] for r in res["by_teacher"]} == {"t1", "t2"}
    assert res["fpr_at_alpha"] == 0.0 and res["fpr_at_alpha_ci"][0] == 0.0


def test_targets_table_marks_met_and_short_with_the_gap():
    det, tg = _load("detection"), _load("targets")
    rows = tg.check([det.grade(_run())])
    by = {x["case"]: x for x in rows}
    xt = by["sequence-KD, other tokenizer, text, <= 100 queries"]
    assert (xt["value"], xt["met"]) == (1.0, True)
    lp = by["sequence-KD, other tokenizer, logprobs, <= 32 queries"]  # no such run given
    assert lp["run"] is None and not lp["met"]
    ft = by["sequence-KD, then fine-tuned"]  # the run has no fine-tuned students
    assert ft["run"] is None and not ft["met"]
    top1 = by["top-1 attribution, positives"]
    assert top1["value"] == 0.5 and not top1["met"] and top1["short_by"] == pytest.approx(0.48)
    cal = by["calibration: FPR at alpha <= alpha"]
    assert cal["met"] and cal["target"] == 0.01


def test_regrading_a_committed_run_reproduces_its_figures():
    """The README's figures come from these files; grading them again changes nothing."""
    import json

    det = _load("detection")
    path = ROOT / "benchmarks" / "results" / "detection-full-text-s9.json"
    saved = json.loads(path.read_text())
    again = det.grade(saved)
    for key in ("rows", "by_teacher", "by_statistic", "fpr_at_alpha", "negative_pairs"):
        assert json.loads(json.dumps(again[key])) == saved[key], key
    all_row = again["rows"][-1]
    assert (round(all_row["tpr_at_fpr_0.01"], 2), round(all_row["auc"], 3)) == (0.67, 0.967)


def test_pooling_two_runs_doubles_the_pairs_and_refuses_mixed_settings():
    det = _load("detection")
    a, b = _run(), _run()
    res = det.grade(det.pool([a, b]))
    assert res["negative_pairs"] == 204 and res["rows"][-1]["positives"] == 4
    assert len({x["suspect"] for x in res["scans"]}) == 104
    with pytest.raises(SystemExit):
        det.pool([a, {**b, "alpha": 0.05}])
    with pytest.raises(SystemExit):  # echo scans are another measurement
        det.pool([a, {**b, "echo": True}])
    # a run saved before --echo existed did not echo: it pools with one that says so
    assert len(det.pool([{**a, "echo": False}, b])["scans"]) == 104
    # another probe suite is another measurement; a run saved before --suite existed used
    # the built-in one
    from lineage.suites import default_suite

    S = default_suite()
    with pytest.raises(SystemExit, match="suite"):
        det.pool([a, {**b, "suite": {"name": "other", "hash": "0" * 64}}])
    assert len(det.pool([{**a, "suite": {"name": S.name, "hash": S.hash}}, b])["scans"]) == 104
    # the teacher contrast is another test; a run saved before --contrast existed had none,
    # and the first runs with it said on (every statistic's) or off
    with pytest.raises(SystemExit, match="contrast"):
        det.pool([a, {**b, "contrast": ["divergence"]}])
    assert len(det.pool([{**a, "contrast": False}, {**b, "contrast": []}])["scans"]) == 104
    both = {**b, "contrast": ["cross_entropy", "divergence"]}
    assert len(det.pool([{**a, "contrast": True}, both])["scans"]) == 104


def test_headline_row_quotes_the_graded_figures(tmp_path):
    import json

    det, hl = _load("detection"), _load("headline")
    p = tmp_path / "run.json"
    p.write_text(json.dumps({**det.grade(_run()), "contrast": ["divergence"]}))
    row = hl.row(p)
    assert row.startswith("| text, ≤ 100 queries, contrast divergence | ")
    # TPR 2/2 with its interval, AUC, cross-tokenizer 1.00, 5% 1.00, no fine-tuned students,
    # top-1 1/2, no null pair derived
    assert "| 1.00 [0.16, 1.00] | 1.000 | 1.00 | 1.00 | - | 0.50 | 0/102 at α = 0.01 |" in row
