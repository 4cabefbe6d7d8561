"""`--since JOB`: what changed between two batch jobs.

Suspects are matched by name. A change is reported for a (suspect, teacher) pair whose verdict
differs from the earlier job's, and every `derived` verdict that is new (the pair was not
`derived` before, or the suspect or teacher is new) is flagged `new_positive`. Unchanged pairs
are left out: a nightly job prints nothing when nothing happened.
"""

from __future__ import annotations

from typing import Any

from lineage.batch.jobs import JobStore

__all__ = ["diff_jobs", "job_verdicts"]


def job_verdicts(jobs: JobStore, store: Any, job_id: str) -> dict[tuple[str, str], dict[str, Any]]:
    """{(suspect name, teacher): {"verdict", "p_value", "scan_id"}} for a job's done items."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for it in jobs.items(job_id, states=("done",)):
        scan = store.get_scan(it.scan_id) if it.scan_id else None
        for c in (scan or {}).get("candidates", []):
            out[(it.spec.name, c["teacher"])] = {"verdict": c["verdict"],
                                                 "p_value": c["p_value"],
                                                 "scan_id": it.scan_id}
    return out


def diff_jobs(jobs: JobStore, store: Any, since: str, job_id: str) -> dict[str, Any]:
    jobs.get(since)  # UnknownModelError if absent
    before = job_verdicts(jobs, store, since)
    after = job_verdicts(jobs, store, job_id)
    changes = []
    for key in sorted(after):
        now, then = after[key], before.get(key)
        was = then["verdict"] if then else None
        if was == now["verdict"]:
            continue
        changes.append({"suspect": key[0], "teacher": key[1], "before": was,
                        "after": now["verdict"], "p_value": now["p_value"],
                        "scan_id": now["scan_id"],
                        "new_positive": now["verdict"] == "derived"})
    # a changed verdict that is not derived now is only reported when there was a verdict
    changes = [c for c in changes if c["before"] is not None or c["new_positive"]]
    return {"since": since, "job_id": job_id, "changes": changes,
            "new_positives": sum(c["new_positive"] for c in changes)}
