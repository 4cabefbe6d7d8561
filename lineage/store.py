"""The store: SQLAlchemy over SQLite (WAL) by default. Models, their fingerprints, scans.

Tables:
- `models`: one row per registered teacher or reference.
- `fingerprints`: per model, its exact bucket distributions and its own samples.
- `scores`: log-likelihoods of one model's samples under another (scorer, generator).
- `tempered_scores`: the same under the scorer's logits divided by a temperature (in
  thousandths), for the divergence statistic (`verdict`). Homes made before this table
  existed get their rows filled in by the first scan that needs them (`Lineage`).
- `sharp_texts`: a teacher's own samples at a temperature below 1 (in thousandths), and
  `sharp_text_scores`: their log-likelihoods under the references, for the teacher_text
  statistic (`verdict`). `Lineage` stores both at registration, or the first scan that
  needs them fills in what is missing.
- `scans`: finished scan results as JSON.

Arrays are stored as `.npy` bytes (never pickles). The FAISS index is derived data: the store
is the source of truth and the index is rebuilt from it whenever the two disagree.
"""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import sqlalchemy as sa
from sqlalchemy import event

from lineage.errors import AlreadyExistsError, StoreError, UnknownModelError
from lineage.faults import crash_point
from lineage.types import ModelRecord

__all__ = ["Store", "encode_array", "decode_array", "utcnow"]

meta = sa.MetaData()

models = sa.Table(
    "models", meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(256), nullable=False, unique=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("uri", sa.Text, nullable=False),
    sa.Column("identity", sa.Text, nullable=False),
    sa.Column("suite_name", sa.String(256), nullable=False),
    sa.Column("suite_hash", sa.String(64), nullable=False),
    sa.Column("request_id", sa.String(128), unique=True),
    sa.Column("created_at", sa.String(40), nullable=False),
)
fingerprints = sa.Table(
    "fingerprints", meta,
    sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("dist", sa.LargeBinary, nullable=False),
    sa.Column("samples", sa.Text, nullable=False),
)


def _pair_columns() -> list[sa.Column]:
    """(scorer_id, generator_id): the key of a score row, both ends deleted with their model."""
    return [sa.Column(c, sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"),
                      primary_key=True) for c in ("scorer_id", "generator_id")]


scores = sa.Table(
    "scores", meta, *_pair_columns(),
    sa.Column("logp", sa.LargeBinary, nullable=False),
)
tempered_scores = sa.Table(
    "tempered_scores", meta, *_pair_columns(),
    sa.Column("tau_milli", sa.Integer, primary_key=True),
    sa.Column("logp", sa.LargeBinary, nullable=False),
)
sharp_texts = sa.Table(
    "sharp_texts", meta,
    sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("tau_milli", sa.Integer, primary_key=True),
    sa.Column("samples", sa.Text, nullable=False),
)
sharp_text_scores = sa.Table(
    "sharp_text_scores", meta, *_pair_columns(),
    sa.Column("tau_milli", sa.Integer, primary_key=True),
    sa.Column("logp", sa.LargeBinary, nullable=False),
)
scans = sa.Table(
    "scans", meta,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(64), nullable=False, unique=True),
    sa.Column("request_id", sa.String(128), unique=True),
    sa.Column("suspect", sa.Text, nullable=False),
    sa.Column("result", sa.Text, nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
)


def utcnow() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def encode_array(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
    return buf.getvalue()


def decode_array(b: bytes) -> np.ndarray:
    return np.load(io.BytesIO(b), allow_pickle=False)


def _milli(tau: float) -> int:
    return round(float(tau) * 1000)


def _record(row: Any) -> ModelRecord:
    return ModelRecord(
        id=row.id, name=row.name, role=row.role, uri=row.uri,
        identity=json.loads(row.identity), suite_name=row.suite_name,
        suite_hash=row.suite_hash, created_at=row.created_at,
    )


class Store:
    """All persistent state except the (derived) FAISS index."""

    def __init__(self, url_or_path: str | Path) -> None:
        url = str(url_or_path)
        if "://" not in url:
            Path(url).parent.mkdir(parents=True, exist_ok=True)
            url = f"sqlite:///{url}"
        self.engine = sa.create_engine(url, future=True)
        if self.engine.dialect.name == "sqlite":
            @event.listens_for(self.engine, "connect")
            def _pragmas(dbapi_conn: Any, _: Any) -> None:
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.execute("PRAGMA busy_timeout=30000")
                cur.close()
        meta.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    # -- models ----------------------------------------------------------------------------

    def add_model(
        self, *, name: str, role: str, uri: str, identity: dict[str, str], suite_name: str,
        suite_hash: str, dist: np.ndarray, samples: list[list[str]],
        score_rows: dict[tuple[str, str], np.ndarray], request_id: str | None = None,
        tempered_rows: dict[tuple[str, str, float], np.ndarray] | None = None,
    ) -> ModelRecord:
        """Insert a model, its fingerprint and its new score rows in one transaction.

        `score_rows` keys are (scorer name, generator name); the new model's name may appear.
        `tempered_rows` keys are (scorer name, generator name, temperature).
        """
        try:
            with self.engine.begin() as c:
                if c.execute(sa.select(models.c.id).where(models.c.name == name)).first():
                    raise AlreadyExistsError(f"a model named {name!r} is already registered",
                                             field="name")
                mid = c.execute(models.insert().values(
                    name=name, role=role, uri=uri, identity=json.dumps(identity),
                    suite_name=suite_name, suite_hash=suite_hash, request_id=request_id,
                    created_at=utcnow(),
                )).inserted_primary_key[0]
                c.execute(fingerprints.insert().values(
                    model_id=mid, dist=encode_array(dist), samples=json.dumps(samples)))
                ids = {r.name: r.id for r in c.execute(sa.select(models.c.id, models.c.name))}
                for (scorer, gen), arr in score_rows.items():
                    c.execute(scores.insert().values(
                        scorer_id=ids[scorer], generator_id=ids[gen], logp=encode_array(arr)))
                for (scorer, gen, tau), arr in (tempered_rows or {}).items():
                    c.execute(tempered_scores.insert().values(
                        scorer_id=ids[scorer], generator_id=ids[gen], tau_milli=_milli(tau),
                        logp=encode_array(arr)))
                crash_point("store.add_model.in_tx")
        except sa.exc.IntegrityError as e:
            raise AlreadyExistsError(f"model {name!r} or its request id exists: {e.orig}") from None
        return self.get_model(name)

    def get_model(self, name: str) -> ModelRecord:
        with self.engine.connect() as c:
            row = c.execute(sa.select(models).where(models.c.name == name)).first()
        if row is None:
            raise UnknownModelError(f"no registered model named {name!r}", field="name")
        return _record(row)

    def model_by_request(self, request_id: str) -> ModelRecord | None:
        with self.engine.connect() as c:
            row = c.execute(sa.select(models).where(models.c.request_id == request_id)).first()
        return None if row is None else _record(row)

    def list_models(self, *, after_id: int = 0, limit: int | None = None,
                    role: str | None = None) -> list[ModelRecord]:
        q = sa.select(models).where(models.c.id > after_id).order_by(models.c.id)
        if role is not None:
            q = q.where(models.c.role == role)
        if limit is not None:
            q = q.limit(limit)
        with self.engine.connect() as c:
            return [_record(r) for r in c.execute(q)]

    def names(self, role: str | None = None) -> dict[int, str]:
        """{model id: name}, optionally for one role; lighter than `list_models`."""
        q = sa.select(models.c.id, models.c.name)
        if role is not None:
            q = q.where(models.c.role == role)
        with self.engine.connect() as c:
            return {r.id: r.name for r in c.execute(q)}

    def delete_model(self, name: str) -> ModelRecord:
        rec = self.get_model(name)
        with self.engine.begin() as c:
            c.execute(scores.delete().where(
                (scores.c.scorer_id == rec.id) | (scores.c.generator_id == rec.id)))
            for tab in (tempered_scores, sharp_text_scores):
                c.execute(tab.delete().where(
                    (tab.c.scorer_id == rec.id) | (tab.c.generator_id == rec.id)))
            c.execute(sharp_texts.delete().where(sharp_texts.c.model_id == rec.id))
            c.execute(fingerprints.delete().where(fingerprints.c.model_id == rec.id))
            c.execute(models.delete().where(models.c.id == rec.id))
        return rec

    def fingerprint(self, model_id: int) -> tuple[np.ndarray, list[list[str]]]:
        with self.engine.connect() as c:
            row = c.execute(sa.select(fingerprints).where(
                fingerprints.c.model_id == model_id)).first()
        if row is None:
            raise StoreError(f"model id {model_id} has no fingerprint")
        return decode_array(row.dist), json.loads(row.samples)

    def score_matrix(self) -> dict[tuple[int, int], np.ndarray]:
        """All stored (scorer_id, generator_id) -> [P, n] float32 log-likelihoods."""
        with self.engine.connect() as c:
            return {(r.scorer_id, r.generator_id): decode_array(r.logp)
                    for r in c.execute(sa.select(scores))}

    def tempered_matrix(self, tau: float) -> dict[tuple[int, int], np.ndarray]:
        """Stored (scorer_id, generator_id) -> [P, n] float32 log-likelihoods at `tau`."""
        return self._pair_matrix(tempered_scores, tau)

    def add_tempered(self, rows: dict[tuple[int, int], np.ndarray], tau: float) -> None:
        """Store tempered rows for existing models in one transaction; rows already there
        (a concurrent scan filled them) and rows of models deleted meanwhile are skipped."""
        self._add_pairs(tempered_scores, rows, tau)

    def sharp_text_matrix(self, tau: float) -> dict[tuple[int, int], np.ndarray]:
        """Stored (scorer_id, teacher_id) -> [P, n] float32 log-likelihoods of the teacher's
        samples at `tau` under the scorer (at temperature 1)."""
        return self._pair_matrix(sharp_text_scores, tau)

    def add_sharp_text_scores(self, rows: dict[tuple[int, int], np.ndarray], tau: float
                              ) -> None:
        """Like `add_tempered`, for `sharp_text_matrix`."""
        self._add_pairs(sharp_text_scores, rows, tau)

    def sharp_texts(self, tau: float) -> dict[int, list[list[str]]]:
        """{model id: its samples [P][n] at `tau`}."""
        q = sa.select(sharp_texts).where(sharp_texts.c.tau_milli == _milli(tau))
        with self.engine.connect() as c:
            return {r.model_id: json.loads(r.samples) for r in c.execute(q)}

    def add_sharp_texts(self, texts: dict[int, list[list[str]]], tau: float) -> None:
        """Store models' samples at `tau`; models that have them already, or were deleted
        meanwhile, are skipped."""
        if not texts:
            return
        with self.engine.begin() as c:
            alive = {r.id for r in c.execute(sa.select(models.c.id))}
            have = {r.model_id for r in c.execute(
                sa.select(sharp_texts.c.model_id).where(sharp_texts.c.tau_milli == _milli(tau)))}
            for mid, smp in texts.items():
                if mid in alive and mid not in have:
                    c.execute(sharp_texts.insert().values(
                        model_id=mid, tau_milli=_milli(tau), samples=json.dumps(smp)))

    def _pair_matrix(self, table: sa.Table, tau: float) -> dict[tuple[int, int], np.ndarray]:
        q = sa.select(table).where(table.c.tau_milli == _milli(tau))
        with self.engine.connect() as c:
            return {(r.scorer_id, r.generator_id): decode_array(r.logp) for r in c.execute(q)}

    def _add_pairs(self, table: sa.Table, rows: dict[tuple[int, int], np.ndarray], tau: float
                   ) -> None:
        if not rows:
            return
        with self.engine.begin() as c:
            alive = {r.id for r in c.execute(sa.select(models.c.id))}
            have = {(r.scorer_id, r.generator_id) for r in c.execute(
                sa.select(table.c.scorer_id, table.c.generator_id)
                .where(table.c.tau_milli == _milli(tau)))}
            for (sid, gid), arr in rows.items():
                if (sid, gid) in have or sid not in alive or gid not in alive:
                    continue
                c.execute(table.insert().values(
                    scorer_id=sid, generator_id=gid, tau_milli=_milli(tau),
                    logp=encode_array(arr)))

    # -- scans -----------------------------------------------------------------------------

    def add_scan(self, scan_id: str, suspect: str, result: dict[str, Any],
                 request_id: str | None = None) -> None:
        with self.engine.begin() as c:
            c.execute(scans.insert().values(
                id=scan_id, request_id=request_id, suspect=suspect,
                result=json.dumps(result), created_at=result.get("created_at", utcnow())))

    def get_scan(self, scan_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as c:
            row = c.execute(sa.select(scans.c.result).where(scans.c.id == scan_id)).first()
        return None if row is None else json.loads(row.result)

    def scan_by_request(self, request_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as c:
            row = c.execute(sa.select(scans.c.result).where(
                scans.c.request_id == request_id)).first()
        return None if row is None else json.loads(row.result)

    def list_scans(self, *, after: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        q = sa.select(scans.c.result, scans.c.seq).order_by(scans.c.seq).limit(limit)
        with self.engine.connect() as c:
            if after is not None:
                seq = c.execute(sa.select(scans.c.seq).where(scans.c.id == after)).scalar()
                q = q.where(scans.c.seq > (seq or 0))
            return [json.loads(r.result) for r in c.execute(q)]

    def suites(self) -> dict[str, str]:
        """{suite hash: suite name} over the registered models."""
        q = sa.select(models.c.suite_hash, models.c.suite_name).distinct()
        with self.engine.connect() as c:
            return {r.suite_hash: r.suite_name for r in c.execute(q)}

    def iter_model_ids(self) -> Iterator[int]:
        with self.engine.connect() as c:
            yield from (r.id for r in c.execute(sa.select(models.c.id)))
