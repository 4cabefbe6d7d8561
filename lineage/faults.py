"""Fault injection for crash-safety tests: die with SIGKILL at a named point.

    LINEAGE_CRASH_AT=register.after_store lineage register t1 DIR --role teacher   # killed
    LINEAGE_CRASH_AT=index.save.before_replace:2 ...     # the 2nd time the point is reached

`crash_point(label)` does nothing unless `$LINEAGE_CRASH_AT` names `label` (comma-separated
labels allowed). SIGKILL, not an exception: no `finally`, no atexit, no flush, exactly what a
power cut or the OOM killer does to the process. Labels in use (grep `crash_point(`):

    store.add_model.in_tx       inside the store transaction that adds a model
    register.before_store       fingerprint computed, nothing written
    register.after_store        model committed to the store, index not yet updated
    index.save.before_replace   new index written to its temp file, not yet renamed
    delete.after_store          model deleted from the store, index not yet updated
    scan.before_store           scan finished, result not yet stored
    scan.after_store            result stored, not yet returned
    audit.in_tx                 inside the audit append transaction

Extension point for `lineage batch` (another branch): put `crash_point("batch.<step>")` at its
commit boundaries (job claimed, suspect scanned, result stored, job finished) and add the
scenario to `tests/test_crash_safety.py::BATCH_SCENARIOS`.
"""

from __future__ import annotations

import os
import signal
import threading

__all__ = ["ENV", "crash_point"]

ENV = "LINEAGE_CRASH_AT"
_counts: dict[str, int] = {}
_lock = threading.Lock()


def crash_point(label: str) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    with _lock:
        n = _counts[label] = _counts.get(label, 0) + 1
    for item in spec.split(","):
        name, _, nth = item.strip().partition(":")
        if name == label and (not nth or (nth.isdigit() and int(nth) == n)):
            os.kill(os.getpid(), signal.SIGKILL)
