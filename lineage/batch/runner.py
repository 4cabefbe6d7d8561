"""Running a batch job: one runner per home at a time, resumable at any point.

`run_job` takes the home's batch lock (`flock` on HOME/batch.lock, so a second runner, e.g. a
cron job started while last night's is still going, exits at once with `BatchBusyError`, or
waits with `wait=True`), marks the job running, and hands the pending items to an executor:

- `SequentialExecutor` (the default): one `Lineage` engine in this process, one suspect after
  the other;
- `lineage.batch.ray_exec.RayExecutor`: a pool of Ray actors (`--ray`).

Either way, each item is claimed, scanned with its deterministic request id
(`jobs.scan_request_id`), and marked done with its scan id. A runner killed at any point
leaves a state that the next run finishes: items still `running` go back to `pending`, and an
item whose scan was stored but not yet marked done finds its scan by request id instead of
querying the suspect again.

Fault injection for the crash tests: LINEAGE_BATCH_CRASH="STAGE:N" kills this process with
SIGKILL the N-th time it reaches STAGE, one of `claimed` (an item was claimed, nothing
queried yet), `scan_stored` (a scan was stored, its item not yet marked done), `item_done`
(an item was marked done) and `all_done` (every item finished, the job not yet marked).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from lineage.batch.jobs import Item, Job, JobStore, scan_request_id
from lineage.errors import InvalidArgumentError, LineageError

__all__ = [
    "BatchBusyError",
    "Executor",
    "SequentialExecutor",
    "crash_point",
    "home_lock",
    "lock_holder",
    "run_job",
    "scan_item",
]

CRASH_ENV = "LINEAGE_BATCH_CRASH"
LOCK_NAME = "batch.lock"
ProgressFn = Callable[[Job, Item | None], None]


class BatchBusyError(LineageError):
    """Another runner holds this home's batch lock."""

    reason = "BATCH_BUSY"


_reached: Counter[str] = Counter()


def crash_point(stage: str) -> None:
    """Die with SIGKILL here if LINEAGE_BATCH_CRASH asks for it (tests only)."""
    want = os.environ.get(CRASH_ENV, "")
    if not want:
        return
    name, _, n = want.partition(":")
    if name != stage:
        return
    _reached[stage] += 1
    if _reached[stage] >= int(n or 1):
        os.kill(os.getpid(), signal.SIGKILL)


# -- the lock ------------------------------------------------------------------------------

@contextlib.contextmanager
def home_lock(home: Path, job_id: str, *, wait: bool = False) -> Iterator[None]:
    """Hold HOME/batch.lock (flock, released by the kernel when this process dies)."""
    home.mkdir(parents=True, exist_ok=True)
    fd = os.open(home / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        for attempt in range(20):  # `lock_holder` probes hold the lock for a moment: retry
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
                break
            except BlockingIOError:
                if attempt == 19:
                    holder = lock_holder(home) or "another runner"
                    raise BatchBusyError(f"a batch runner is already working in {home} "
                                         f"({holder}); not starting a second one") from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"job {job_id} pid {os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor drops the flock


def lock_holder(home: Path) -> str | None:
    """'job J pid P' if a runner holds the lock now, else None."""
    p = home / LOCK_NAME
    if not p.exists():
        return None
    fd = os.open(p, os.O_RDWR)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


# -- one item ------------------------------------------------------------------------------

@contextlib.contextmanager
def _credentials(env_name: str | None) -> Iterator[None]:
    """Expose the key named by the manifest to the OpenAI backend for one scan.

    Scans run one at a time per process (both executors), so swapping the variable is safe.
    """
    if not env_name:
        yield
        return
    from lineage.backends.openai_http import ENV_API_KEY

    key = os.environ.get(env_name)
    if not key:
        raise InvalidArgumentError(f"environment variable {env_name} (api_key_env) is not set",
                                   field="api_key_env")
    old = os.environ.get(ENV_API_KEY)
    os.environ[ENV_API_KEY] = key
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(ENV_API_KEY, None)
        else:
            os.environ[ENV_API_KEY] = old


def scan_item(engine: Any, job_id: str, item: Item, alpha: float) -> dict[str, Any]:
    """Scan one item (or find its stored scan); returns {"scan_id", "queries"} or
    {"error": reason, "message": ...}. Never raises for a suspect's own failure."""
    s = item.spec
    rid = scan_request_id(job_id, item.idx)
    try:
        with _credentials(s.api_key_env):
            res = engine.scan(s.model, access=s.access, max_queries=s.max_queries, alpha=alpha,
                              request_id=rid)
    except Exception as e:  # noqa: BLE001 - one broken suspect must not stop the batch
        # A scan under this request id stored by someone else meanwhile (a worker of a dead
        # driver that Ray had not killed yet) makes ours collide: that scan is the result.
        prior = engine.store.scan_by_request(rid) if hasattr(engine, "store") else None
        if prior is not None:
            return {"scan_id": prior["scan_id"], "queries": prior["queries"]}
        if isinstance(e, LineageError):
            return {"error": e.reason, "message": e.message}
        traceback.print_exc()
        return {"error": "INTERNAL", "message": f"{type(e).__name__}: {e}"}
    return {"scan_id": res.id, "queries": res.queries}


# -- executors -----------------------------------------------------------------------------

class Executor(Protocol):
    def run(self, home: Path, job: Job, jobs: JobStore, progress: ProgressFn) -> None:
        """Scan the job's pending items, recording each in `jobs`; stop early on cancel."""


class SequentialExecutor:
    """In this process, one suspect after the other.

    `engine_factory(home)` makes the engine (default `Lineage`); tests pass a fake.
    """

    def __init__(self, engine_factory: Callable[[Path], Any] | None = None) -> None:
        self.engine_factory = engine_factory

    def run(self, home: Path, job: Job, jobs: JobStore, progress: ProgressFn) -> None:
        if self.engine_factory is None:
            from lineage.engine import Lineage

            eng = Lineage(home)
        else:
            eng = self.engine_factory(home)
        try:
            for item in jobs.items(job.id, states=("pending",)):
                if jobs.get(job.id).cancel_requested:
                    return
                if not jobs.claim(job.id, item.idx):
                    continue
                crash_point("claimed")
                progress(jobs.get(job.id), item)
                out = scan_item(eng, job.id, item, job.manifest.alpha)
                record(jobs, job.id, item.idx, out)
                progress(jobs.get(job.id), None)
        finally:
            if hasattr(eng, "close"):
                eng.close()


def record(jobs: JobStore, job_id: str, idx: int, out: dict[str, Any]) -> None:
    """Store one item's outcome (called by every executor, in the runner process)."""
    if "error" in out:
        jobs.fail_item(job_id, idx, reason=out["error"], message=out["message"])
        return
    crash_point("scan_stored")
    jobs.finish_item(job_id, idx, scan_id=out["scan_id"], queries=int(out["queries"]))
    crash_point("item_done")


# -- the job -------------------------------------------------------------------------------

def run_job(home: Path, job_id: str, *, executor: Executor | None = None, wait: bool = False,
            progress: ProgressFn | None = None) -> Job:
    """Run (or resume) job `job_id` to a final state; returns the job as it ends.

    A job already final is returned as is: finished work is never redone.
    """
    from lineage.store import Store

    prog = progress or (lambda *_: None)
    store = Store(home / "lineage.db")
    jobs = JobStore(store.engine)
    try:
        job = jobs.get(job_id)
        if job.final:
            return job
        with home_lock(home, job_id, wait=wait):
            job = jobs.get(job_id)  # re-read under the lock
            if job.final:
                return job
            if job.cancel_requested:
                jobs.mark_cancelled(job_id)
                return jobs.get(job_id)
            job = jobs.start(job_id)
            prog(job, None)
            # An executor that raises (e.g. Ray cannot start) leaves the job running, i.e.
            # interrupted: the next run resumes it.
            (executor or SequentialExecutor()).run(home, job, jobs, prog)
            crash_point("all_done")
            job = jobs.finish(job_id)
            prog(job, None)
            return job
    finally:
        store.close()
