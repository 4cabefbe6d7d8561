"""The audit log: an append-only, hash-chained record of every mutating call.

Lives in its own SQLite file (`audit.db` in the home), apart from the store, so that the lead's
store schema and the audit trail change independently and an audit append never waits on a long
store transaction. Two rows per call: `started` before it runs (so that a call cut short by a
crash still shows), and its outcome when it ends (success or failure); calls refused before
they start (authentication, role) get only the outcome row:

    seq, ts, actor, action, target, outcome, detail (JSON), prev, hash

`hash` = sha256 over the canonical JSON (sorted keys, no spaces, UTF-8) of every other field,
`prev` included, so each entry commits to the whole chain before it. `verify` recomputes the
chain and names the first bad entry: an edited entry (its hash no longer matches), a deleted
one (a gap in `seq`, or a `prev` that is not the previous entry's hash), or a forged tail.
Deleting the *last* entries leaves a valid shorter chain; `head()` gives (seq, hash) to keep
elsewhere, and `verify(anchor=...)` checks that the chain still contains it.

Extension point for `lineage batch run` (another branch): wrap the run in
`timed(AuditLog.for_home(home), actor=cli_actor(), action="batch.run", target=MANIFEST)`, as
`lineage.cli` does for register; the server already audits CreateBatchScan (`server.guard`).

Appends are serialised by SQLite's write lock (`BEGIN IMMEDIATE`), so several processes (the
server, CLI commands, batch workers) may append at once; triggers refuse UPDATE and DELETE, which
stops accidents, while the hash chain catches whoever removes the triggers.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lineage.errors import StoreError
from lineage.faults import crash_point

__all__ = ["AuditLog", "AuditEntry", "AuditProblem", "GENESIS", "cli_actor", "entry_hash", "timed"]

GENESIS = "0" * 64
MAX_FIELD = 512  # characters kept of actor, action, target, outcome

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    seq     INTEGER PRIMARY KEY,
    ts      TEXT NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail  TEXT NOT NULL,
    prev    TEXT NOT NULL,
    hash    TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    ts: str
    actor: str
    action: str
    target: str
    outcome: str
    detail: dict[str, Any]
    prev: str
    hash: str

    def body(self) -> dict[str, Any]:
        """The fields the hash covers (all but `hash`)."""
        return {"seq": self.seq, "ts": self.ts, "actor": self.actor, "action": self.action,
                "target": self.target, "outcome": self.outcome, "detail": self.detail,
                "prev": self.prev}

    def to_json(self) -> dict[str, Any]:
        return {**self.body(), "hash": self.hash}


@dataclass(frozen=True)
class AuditProblem:
    """The first entry where the chain breaks; `seq` is the entry named to the user."""

    seq: int
    why: str

    def __str__(self) -> str:
        return f"audit entry {self.seq}: {self.why}"


def entry_hash(body: dict[str, Any]) -> str:
    canon = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                       allow_nan=False)
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()


def cli_actor() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        user = "unknown"
    return f"cli:{user}"


def _clip(s: object) -> str:
    return str(s)[:MAX_FIELD]


class AuditLog:
    """One audit file; cheap to open, safe to share between threads and processes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db:
            db.executescript(_SCHEMA)

    @classmethod
    def for_home(cls, home: str | Path) -> "AuditLog":
        return cls(Path(home).expanduser() / "audit.db")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # an entry that was acknowledged survives a crash
        return db

    def append(self, *, actor: str, action: str, target: str = "", outcome: str = "ok",
               detail: dict[str, Any] | None = None) -> AuditEntry:
        """Add one entry at the end of the chain (atomically; concurrent writers queue)."""
        detail = json.loads(json.dumps(detail or {}, default=str, allow_nan=False))
        ts = datetime.now(timezone.utc).isoformat(timespec="microseconds")
        try:
            with closing(self._connect()) as db:
                db.execute("BEGIN IMMEDIATE")
                try:
                    row = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"
                                     ).fetchone()
                    seq, prev = (row[0] + 1, row[1]) if row else (1, GENESIS)
                    e = AuditEntry(seq, ts, _clip(actor), _clip(action), _clip(target),
                                   _clip(outcome), detail, prev, "")
                    h = entry_hash(e.body())
                    db.execute("INSERT INTO audit VALUES (?,?,?,?,?,?,?,?,?)",
                               (seq, ts, e.actor, e.action, e.target, e.outcome,
                                json.dumps(detail, sort_keys=True), prev, h))
                    crash_point("audit.in_tx")
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
        except sqlite3.Error as err:
            raise StoreError(f"cannot append to the audit log {self.path}: {err}") from None
        return AuditEntry(**{**e.body(), "hash": h})

    def entries(self, *, after: int = 0, limit: int | None = None) -> Iterator[AuditEntry]:
        q = "SELECT seq, ts, actor, action, target, outcome, detail, prev, hash FROM audit " \
            "WHERE seq > ? ORDER BY seq" + (f" LIMIT {int(limit)}" if limit else "")
        with closing(self._connect()) as db:
            for r in db.execute(q, (after,)):
                try:
                    detail = json.loads(r[6])
                except ValueError:
                    detail = {"__unparseable__": r[6]}
                yield AuditEntry(r[0], r[1], r[2], r[3], r[4], r[5], detail, r[7], r[8])

    def head(self) -> tuple[int, str]:
        """(seq, hash) of the last entry; (0, GENESIS) when empty. Keep it somewhere else."""
        with closing(self._connect()) as db:
            row = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        return (row[0], row[1]) if row else (0, GENESIS)

    def verify(self, anchor: tuple[int, str] | None = None) -> tuple[int, AuditProblem | None]:
        """Walk the chain: (entries checked, the first problem or None).

        `anchor` (seq, hash), from an earlier `head()`, must still be in the chain: this is what
        catches a truncated tail.
        """
        prev, expect, n = GENESIS, 1, 0
        anchored = anchor is None or anchor[0] == 0
        for e in self.entries():
            if e.seq != expect:
                return n, AuditProblem(expect, f"missing (deleted?): the next entry is {e.seq}")
            if e.prev != prev:
                return n, AuditProblem(e.seq, "its prev hash does not match the entry before "
                                              "it (an entry before it was deleted or replaced)")
            if entry_hash(e.body()) != e.hash:
                return n, AuditProblem(e.seq, "edited: its content does not match its hash")
            if anchor is not None and e.seq == anchor[0]:
                if e.hash != anchor[1]:
                    return n, AuditProblem(e.seq, "differs from the anchor hash")
                anchored = True
            prev, expect, n = e.hash, expect + 1, n + 1
        if not anchored:
            return n, AuditProblem(anchor[0] if anchor else 0,  # type: ignore[index]
                                   f"missing: the anchor entry is past the end ({n} entries; "
                                   "the tail was deleted)")
        return n, None


def timed(log: AuditLog | None, *, actor: str, action: str, target: str,
          detail: dict[str, Any] | None = None) -> "_Timed":
    """`with timed(log, ...) as t:` appends a `started` entry, then one with the outcome
    (`ok` or `error:REASON`) when the block ends; a `started` without an outcome is a call cut
    short by a crash."""
    return _Timed(log, actor, action, target, dict(detail or {}))



class _Timed:
    def __init__(self, log: AuditLog | None, actor: str, action: str, target: str,
                 detail: dict[str, Any]) -> None:
        self.log, self.actor, self.action, self.target = log, actor, action, target
        self.detail = detail
        self.t0 = 0.0

    def __enter__(self) -> "_Timed":
        self.t0 = time.monotonic()
        if self.log is not None:  # so that a mutation cut short by a crash still shows
            self.log.append(actor=self.actor, action=self.action, target=self.target,
                            outcome="started", detail=self.detail)
        return self

    def __exit__(self, et: Any, ev: Any, tb: Any) -> None:
        if self.log is None:
            return
        outcome = "ok" if et is None else f"error:{getattr(ev, 'reason', et.__name__)}"
        if ev is not None and getattr(ev, "message", None):
            self.detail["error"] = str(ev.message)[:300]
        self.detail["seconds"] = round(time.monotonic() - self.t0, 3)
        self.log.append(actor=self.actor, action=self.action, target=self.target,
                        outcome=outcome, detail=self.detail)
