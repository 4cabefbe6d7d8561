"""A small in-memory stand-in for `lineage.engine.Lineage`, for the gRPC unit tests only.

It follows the engine's contract (signatures, errors with fields, request_id idempotency,
pagination by id) without models; scans can be made slow to test draining and concurrency.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np

from lineage.errors import AlreadyExistsError, InvalidArgumentError, UnknownModelError
from lineage.types import Candidate, Evidence, ModelRecord, ScanResult, SearchHit


class FakeEngine:
    def __init__(self, *, scan_delay: float = 0.0) -> None:
        self.scan_delay = scan_delay
        self.models: dict[str, ModelRecord] = {}
        self.scans: list[ScanResult] = []
        self.scan_threads: set[str] = set()
        self.scan_calls = 0
        self.active = self.max_active = 0  # scans running at once, now and at most
        self._lock = threading.Lock()
        self._next = 1

    def register(self, name: str, model: str, role: str, *, request_id: str | None = None,
                 progress: Any = None) -> ModelRecord:
        if role not in ("teacher", "reference"):
            raise InvalidArgumentError(f"bad role {role!r}", field="role")
        if not name or not name.replace("-", "").replace("_", "").isalnum():
            raise InvalidArgumentError("bad model name", field="name")
        with self._lock:
            for r in self.models.values():
                if request_id and r.identity.get("request_id") == request_id:
                    return r
            if name in self.models:
                raise AlreadyExistsError(f"{name!r} exists", field="name")
            rec = ModelRecord(self._next, name, role, model,
                              {"kind": "fake", "request_id": request_id or ""},
                              "default", "abc123", "2026-01-02T03:04:05+00:00")
            self._next += 1
            self.models[name] = rec
        return rec

    def get_model(self, name: str) -> ModelRecord:
        if name not in self.models:
            raise UnknownModelError(f"no model named {name!r}", field="name")
        return self.models[name]

    def list_models(self, *, after_id: int = 0, limit: int = 100, role: str | None = None
                    ) -> list[ModelRecord]:
        recs = [r for r in self.models.values()
                if r.id > after_id and (role is None or r.role == role)]
        return recs[:limit]

    def delete_model(self, name: str) -> None:
        self.get_model(name)
        del self.models[name]

    def scan(self, model: str, *, access: str = "full", max_queries: int | None = None,
             alpha: float = 0.01, teachers: Sequence[str] | None = None,
             request_id: str | None = None, progress: Any = None,
             early_stop: bool = True) -> ScanResult:
        if not 0.0 < alpha < 1.0:
            raise InvalidArgumentError("alpha must be in (0, 1)", field="alpha")
        with self._lock:
            self.scan_calls += 1
            for s in self.scans:
                if request_id and s.request_id == request_id:
                    return s
        self.scan_threads.add(threading.current_thread().name)
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        time.sleep(self.scan_delay)
        with self._lock:
            self.active -= 1
        names = list(teachers) if teachers else [r.name for r in self.models.values()
                                                 if r.role == "teacher"]
        for t in names:
            if t not in self.models:
                raise UnknownModelError(f"no registered teacher named {t!r}", field="teacher")
        cands = tuple(Candidate(t, 0.5 - 0.1 * i, 0.001 * (i + 1), "derived" if i == 0
                                else "not_derived", 0.001, 3.0, 0.01, 0.0, 1.0, 4,
                                (Evidence("p1", "Once upon", 0.25),))
                      for i, t in enumerate(names))
        res = ScanResult(uuid.uuid4().hex, model, access, 64, 512, alpha, "default",
                         "abc123", cands, "2026-01-02T03:04:05+00:00", {"kind": "fake"},
                         request_id, not early_stop)
        with self._lock:
            self.scans.append(res)
        return res

    def compare(self, model: str, teacher: str, **kw: Any) -> ScanResult:
        return self.scan(model, teachers=[teacher], **kw)

    def get_scan(self, scan_id: str) -> ScanResult:
        for s in self.scans:
            if s.id == scan_id:
                return s
        raise UnknownModelError(f"no scan with id {scan_id!r}", field="scan_id")

    def list_scans(self, *, after: str | None = None, limit: int = 100) -> list[ScanResult]:
        ids = [s.id for s in self.scans]
        start = ids.index(after) + 1 if after in ids else 0
        return self.scans[start:start + limit]

    def search(self, *, vector: np.ndarray | None = None, model: str | None = None,
               access: str = "full", k: int = 10) -> list[SearchHit]:
        if (vector is None) == (model is None):
            raise InvalidArgumentError("give exactly one of vector or model", field="vector")
        if not 1 <= k <= 1000:
            raise InvalidArgumentError("k must be in 1..1000", field="k")
        score = float(np.sum(vector)) if vector is not None else 0.5
        teachers = [r.name for r in self.models.values() if r.role == "teacher"]
        return [SearchHit(t, score - i) for i, t in enumerate(teachers)][:k]
