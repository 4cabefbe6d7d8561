"""Kill -9 a real `lineage batch run` at different points; running it again finishes the job
with exactly one stored result per suspect, and no suspect whose scan had finished is queried
again. The suspects are loopback OpenAI servers (`openai_server.py`) that count every query."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from openai_server import serve_model

from lineage.batch import job_store, scan_request_id
from lineage.store import Store

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
BUDGET = 12


@pytest.fixture(scope="module")
def endpoints(small_zoo, zoo_manifest):
    """name -> (uri, server) for the zoo's three suspects, text only."""
    import contextlib

    with contextlib.ExitStack() as stack:
        out = {}
        for m in zoo_manifest["models"]:
            if m["role"] == "suspect":
                url, srv = stack.enter_context(serve_model(small_zoo / m["path"], logprobs=False,
                                                           model_name=m["name"]))
                out[m["name"]] = (f"openai+{url}?model={m['name']}&access=text&rps=1000", srv)
        yield out


def _run(home: Path, manifest: Path, crash: str | None = None, kill_after_done: int = 0
         ) -> subprocess.CompletedProcess[str] | int:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("LINEAGE_BATCH_CRASH", None)
    if crash:
        env["LINEAGE_BATCH_CRASH"] = crash
    cmd = [sys.executable, "-m", "lineage.cli", "--home", str(home), "batch", "run",
           str(manifest), "--request-id", "crash-test", "--json", "-q"]
    if not kill_after_done:
        return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True,
                              timeout=300)
    p = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and p.poll() is None:
        try:
            jobs = job_store(home).list_jobs()
            if jobs and jobs[0].done >= kill_after_done:
                break
        except Exception:  # noqa: BLE001 - the database may not exist yet
            pass
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)  # a timed kill: wherever the runner is now
    return p.wait()


@pytest.mark.parametrize("crash", ["claimed:1", "scan_stored:2", "all_done:1", "timed"])
def test_kill_9_then_resume(home_copy, endpoints, tmp_path, crash):
    names = sorted(endpoints)
    mf = tmp_path / "batch.yaml"
    mf.write_text("suspects:\n" + "".join(
        f"  - name: {n}\n    model: {endpoints[n][0]}\n    max_queries: {BUDGET}\n"
        for n in names))
    servers = [endpoints[n][1] for n in names]
    for s in servers:
        s.reset_counts()

    first = _run(home_copy, mf, None if crash == "timed" else crash,
                 kill_after_done=1 if crash == "timed" else 0)
    rc = first if isinstance(first, int) else first.returncode
    assert rc == -signal.SIGKILL, getattr(first, "stderr", "")
    jobs = job_store(home_copy)
    (job,) = jobs.list_jobs()
    assert job.state == "running"  # interrupted
    store = Store(home_copy / "lineage.db")
    finished = {i for i in range(3) if store.scan_by_request(scan_request_id(job.id, i))}
    expect = {"claimed:1": set(), "scan_stored:2": {0, 1}, "all_done:1": {0, 1, 2}}
    if crash in expect:
        assert finished == expect[crash]
    else:
        assert len(finished) >= 1
    before = [s.stats()["queries"] for s in servers]

    second = _run(home_copy, mf)
    assert second.returncode == 0, second.stderr
    out = json.loads(second.stdout)
    assert (out["job_id"], out["state"], out["done"], out["failed"]) == \
        (job.id, "succeeded", 3, 0)
    after = [s.stats()["queries"] for s in servers]
    for i, item in enumerate(jobs.items(job.id)):
        scan = store.scan_by_request(scan_request_id(job.id, i))
        assert item.state == "done" and item.scan_id == scan["scan_id"]
        if i in finished:  # finished before the kill: not one more query
            assert after[i] == before[i], (i, before, after)
        else:  # scanned once by the second run
            assert after[i] - before[i] == scan["queries"] <= BUDGET
    with store.engine.connect() as c:
        rows = c.exec_driver_sql("select request_id from scans").scalars().all()
    assert sorted(rows) == [scan_request_id(job.id, i) for i in range(3)]  # one each
    assert jobs.get(job.id).runs == 2
