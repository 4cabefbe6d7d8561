"""Consistency checks of a home directory, for crash-safety tests and for operators.

`check_home(home)` opens the home the way every command does (which reconciles the FAISS index
from the store) and returns a list of problems, empty when:
- SQLite's own `integrity_check` passes;
- the index holds exactly the store's model ids, and each vector equals the signature the
  store's fingerprints give (no stale or half-written vector);
- every model has a complete fingerprint (finite distribution over all probes, summing to 1,
  samples for every probe) and a score row for every ordered pair of models (no half-written
  registration);
- every stored scan parses and names its id;
- the audit log's hash chain is intact.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import numpy as np

__all__ = ["check_home"]


def check_home(home: str | Path) -> list[str]:
    from lineage.audit import AuditLog
    from lineage.engine import Lineage

    home = Path(home)
    problems: list[str] = []
    db = home / "lineage.db"
    if db.exists():
        with closing(sqlite3.connect(db)) as c:
            res = c.execute("PRAGMA integrity_check").fetchone()[0]
            if res != "ok":
                problems.append(f"sqlite integrity_check: {res}")
    eng = Lineage(home)
    try:
        recs = eng.store.list_models()
        ids = sorted(r.id for r in recs)
        in_index = sorted(int(i) for i in eng.index.ids())
        if in_index != ids:
            problems.append(f"index ids {in_index} != store ids {ids}")
        P, B = len(eng.suite.probes), len(eng.suite.buckets) + 1
        for r in recs:
            try:
                d, samples = eng.store.fingerprint(r.id)
            except Exception as e:  # noqa: BLE001 - report, keep checking
                problems.append(f"model {r.name}: no fingerprint ({e})")
                continue
            if d.shape != (P, B) or not np.isfinite(d).all() or \
                    not np.allclose(d.sum(1), 1.0, atol=1e-6):
                problems.append(f"model {r.name}: malformed distribution {d.shape}")
            if len(samples) != P or any(len(row) == 0 for row in samples):
                problems.append(f"model {r.name}: samples missing")
        sc = eng.store.score_matrix()
        for a in recs:
            for b in recs:
                if (a.id, b.id) not in sc:
                    problems.append(f"score row ({a.name} scores {b.name}) missing")
        if recs and in_index == ids:
            want = eng._signature_vectors(recs)
            for r, v in zip(recs, want):
                got = eng.index.reconstruct(r.id)
                if not np.allclose(got, v, atol=1e-5):
                    problems.append(f"index vector of {r.name} differs from its fingerprint")
        for s in eng.store.list_scans(limit=1_000_000):
            if not isinstance(s, dict) or not s.get("scan_id"):
                problems.append(f"scan row without an id: {json.dumps(s)[:100]}")
    finally:
        eng.close()
    n, bad = AuditLog.for_home(home).verify()
    if bad is not None:
        problems.append(str(bad))
    return problems
