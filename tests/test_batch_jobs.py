"""Batch jobs without models: the job store, the runner's resume/lock/cancel rules, `--since`
and the CLI, with a fake engine that keeps Lineage.scan's request-id contract."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

from lineage.batch import (
    BatchBusyError,
    JobStore,
    create_job,
    job_store,
    parse_manifest,
    run_job,
    scan_request_id,
)
from lineage.batch.diff import diff_jobs
from lineage.batch.runner import SequentialExecutor, home_lock, lock_holder
from lineage.cli import main
from lineage.errors import BackendError
from lineage.store import Store


class FakeEngine:
    """Stores a scan per request id (a repeat returns the stored one, like Lineage.scan)."""

    def __init__(self, home: Path, verdicts: dict[str, str] | None = None,
                 fail: set[str] | None = None, on_scan=None) -> None:
        self.store = Store(home / "lineage.db")
        self.verdicts = verdicts or {}
        self.fail = fail or set()
        self.on_scan = on_scan
        self.calls: list[str] = []

    def scan(self, model, *, access, max_queries, alpha, request_id):
        prior = self.store.scan_by_request(request_id)
        if prior is not None:
            return SimpleNamespace(id=prior["scan_id"], queries=prior["queries"])
        self.calls.append(model)
        if self.on_scan:
            self.on_scan(model)
        if model in self.fail:
            raise BackendError("endpoint returned 500")
        sid = uuid.uuid4().hex
        v = self.verdicts.get(model, "not_derived")
        self.store.add_scan(sid, model, {
            "scan_id": sid, "suspect": model, "queries": max_queries or 10, "created_at": "x",
            "candidates": [{"teacher": "t1", "verdict": v,
                            "p_value": 0.001 if v == "derived" else 0.5}]}, request_id)
        return SimpleNamespace(id=sid, queries=max_queries or 10)

    def close(self) -> None:
        self.store.close()


def _manifest(n: int = 3):
    return parse_manifest("suspects:\n" + "".join(
        f"  - name: s{i}\n    model: /tmp\n    max_queries: {10 + i}\n" for i in range(n)))


def _run(home, job, eng, **kw):
    return run_job(home, job.id, executor=SequentialExecutor(lambda h: eng), **kw)


def test_same_request_id_creates_one_job(tmp_path):
    a, created_a = create_job(tmp_path, _manifest(), request_id="nightly-1", source="m")
    b, created_b = create_job(tmp_path, _manifest(), request_id="nightly-1", source="m")
    c, created_c = create_job(tmp_path, _manifest(), request_id=None, source="m")
    d, created_d = create_job(tmp_path, _manifest(), request_id=None, source="m")
    assert (created_a, created_b, created_c, created_d) == (True, False, True, False)
    assert a.id == b.id and c.id == d.id and a.id != c.id
    assert [j.id for j in job_store(tmp_path).list_jobs()] == [a.id, c.id]
    assert a.total == 3 and a.state == "pending"


def test_run_scans_each_item_once_and_a_finished_job_is_not_rerun(tmp_path):
    job, _ = create_job(tmp_path, _manifest(), request_id="r", source="m")
    eng = FakeEngine(tmp_path)
    done = _run(tmp_path, job, eng)
    assert (done.state, done.done, done.failed, len(eng.calls)) == ("succeeded", 3, 0, 3)
    items = job_store(tmp_path).items(job.id)
    assert [i.queries for i in items] == [10, 11, 12]
    assert all(eng.store.scan_by_request(scan_request_id(job.id, i.idx))["scan_id"] == i.scan_id
               for i in items)
    again = _run(tmp_path, job, FakeEngine(tmp_path, fail={"/tmp"}))
    assert again.state == "succeeded" and again.runs == 1  # not started again


def test_resume_resets_running_items_and_reuses_stored_scans(tmp_path):
    """State a kill -9 can leave: item 0 claimed (running), item 1 scanned but not marked."""
    job, _ = create_job(tmp_path, _manifest(), request_id="r", source="m")
    jobs = job_store(tmp_path)
    jobs.start(job.id)
    assert jobs.claim(job.id, 0)
    eng = FakeEngine(tmp_path)
    assert jobs.claim(job.id, 1)
    eng.scan("/tmp", access="full", max_queries=11, alpha=0.01,
             request_id=scan_request_id(job.id, 1))
    eng.calls.clear()
    done = _run(tmp_path, job, eng)
    assert (done.state, done.done, done.runs) == ("succeeded", 3, 2)
    assert len(eng.calls) == 2  # items 0 and 2; item 1's stored scan was found
    with Store(tmp_path / "lineage.db").engine.connect() as c:
        n = c.exec_driver_sql("select count(*) from scans").scalar()
    assert n == 3


def test_a_second_runner_is_refused_while_the_lock_is_held(tmp_path):
    job, _ = create_job(tmp_path, _manifest(), request_id="r", source="m")
    with home_lock(tmp_path, "other-job"):
        assert lock_holder(tmp_path).startswith("job other-job pid ")
        with pytest.raises(BatchBusyError, match="already working"):
            _run(tmp_path, job, FakeEngine(tmp_path))
    assert lock_holder(tmp_path) is None
    assert job_store(tmp_path).get(job.id).state == "pending"


def test_failed_suspects_are_recorded_and_the_batch_goes_on(tmp_path):
    m = parse_manifest("suspects:\n  - /tmp\n  - name: bad\n    model: /var\n  - name: c\n"
                       "    model: /usr\n")
    job, _ = create_job(tmp_path, m, request_id="r", source="m")
    done = _run(tmp_path, job, FakeEngine(tmp_path, fail={"/var"}))
    assert (done.state, done.done, done.failed) == ("succeeded", 2, 1)
    bad = job_store(tmp_path).items(job.id)[1]
    assert (bad.state, bad.reason, bad.message) == ("failed", "BACKEND_FAILED",
                                                    "endpoint returned 500")


def test_cancel_before_and_during_a_run(tmp_path):
    jobs = job_store(tmp_path)
    job, _ = create_job(tmp_path, _manifest(), request_id="a", source="m")
    jobs.request_cancel(job.id)
    eng = FakeEngine(tmp_path)
    assert _run(tmp_path, job, eng).state == "cancelled" and eng.calls == []
    job2, _ = create_job(tmp_path, _manifest(), request_id="b", source="m")
    eng2 = FakeEngine(tmp_path, on_scan=lambda m: jobs.request_cancel(job2.id))
    out = _run(tmp_path, job2, eng2)
    assert (out.state, out.done, len(eng2.calls)) == ("cancelled", 1, 1)


def test_since_reports_changed_verdicts_and_new_positives(tmp_path, capsys):
    m = parse_manifest("suspects:\n  - name: a\n    model: /tmp\n  - name: b\n    model: /usr\n")
    j1, _ = create_job(tmp_path, m, request_id="night-1", source="m")
    _run(tmp_path, j1, FakeEngine(tmp_path, verdicts={"/tmp": "derived"}))
    m2 = parse_manifest("suspects:\n  - name: a\n    model: /tmp\n  - name: b\n    model: /usr\n"
                        "  - name: c\n    model: /var\n  - name: d\n    model: /opt\n")
    j2, _ = create_job(tmp_path, m2, request_id="night-2", source="m")
    _run(tmp_path, j2, FakeEngine(tmp_path, verdicts={"/tmp": "derived", "/usr": "derived",
                                                     "/var": "derived"}))
    d = diff_jobs(job_store(tmp_path), Store(tmp_path / "lineage.db"), j1.id, j2.id)
    assert d["changes"] == [
        {"suspect": "b", "teacher": "t1", "before": "not_derived", "after": "derived",
         "p_value": 0.001, "scan_id": d["changes"][0]["scan_id"], "new_positive": True},
        {"suspect": "c", "teacher": "t1", "before": None, "after": "derived",
         "p_value": 0.001, "scan_id": d["changes"][1]["scan_id"], "new_positive": True}]
    assert d["new_positives"] == 2  # a (unchanged) and d (new, negative) are not reported
    assert main(["--home", str(tmp_path), "batch", "status", j2.id, "--since", j1.id,
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["diff"]["new_positives"] == 2 and out["state"] == "succeeded"
    assert main(["--home", str(tmp_path), "batch", "status", j2.id, "--since", j1.id]) == 0
    text = capsys.readouterr().out
    assert "NEW POSITIVE b vs t1: not_derived -> derived" in text
    assert "NEW POSITIVE c vs t1: None -> derived" in text
    assert main(["--home", str(tmp_path), "batch", "status", j2.id, "--since", "last",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["diff"]["since"] == j1.id


def test_cli_same_request_id_runs_one_job(tmp_path, capsys):
    """Real CLI and engine, no teachers registered: every suspect fails fast, job succeeds."""
    home = tmp_path / "home"
    mf = tmp_path / "m.yaml"
    mf.write_text("suspects:\n  - /tmp\n  - /usr\n")
    args = ["--home", str(home), "batch", "run", str(mf), "--request-id", "n1", "--json"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert (first["state"], first["total"], first["failed"]) == ("succeeded", 2, 2)
    assert first["items"][0]["message"] == "no teachers are registered; register one first"
    assert main(args) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["job_id"] == first["job_id"] and second["runs"] == 1
    assert main(["--home", str(home), "batch", "list", "--json"]) == 0
    assert [j["job_id"] for j in json.loads(capsys.readouterr().out)["jobs"]] == \
        [first["job_id"]]


def test_cli_refuses_a_malformed_manifest_before_any_work(tmp_path, capsys):
    mf = tmp_path / "bad.yaml"
    mf.write_text("suspects:\n  - model: /tmp\n    max_queries: zero\n")
    assert main(["--home", str(tmp_path / "h"), "batch", "run", str(mf)]) == 2
    err = capsys.readouterr().err
    assert f"{mf}:3: field 'suspects[0].max_queries' must be a positive integer" in err
    assert not (tmp_path / "h").exists() or job_store(tmp_path / "h").list_jobs() == []


def test_cli_cancel_marks_an_idle_job_cancelled(tmp_path, capsys):
    job, _ = create_job(tmp_path, _manifest(), request_id="r", source="m")
    assert main(["--home", str(tmp_path), "batch", "cancel", job.id, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "cancelled"
    assert isinstance(job_store(tmp_path), JobStore)


def test_a_scan_stored_meanwhile_under_the_same_request_id_is_the_result(tmp_path):
    """A leftover worker stores the item's scan first: ours collides on the unique request id,
    and the item takes the stored scan instead of failing or storing a second one."""
    job, _ = create_job(tmp_path, _manifest(1), request_id="r", source="m")
    other = Store(tmp_path / "lineage.db")
    rid = scan_request_id(job.id, 0)

    def race(model):
        other.add_scan("theirs", model, {"scan_id": "theirs", "queries": 7}, rid)

    done = _run(tmp_path, job, FakeEngine(tmp_path, on_scan=race))
    assert (done.state, done.done, done.failed) == ("succeeded", 1, 0)
    item = job_store(tmp_path).items(job.id)[0]
    assert (item.scan_id, item.queries) == ("theirs", 7)
