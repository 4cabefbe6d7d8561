"""Batch scans: a manifest of suspects, a resumable job in the store, sequential or Ray runs.

    from lineage.batch import load_manifest, create_job, run_job
    m = load_manifest("nightly.yaml")
    job, created = create_job(home, m, request_id="nightly-2026-11-29", source="nightly.yaml")
    run_job(home, job.id)                          # in-process, one suspect after the other
    run_job(home, job.id, executor=RayExecutor())  # fanned out over Ray

Modules: `manifest` (parsing and validation), `jobs` (job and item rows), `runner` (the lock,
the sequential executor, resuming), `ray_exec` (the Ray executor), `diff` (`--since`).
"""

from __future__ import annotations

from pathlib import Path

from lineage.batch.jobs import FINAL_STATES, Item, Job, JobStore, scan_request_id
from lineage.batch.manifest import (
    Manifest,
    ManifestError,
    SuspectSpec,
    load_manifest,
    parse_manifest,
)
from lineage.batch.runner import BatchBusyError, SequentialExecutor, lock_holder, run_job

__all__ = [
    "FINAL_STATES", "BatchBusyError", "Item", "Job", "JobStore", "Manifest", "ManifestError",
    "SequentialExecutor", "SuspectSpec", "create_job", "default_request_id", "job_store",
    "load_manifest", "lock_holder", "parse_manifest", "run_job", "scan_request_id",
]


def default_request_id(m: Manifest) -> str:
    """Without --request-id, the same manifest content names the same job."""
    return f"manifest-{m.digest[:24]}"


def job_store(home: Path) -> JobStore:
    from lineage.store import Store

    return JobStore(Store(home / "lineage.db").engine)


def create_job(home: Path, m: Manifest, *, request_id: str | None, source: str
               ) -> tuple[Job, bool]:
    return job_store(home).create(m, request_id=request_id or default_request_id(m),
                                  source=source)
