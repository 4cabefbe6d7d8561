"""kill -9 during `lineage register`, `scan` and `models delete`, then restart: the database and
the FAISS index agree, nothing is half-written, and every operation that finished is there.

Real CLI subprocesses against the small zoo, killed two ways (seeded, so a failure replays):
- at named points via the fault-injection hook (`LINEAGE_CRASH_AT`, see `lineage.faults`):
  inside the store transaction, between the store commit and the index update, between the
  index's temp file and its rename, between a scan's result and its storage, inside the
  audit append;
- at random times (SIGKILL after a uniform delay over the operation's measured duration).
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
from lineage.integrity import check_home
from lineage.store import Store

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SEED = 20261129
MIN_KILLS = 20

# (operation, args, kill plan). A plan entry is a fault label, or "timed" (SIGKILL at a random
# time); after the plan the operation runs to completion.
WORKLOAD = [
    ("register", ("t1", "teacher"), ["store.add_model.in_tx", "timed", "register.after_store"]),
    ("register", ("r1", "reference"), ["timed", "index.save.before_replace"]),
    ("scan", ("i1",), ["scan.before_store", "timed", "scan.after_store", "timed", "timed"]),
    ("scan", ("t1-logit_kd",), ["timed", "scan.before_store", "audit.in_tx:2", "timed"]),
    ("delete", ("r1",), ["timed", "audit.in_tx:1", "delete.after_store"]),
    ("register", ("r2", "reference"), ["timed", "register.before_store"]),
    ("scan", ("t1-seq_kd",), ["timed", "timed"]),
]
#: Extension point for `lineage batch run` (built on another branch): add entries such as
#: ("batch", (manifest,), ["batch.<label>", "timed"]) with their command in `_command` and
#: their "finished" rule in `_finished`, once the batch package and its crash points exist.
BATCH_SCENARIOS: list[tuple[str, tuple[str, ...], list[str]]] = []

EST = {"register": 9.0, "scan": 5.0, "delete": 3.0}  # first guesses; replaced by measurements


def _command(home: Path, zoo: Path, op: str, args: tuple[str, ...]) -> list[str]:
    base = [sys.executable, "-m", "lineage.cli", "--home", str(home)]
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
    kills, log = 0, []
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
                else:
                    assert st.get_scan(key) is not None, f"after {after}: scan {key} lost"
        finally:
            st.close()

    for op, args, plan in WORKLOAD + BATCH_SCENARIOS:
        cmd = _command(home, small_zoo, op, args)
        if op == "delete":  # in flight: the model may or may not be there until it finishes
            finished[:] = [f for f in finished if f != ("model", args[0])]
        for step in plan + ["complete"]:
            if op in ("register", "delete") and (home / "lineage.db").exists():
                st = Store(home / "lineage.db")
                present = args[0] in {r.name for r in st.list_models()}
                st.close()
                if present == (op == "register"):  # killed after its commit: it is durable
                    log.append(f"{op} {args[0]}: already committed")
                    finished.append(("deleted" if op == "delete" else "model", args[0]))
                    break
            crash = None if step in ("timed", "complete") else step
            delay = rng.uniform(0.3, 1.1 * EST[op]) if step == "timed" else None
            rc, out, took = _run(cmd, crash, delay)
            if rc == 0:
                EST[op] = took
                res = json.loads(out)
                if op == "register":
                    finished.append(("model", res["name"]))
                elif op == "scan":
                    finished.append(("scan", res["scan_id"]))
                else:
                    finished.append(("deleted", res["deleted"]))
                log.append(f"{op} {args[0]}: finished in {took:.1f}s ({step})")
                check(f"{op} {args[0]} finished")
                break
            kills += 1
            log.append(f"{op} {args[0]}: killed at {step}"
                       + (f" after {took:.2f}s" if step == "timed" else ""))
            check(f"kill {kills} ({op} {args[0]} at {step})")
        else:
            raise AssertionError(f"{op} {args[0]} never finished")

    print("\n" + "\n".join(log))
    print(f"{kills} kills, {len(finished)} finished operations, "
          f"{time.monotonic() - t_start:.0f}s")
    assert kills >= MIN_KILLS
    names = {n for k, n in finished if k == "model"}
    assert names == {"t1", "r2"}
    entries = list(AuditLog.for_home(home).entries())
    assert any(e.outcome == "started" for e in entries)  # the killed ones left a trace


def test_crash_point_is_inert_without_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from lineage.faults import crash_point

    monkeypatch.delenv("LINEAGE_CRASH_AT", raising=False)
    crash_point("register.after_store")  # returns
    monkeypatch.setenv("LINEAGE_CRASH_AT", "other.label,register.after_store:99")
    crash_point("register.after_store")  # not the 99th time: returns
