"""kill -9 during `lineage register`, `scan`, `batch run` and `models delete`, then restart: the
database and
the FAISS index agree, nothing is half-written, and every operation that finished is there.

Real CLI subprocesses against the small zoo, killed two ways (seeded, so a failure replays):
- at named points via the fault-injection hook (`LINEAGE_CRASH_AT`, see `lineage.faults`):
  inside the store transaction, between the store commit and the index update, between the
  index's temp file and its rename, between a scan's result and its storage, inside the
  audit append;
- at random times: SIGKILL after a delay uniform over 10-90% of the operation's measured
  duration, repeated until TIMED_KILLS kills land (so the count does not depend on speed).
After every kill `lineage.integrity.check_home` reopens the home (which reconciles the index
from the store, as every restart does) and must report no problem.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lineage.audit import AuditLog
from lineage.batch import job_store
from lineage.integrity import check_home
from lineage.store import Store

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SEED = 20261129
MIN_KILLS = 20

# Phase 1, (operation, args, fault labels): each label kills one run of the operation; then
# it runs to completion (unless a kill came after its commit, which makes it durable).
LABELLED = [
    ("register", ("t1", "teacher"), ["store.add_model.in_tx", "register.after_store"]),
    ("register", ("r1", "reference"), ["register.before_store", "index.save.before_replace"]),
    ("scan", ("i1",), ["scan.before_store", "scan.after_store"]),
    ("scan", ("t1-logit_kd",), ["audit.in_tx:1", "audit.in_tx:2"]),
    ("delete", ("r1",), ["audit.in_tx:1", "delete.after_store"]),
    ("register", ("r2", "reference"), ["register.after_store"]),
    # a batch of the three suspects dies before storing its 2nd scan; the resumed run dies
    # right after storing its 1st; the third run finishes the job
    ("batch", ("all",), ["scan.before_store:2", "scan.after_store:1"]),
]
# Phase 2: SIGKILL after a random delay, uniform over (0.1, 0.9) of the operation's measured
# duration, cycling through these until TIMED_KILLS kills have landed (a run that finishes
# first simply counts as finished).
TIMED_CYCLE = [("register", ("r3", "reference")), ("scan", ("i1",)), ("batch", ("all",)),
               ("scan", ("t1-seq_kd",)), ("scan", ("t1-logit_kd",))]
TIMED_KILLS = 10
BATCH_SCENARIOS: list[tuple[str, tuple[str, ...], list[str]]] = []  # more batch cases go here
SUSPECTS = ("i1", "t1-logit_kd", "t1-seq_kd")


def _command(home: Path, zoo: Path, op: str, args: tuple[str, ...], batch_round: int = 0
             ) -> list[str]:
    base = [sys.executable, "-m", "lineage.cli", "--home", str(home)]
    if op == "batch":  # the same request id resumes a killed job; a new round starts another
        mf = home.parent / "batch.yaml"
        mf.write_text("defaults:\n  access: text\n  max_queries: 16\nsuspects:\n" + "".join(
            f"  - name: {n}\n    model: {zoo / n}\n" for n in SUSPECTS))
        return base + ["batch", "run", str(mf), "--request-id", f"crash-{batch_round}",
                       "--json", "-q"]
    if op == "register":
        name, role = args
        return base + ["register", name, str(zoo / name), "--role", role, "--json", "-q"]
    if op == "scan":
        return base + ["scan", str(zoo / args[0]), "--access", "text", "--max-queries", "16",
                       "--json", "-q"]
    if op == "delete":
        return base + ["models", "delete", args[0], "--json"]
    raise AssertionError(op)


def _run(cmd: list[str], crash: str | None, kill_after: float | None) -> tuple[int, str, float]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
           "TOKENIZERS_PARALLELISM": "false"}
    env.pop("LINEAGE_CRASH_AT", None)
    if crash:
        env["LINEAGE_CRASH_AT"] = crash
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        out, err = p.communicate(timeout=kill_after if kill_after is not None else 300)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL)
        out, err = p.communicate()
    took = time.monotonic() - t0
    if p.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(f"{cmd[5:]} failed ({p.returncode}): {err[-2000:]}")
    return p.returncode, out, took


def test_kill_9_anywhere_leaves_a_consistent_home(small_zoo: Path, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    home = tmp_path / "home"
    finished: list[tuple[str, str]] = []  # ("model", name) | ("scan", id) | ("deleted", name)
    est: dict[str, float] = {}  # longest measured run of each operation (a late kill counts)
    kills = {"label": 0, "timed": 0}
    batch_round = [0]
    log: list[str] = []
    t_start = time.monotonic()

    def check(after: str) -> None:
        problems = check_home(home)
        assert problems == [], f"after {after}: {problems}"
        st = Store(home / "lineage.db")
        try:
            names = {r.name for r in st.list_models()}
            for kind, key in finished:
                if kind == "model":
                    assert key in names, f"after {after}: finished register {key} lost"
                elif kind == "deleted":
                    assert key not in names, f"after {after}: deleted {key} is back"
                elif kind == "batch":
                    job = job_store(home).get(key)
                    assert job.state == "succeeded", f"after {after}: batch {key} is {job.state}"
                    for item in job_store(home).items(key):
                        assert st.get_scan(item.scan_id) is not None, \
                            f"after {after}: batch {key} lost the scan of item {item.idx}"
                else:
                    assert st.get_scan(key) is not None, f"after {after}: scan {key} lost"
        finally:
            st.close()

    def durable(op: str, name: str) -> bool:
        """A register or delete already in the store (a kill after its commit)."""
        if op not in ("register", "delete") or not (home / "lineage.db").exists():
            return False
        st = Store(home / "lineage.db")
        present = name in {r.name for r in st.list_models()}
        st.close()
        if present == (op == "register"):
            finished.append(("deleted" if op == "delete" else "model", name))
            log.append(f"{op} {name}: already committed")
            return True
        return False

    def attempt(op: str, args: tuple[str, ...], how: str) -> bool:
        """One run: killed at label `how`, at a random time ("timed"), or to the end
        ("complete"). Returns True when the run finished the operation."""
        if op == "delete":  # in flight: the model may or may not be there until it finishes
            finished[:] = [f for f in finished if f != ("model", args[0])]
        crash = None if how in ("timed", "complete") else how
        delay = rng.uniform(0.1, 0.9) * est[op] if how == "timed" else None
        rc, out, took = _run(_command(home, small_zoo, op, args, batch_round[0]), crash, delay)
        if rc == 0:
            est[op] = max(est.get(op, 0.0), took)
            res = json.loads(out)
            if op == "batch":
                assert (res["state"], res["done"]) == ("succeeded", len(SUSPECTS)), res
                batch_round[0] += 1
            key = {"register": "name", "scan": "scan_id", "delete": "deleted",
                   "batch": "job_id"}[op]
            finished.append(({"register": "model", "scan": "scan", "delete": "deleted",
                              "batch": "batch"}[op], res[key]))
            log.append(f"{op} {args[0]}: finished in {took:.1f}s ({how})")
            check(f"{op} {args[0]} finished")
            return True
        if how != "timed":
            est[op] = max(est.get(op, 0.0), took)
        kills["timed" if how == "timed" else "label"] += 1
        n = sum(kills.values())
        log.append(f"{op} {args[0]}: kill {n} at {how}" + (f" after {took:.2f}s" if delay else ""))
        check(f"kill {n} ({op} {args[0]} at {how})")
        return False

    for op, args, labels in LABELLED + BATCH_SCENARIOS:
        for how in labels + ["complete"]:
            if durable(op, args[0]) or attempt(op, args, how):
                break
        else:
            raise AssertionError(f"{op} {args[0]} never finished")
    # phase 1's batch runs were resumes of one job (a fraction of a whole run): measure a
    # whole batch first, so timed kills spread over all of it
    est.pop("batch", None)
    cycle, i, runs = list(TIMED_CYCLE), 0, 0
    while kills["timed"] < TIMED_KILLS and runs < 4 * TIMED_KILLS:
        op, args = cycle[i % len(cycle)]
        i, runs = i + 1, runs + 1
        if op not in est:  # never measured: run it once to the end first
            attempt(op, args, "complete")
        elif durable(op, args[0]) or attempt(op, args, "timed"):
            if op == "register":
                cycle.remove((op, args))

    print("\n" + "\n".join(log))
    total = sum(kills.values())
    print(f"{total} kills ({kills['label']} at named points, {kills['timed']} timed), "
          f"{len(finished)} finished operations, {time.monotonic() - t_start:.0f}s")
    assert kills["timed"] >= TIMED_KILLS and total >= MIN_KILLS
    entries = list(AuditLog.for_home(home).entries())
    assert any(e.outcome == "started" for e in entries)  # the killed ones left a trace


def test_crash_point_is_inert_without_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from lineage.faults import crash_point

    monkeypatch.delenv("LINEAGE_CRASH_AT", raising=False)
    crash_point("register.after_store")  # returns
    monkeypatch.setenv("LINEAGE_CRASH_AT", "other.label,register.after_store:99")
    crash_point("register.after_store")  # not the 99th time: returns
