"""Batch scans behind the API: jobs in the store, runners in their own processes.

The gRPC server never runs a batch itself (and never imports Ray): CreateBatchScan writes the
job to the store and starts `python -m lineage.cli batch run --job ID --wait` as a detached
subprocess (its own session, so it outlives a server restart; log in HOME/batch-logs/ID.log).
The runner takes the home's batch lock, so at most one runs at a time and a second request
queues behind it. Get/List/Cancel read and write the same job rows.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lineage.batch import Job, JobStore, Manifest
from lineage.batch.manifest import manifest_from_dict
from lineage.batch.runner import BatchBusyError, home_lock

__all__ = ["BatchService", "spawn_runner"]

Spawner = Callable[[Path, str], Any]


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])  # the checkout holding lineage/ and server/
    pp = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = os.pathsep.join(x for x in (root, pp) if x)
    return env


def spawn_runner(home: Path, job_id: str) -> subprocess.Popen[bytes]:
    """Start a detached `lineage batch run --job ID --wait` for `home`."""
    logs = home / "batch-logs"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / f"{job_id}.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "lineage.cli", "--home", str(home), "batch", "run",
             "--job", job_id, "--wait"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            env=_child_env(), close_fds=True)


class BatchService:
    """Create, read and cancel batch jobs of one home; `spawn` starts a runner for a job."""

    def __init__(self, home: Path, jobs: JobStore, spawn: Spawner = spawn_runner) -> None:
        self.home = home
        self.jobs = jobs
        self.spawn = spawn
        self._children: dict[str, Any] = {}
        self._lock = threading.Lock()

    def manifest(self, suspects: list[dict[str, Any]], alpha: float | None) -> Manifest:
        d: dict[str, Any] = {"suspects": suspects}
        if alpha is not None:
            d["alpha"] = alpha
        return manifest_from_dict(d)

    def create(self, m: Manifest, request_id: str) -> Job:
        job, _ = self.jobs.create(m, request_id=request_id, source="api")
        self.ensure_runner(job)
        return self.jobs.get(job.id)

    def ensure_runner(self, job: Job) -> None:
        """Start a runner for an unfinished job unless this server already has one alive."""
        if job.final:
            return
        with self._lock:
            for jid, p in list(self._children.items()):  # reap finished runners
                if hasattr(p, "poll") and p.poll() is not None:
                    del self._children[jid]
            if job.id not in self._children:
                child = self.spawn(self.home, job.id)
                self._children[job.id] = child
                if hasattr(child, "wait"):  # reap it when it exits: no zombies
                    threading.Thread(target=child.wait, daemon=True,
                                     name=f"reap-{job.id}").start()

    def cancel(self, job_id: str) -> Job:
        job = self.jobs.request_cancel(job_id)
        if not job.final:
            try:  # no runner holds the lock: nobody will see the request, so cancel now
                with home_lock(self.home, "cancel"):
                    self.jobs.mark_cancelled(job_id)
            except BatchBusyError:
                pass  # the runner stops before its next suspect
        return self.jobs.get(job_id)
