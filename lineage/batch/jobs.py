"""Batch jobs in the store: one row per job, one row per (job, suspect) item.

The tables live in the same database as models and scans (SQLite in WAL mode by default), so a
job survives the process that runs it. Every state change is one short transaction:

    job:   pending -> running -> succeeded | failed | cancelled
    item:  pending -> running -> done | failed        (running -> pending again on resume)

Exactly one stored result per suspect comes from the scan's request id, which is a function of
(job, item) (`scan_request_id`): the store's unique index on request ids means a scan that was
stored just before a crash is found again, not repeated, when the item is retried. The item's
`done` mark is therefore allowed to lag the scan by one crash.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from lineage.batch.manifest import Manifest, SuspectSpec
from lineage.errors import AlreadyExistsError, UnknownModelError
from lineage.store import utcnow

__all__ = ["FINAL_STATES", "JOB_STATES", "Item", "Job", "JobStore", "scan_request_id"]

JOB_STATES = ("pending", "running", "succeeded", "failed", "cancelled")
FINAL_STATES = ("succeeded", "failed", "cancelled")

meta = sa.MetaData()
jobs = sa.Table(
    "batch_jobs", meta,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(64), nullable=False, unique=True),
    sa.Column("request_id", sa.String(128), nullable=False, unique=True),
    sa.Column("manifest", sa.Text, nullable=False),  # normalised JSON (Manifest.to_json)
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("source", sa.Text, nullable=False),  # manifest path, or "api"
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, default=False),
    sa.Column("runs", sa.Integer, nullable=False, default=0),  # times a runner started it
    sa.Column("error", sa.Text),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("started_at", sa.String(40)),
    sa.Column("finished_at", sa.String(40)),
)
items = sa.Table(
    "batch_items", meta,
    sa.Column("job_id", sa.String(64), sa.ForeignKey("batch_jobs.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("idx", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("spec", sa.Text, nullable=False),  # SuspectSpec JSON
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("scan_id", sa.String(64)),
    sa.Column("queries", sa.Integer),
    sa.Column("reason", sa.String(64)),
    sa.Column("message", sa.Text),
    sa.Column("started_at", sa.String(40)),
    sa.Column("finished_at", sa.String(40)),
)


def scan_request_id(job_id: str, idx: int) -> str:
    """The deterministic request id of item `idx`'s scan: at most one stored scan per item."""
    return f"batch:{job_id}:{idx}"


@dataclass(frozen=True)
class Item:
    job_id: str
    idx: int
    spec: SuspectSpec
    state: str  # pending | running | done | failed
    attempts: int
    scan_id: str | None
    queries: int | None
    reason: str | None
    message: str | None
    started_at: str | None
    finished_at: str | None

    def to_json(self) -> dict[str, Any]:
        return {"index": self.idx, **self.spec.to_json(), "state": self.state,
                "attempts": self.attempts, "scan_id": self.scan_id, "queries": self.queries,
                "reason": self.reason, "message": self.message,
                "started_at": self.started_at, "finished_at": self.finished_at}


@dataclass(frozen=True)
class Job:
    id: str
    request_id: str
    manifest: Manifest
    source: str
    state: str
    cancel_requested: bool
    runs: int
    error: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    total: int
    done: int
    failed: int

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    def to_json(self) -> dict[str, Any]:
        return {"job_id": self.id, "request_id": self.request_id, "state": self.state,
                "total": self.total, "done": self.done, "failed": self.failed,
                "cancel_requested": self.cancel_requested, "runs": self.runs,
                "error": self.error, "source": self.source, "digest": self.manifest.digest,
                "alpha": self.manifest.alpha, "created_at": self.created_at,
                "started_at": self.started_at, "finished_at": self.finished_at}


def _item(r: Any) -> Item:
    return Item(job_id=r.job_id, idx=r.idx, spec=SuspectSpec(**json.loads(r.spec)),
                state=r.state, attempts=r.attempts, scan_id=r.scan_id, queries=r.queries,
                reason=r.reason, message=r.message, started_at=r.started_at,
                finished_at=r.finished_at)


class JobStore:
    """Batch jobs over a SQLAlchemy engine (the `Store`'s, so one database holds everything)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        meta.create_all(engine)

    # -- jobs --------------------------------------------------------------------------------

    def create(self, manifest: Manifest, *, request_id: str, source: str) -> tuple[Job, bool]:
        """(job, created). The same request id returns the first job and creates nothing."""
        prior = self.by_request(request_id)
        if prior is not None:
            return prior, False
        jid = "b" + uuid.uuid4().hex[:15]
        now = utcnow()
        try:
            with self.engine.begin() as c:
                c.execute(jobs.insert().values(
                    id=jid, request_id=request_id, manifest=json.dumps(manifest.to_json()),
                    digest=manifest.digest, source=source, state="pending",
                    cancel_requested=False, runs=0, created_at=now))
                c.execute(items.insert(), [
                    {"job_id": jid, "idx": i, "name": s.name, "spec": json.dumps(s.to_json()),
                     "state": "pending", "attempts": 0}
                    for i, s in enumerate(manifest.suspects)])
        except sa.exc.IntegrityError:  # a concurrent create with the same request id won
            prior = self.by_request(request_id)
            if prior is None:
                raise AlreadyExistsError(f"batch job for request {request_id!r} exists",
                                         field="request_id") from None
            return prior, False
        return self.get(jid), True

    def _job(self, c: sa.Connection, row: Any) -> Job:
        counts: dict[str, int] = dict(c.execute(
            sa.select(items.c.state, sa.func.count()).where(items.c.job_id == row.id)
            .group_by(items.c.state)).all())
        return Job(id=row.id, request_id=row.request_id,
                   manifest=Manifest.from_json(json.loads(row.manifest)), source=row.source,
                   state=row.state, cancel_requested=bool(row.cancel_requested), runs=row.runs,
                   error=row.error, created_at=row.created_at, started_at=row.started_at,
                   finished_at=row.finished_at, total=sum(counts.values()),
                   done=counts.get("done", 0), failed=counts.get("failed", 0))

    def get(self, job_id: str) -> Job:
        with self.engine.connect() as c:
            row = c.execute(sa.select(jobs).where(jobs.c.id == job_id)).first()
            if row is None:
                raise UnknownModelError(f"no batch job {job_id!r}", field="job")
            return self._job(c, row)

    def by_request(self, request_id: str) -> Job | None:
        with self.engine.connect() as c:
            row = c.execute(sa.select(jobs).where(jobs.c.request_id == request_id)).first()
            return None if row is None else self._job(c, row)

    def list_jobs(self, *, after: str | None = None, limit: int = 100) -> list[Job]:
        """Jobs oldest first, after job id `after`."""
        with self.engine.connect() as c:
            q = sa.select(jobs).order_by(jobs.c.seq).limit(limit)
            if after is not None:
                seq = c.execute(sa.select(jobs.c.seq).where(jobs.c.id == after)).scalar()
                q = q.where(jobs.c.seq > (seq or 0))
            return [self._job(c, r) for r in c.execute(q).all()]

    def _set(self, job_id: str, **values: Any) -> None:
        with self.engine.begin() as c:
            c.execute(jobs.update().where(jobs.c.id == job_id).values(**values))

    def start(self, job_id: str) -> Job:
        """A runner (holding the lock) takes the job: items left running by a dead runner go
        back to pending; the job is running."""
        with self.engine.begin() as c:
            c.execute(items.update().where((items.c.job_id == job_id)
                                           & (items.c.state == "running"))
                      .values(state="pending"))
            row = c.execute(sa.select(jobs).where(jobs.c.id == job_id)).first()
            if row is None:
                raise UnknownModelError(f"no batch job {job_id!r}", field="job")
            c.execute(jobs.update().where(jobs.c.id == job_id).values(
                state="running", runs=row.runs + 1, started_at=row.started_at or utcnow()))
        return self.get(job_id)

    def finish(self, job_id: str) -> Job:
        """Mark the job final: cancelled if asked, else succeeded (failed items are listed)."""
        j = self.get(job_id)
        state = "cancelled" if j.cancel_requested and j.done + j.failed < j.total \
            else "succeeded"
        self._set(job_id, state=state, finished_at=utcnow())
        return self.get(job_id)

    def fail(self, job_id: str, error: str) -> None:
        self._set(job_id, state="failed", error=error, finished_at=utcnow())

    def request_cancel(self, job_id: str) -> Job:
        j = self.get(job_id)
        if not j.final:
            self._set(job_id, cancel_requested=True)
        return self.get(job_id)

    def mark_cancelled(self, job_id: str) -> None:
        """Cancel a job no runner is working on (the caller holds the lock)."""
        with self.engine.begin() as c:
            c.execute(jobs.update().where((jobs.c.id == job_id)
                                          & jobs.c.state.in_(("pending", "running")))
                      .values(state="cancelled", finished_at=utcnow()))
            c.execute(items.update().where((items.c.job_id == job_id)
                                           & (items.c.state == "running"))
                      .values(state="pending"))

    # -- items -------------------------------------------------------------------------------

    def items(self, job_id: str, *, states: tuple[str, ...] | None = None) -> list[Item]:
        q = sa.select(items).where(items.c.job_id == job_id).order_by(items.c.idx)
        if states is not None:
            q = q.where(items.c.state.in_(states))
        with self.engine.connect() as c:
            return [_item(r) for r in c.execute(q)]

    def claim(self, job_id: str, idx: int) -> bool:
        """pending -> running; False if the item is not pending (someone else has it)."""
        with self.engine.begin() as c:
            n = c.execute(items.update().where(
                (items.c.job_id == job_id) & (items.c.idx == idx)
                & (items.c.state == "pending")).values(
                state="running", attempts=items.c.attempts + 1, started_at=utcnow(),
                reason=None, message=None)).rowcount
        return n == 1

    def finish_item(self, job_id: str, idx: int, *, scan_id: str, queries: int) -> None:
        with self.engine.begin() as c:
            c.execute(items.update().where((items.c.job_id == job_id) & (items.c.idx == idx))
                      .values(state="done", scan_id=scan_id, queries=queries,
                              finished_at=utcnow()))

    def fail_item(self, job_id: str, idx: int, *, reason: str, message: str) -> None:
        with self.engine.begin() as c:
            c.execute(items.update().where((items.c.job_id == job_id) & (items.c.idx == idx))
                      .values(state="failed", reason=reason, message=message[:2000],
                              finished_at=utcnow()))

    def release(self, job_id: str, idx: int) -> None:
        """running -> pending (a cancelled or interrupted attempt)."""
        with self.engine.begin() as c:
            c.execute(items.update().where((items.c.job_id == job_id) & (items.c.idx == idx)
                                           & (items.c.state == "running"))
                      .values(state="pending"))

    def progress(self) -> dict[str, dict[str, int]]:
        """{"jobs": {state: n}, "items": {state: n}} over every job (for metrics)."""
        with self.engine.connect() as c:
            j: dict[str, int] = dict(c.execute(sa.select(jobs.c.state, sa.func.count())
                               .group_by(jobs.c.state)).all())
            i: dict[str, int] = dict(c.execute(sa.select(items.c.state, sa.func.count())
                               .group_by(items.c.state)).all())
        return {"jobs": j, "items": i}
