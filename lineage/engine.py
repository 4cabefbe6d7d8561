"""The library facade: register models, scan suspects, search and compare.

`Lineage` is what the CLI, the gRPC service and the batch runner call. It owns the store, the
index and a cache of loaded registered models; the science lives in `signatures` and `verdict`.

Registering a model (full access, we own it) stores: its exact first-word distributions, its
own samples (`n_reg` per probe), and the log-likelihood of every registered model's samples
under every other registered model, at temperature 1 and sharpened (SHARP_TEMPERATURE).
Once two teachers and two references are registered, each teacher's own samples at
SHARP_TEMPERATURE and every reference's log-likelihood of them are stored too (teacher_text;
a scan fills in whatever a home registered before them lacks).
Scanning a suspect queries it once per plan, scores its
samples under every registered model, and tests it against every teacher.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from lineage import __version__, stats
from lineage.backends import AccessMode, ModelBackend, ModelView, Sample, open_model, view
from lineage.backends.base import offers_echo
from lineage.errors import (
    AlreadyExistsError,
    InvalidArgumentError,
    SuiteMismatchError,
    UnknownModelError,
)
from lineage.faults import crash_point
from lineage.index import SignatureIndex
from lineage.signatures import exact_distribution, histogram
from lineage.store import Store, utcnow
from lineage.suites import Suite, default_suite
from lineage.types import ROLES, Candidate, Evidence, ModelRecord, ScanResult, SearchHit
from lineage.verdict import (
    CONTRAST_MIN_TEACHERS,
    SHARP_TEMPERATURE,
    Observed,
    TeacherTest,
    contrast,
    decide,
    teacher_test,
)

__all__ = ["Lineage", "Settings", "Progress", "QueryPlan", "plan_queries"]

Progress = Callable[[str, int, int], None]  # (stage, done, total)
MIN_PROBES = 8
MAX_NAME = 128
#: alpha spending over the looks of a sequential scan (sums to 1). The early looks spend
#: little: the savings come from futility stops, and a last look that pays only 1/0.95 for
#: them keeps the fixed-budget scan's verdicts (README Results, early stopping)
LOOK_FRACTIONS = (0.25, 0.5, 1.0)
LOOK_WEIGHTS = (0.01, 0.04, 0.95)
#: a look stops a teacher for futility when its raw p-value is above this. More probes shrink
#: only the suspect's own noise, not the spread of the reference null, so a teacher far from
#: significance after a quarter of the probes rarely gets there (measured in the README).
FUTILITY_P = 0.2


@dataclass(frozen=True)
class Settings:
    """Engine configuration, built once at the edge (CLI, server)."""

    n_reg: int = 4  # samples per probe stored for each registered model
    seed: int = 0
    model_cache: int = 16  # loaded registered models kept in memory
    #: the statistics tested as a teacher contrast (`verdict.contrast`, keys of
    #: `verdict.CONTRAST_OF`): against every registered teacher, the suspect is then scored
    #: by every teacher, not only those tested. The default was adopted on two held-out zoos
    #: by a rule set before they were scanned (README Results, session 14); the text form,
    #: "cross_entropy", failed its rule there and is available, not default
    contrast: tuple[str, ...] = ("divergence",)


@dataclass(frozen=True)
class QueryPlan:
    probes: int  # how many of the suite's probes are asked
    samples: int  # samples per probe
    full_queries: int  # word-distribution queries (full access only)
    texts: int = 0  # echo scans: stored teacher texts per probe per teacher the suspect scores
    text_queries: int = 0  # probes x texts x teachers, one query each

    @property
    def total(self) -> int:
        return self.probes * self.samples + self.full_queries + self.text_queries


def plan_queries(suite: Suite, access: AccessMode, max_queries: int | None, n_reg: int,
                 echo_teachers: int = 0, echo_texts: int | None = None) -> QueryPlan:
    """Spend the budget: every probe once if possible, then more samples per probe.

    Echo scans (`echo_teachers` > 0, logprobs access) also have the suspect score stored
    teacher texts, one query each, on the same probes as its samples: every probe costs one
    sample and one text per teacher, a larger budget buys more texts per probe (up to
    `echo_texts`, default n_reg: the texts a full-access scan scores), then more samples.
    Without a budget the plan asks every probe with all of those texts."""
    P = len(suite.probes)
    U = echo_teachers
    if U and access is not AccessMode.LOGPROBS:
        raise InvalidArgumentError("echo texts are scored in logprobs access only",
                                   field="echo")
    kmax = n_reg if echo_texts is None else echo_texts
    if U and not 1 <= kmax <= n_reg:
        raise InvalidArgumentError(f"echo_texts must be in 1..{n_reg}", field="echo_texts")
    full = 1 if access is AccessMode.FULL else 0
    per = 1 + full + U  # the least a probe costs
    if max_queries is None:
        max_queries = P * (1 + full + U * kmax)
    if max_queries < 1:
        raise InvalidArgumentError("max_queries must be >= 1", field="max_queries")
    probes = min(P, max_queries // per)
    if probes < MIN_PROBES:
        raise InvalidArgumentError(
            f"max_queries={max_queries} allows {probes} probes in {access.value} mode; "
            f"a test needs at least {MIN_PROBES} ({MIN_PROBES * per} queries)",
            field="max_queries")
    left = max_queries // probes - per  # spare queries per probe
    k = 1 + min(kmax - 1, left // U) if U else 0
    left -= (k - 1) * U if U else 0
    samples = 1 + max(0, min(n_reg - 1, left))
    return QueryPlan(probes, samples, probes * full, k, probes * k * U)


def _seed_for(name: str, seed: int) -> int:
    import hashlib

    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:4], "little")


class Lineage:
    """One home directory: `lineage.db` (SQLite) and `index.faiss`."""

    def __init__(self, home: str | Path, *, settings: Settings | None = None,
                 suite: Suite | None = None) -> None:
        self.home = Path(home).expanduser()
        self.home.mkdir(parents=True, exist_ok=True)
        self.settings = settings or Settings()
        self.suite = suite or default_suite()
        self.store = Store(self.home / "lineage.db")
        other = {h: n for h, n in self.store.suites().items() if h != self.suite.hash}
        if other:  # stored samples and signatures are per probe of the suite they were taken on
            self.store.close()
            h, n = next(iter(other.items()))
            raise SuiteMismatchError(
                f"{self.home} holds models registered with suite {n!r} ({h[:12]}), not with "
                f"{self.suite.name!r} ({self.suite.hash[:12]}); use one home per suite",
                field="suite")
        self._lock = threading.RLock()
        self._fill_lock = threading.Lock()
        self._cache: OrderedDict[str, ModelBackend] = OrderedDict()
        self._loading: dict[str, threading.Lock] = {}
        self._roles: tuple[dict[int, str], int] | None = None  # (teacher names, #references)
        dim = len(self.suite.probes) * (len(self.suite.buckets) + 1)
        self.index = SignatureIndex(dim, self.home / "index.faiss")
        self._reconcile_index()

    def close(self) -> None:
        self.store.close()

    # -- model cache -----------------------------------------------------------------------

    def _backend(self, uri: str) -> ModelBackend:
        """A loaded registered model; concurrent callers for the same URI load it once."""
        with self._lock:
            if uri in self._cache:
                self._cache.move_to_end(uri)
                return self._cache[uri]
            gate = self._loading.setdefault(uri, threading.Lock())
        with gate:
            with self._lock:
                if uri in self._cache:
                    return self._cache[uri]
            b = open_model(uri)
            with self._lock:
                self._cache[uri] = b
                while len(self._cache) > self.settings.model_cache:
                    self._cache.popitem(last=False)
                self._loading.pop(uri, None)
            return b

    # -- index -----------------------------------------------------------------------------

    def _signature_vectors(self, recs: list[ModelRecord]) -> np.ndarray:
        refs = [r for r in self.store.list_models(role="reference")]
        dists = {r.id: self.store.fingerprint(r.id)[0] for r in recs}
        ref_d = [self.store.fingerprint(r.id)[0] for r in refs]
        mu = np.mean([np.sqrt(d) for d in ref_d], axis=0) if ref_d else 0.0
        out = []
        for r in recs:
            v = (np.sqrt(dists[r.id]) - mu).ravel()
            n = np.linalg.norm(v)
            out.append(v / n if n > 0 else v)
        return np.asarray(out, dtype=np.float32).reshape(len(recs), self.index.dim)

    def _search_roles(self) -> tuple[dict[int, str], int]:
        """({teacher id: name}, number of references), cached until this engine changes them.

        Like the index itself, the cache assumes this engine is the home's only writer.
        """
        roles = self._roles
        if roles is None:
            with self._lock:
                roles = (self.store.names("teacher"), len(self.store.names("reference")))
                self._roles = roles
        return roles

    def _rebuild_index(self) -> None:
        self._roles = None
        recs = self.store.list_models()
        self.index.remove(self.index.ids())
        if recs:
            self.index.upsert(np.array([r.id for r in recs]), self._signature_vectors(recs))
        self.index.save()

    def _reconcile_index(self) -> None:
        """The store is the truth: rebuild the index if its ids differ (e.g. after a crash)."""
        with self._lock:
            want = sorted(self.store.iter_model_ids())
            if sorted(self.index.ids().tolist()) != want:
                self._rebuild_index()

    # -- models ----------------------------------------------------------------------------

    def register(self, name: str, model: str, role: str, *, request_id: str | None = None,
                 progress: Progress | None = None) -> ModelRecord:
        """Fingerprint `model` with full access and register it as a teacher or reference."""
        if role not in ROLES:
            raise InvalidArgumentError(f"role must be one of {ROLES}, got {role!r}", field="role")
        if not name or len(name) > MAX_NAME or not name.replace("-", "").replace("_", "")\
                .replace(".", "").isalnum():
            raise InvalidArgumentError(
                f"model name must be 1..{MAX_NAME} chars of letters, digits, '-', '_', '.'",
                field="name")
        if request_id:
            prior = self.store.model_by_request(request_id)
            if prior is not None:
                return prior
        with self._lock:
            existing = {r.name for r in self.store.list_models()}
        if name in existing:
            raise AlreadyExistsError(f"a model named {name!r} is already registered",
                                     field="name")
        uri = str(Path(model).resolve()) if "://" not in model and ":" not in model[:3] \
            and Path(model).exists() else model
        prog = progress or (lambda *_: None)
        backend = self._backend(uri)
        full = view(backend, AccessMode.FULL)
        S = self.suite
        prog("distribution", 0, 1)
        dist = exact_distribution(full.word_distribution(S.prompts, [S.buckets] * len(S.probes)))
        prog("sampling", 0, 1)
        rows = full.sample(S.prompts, n=self.settings.n_reg, max_new_tokens=S.max_new_tokens,
                           temperature=1.0, seed=_seed_for(name, self.settings.seed),
                           top_logprobs=1)
        samples = [[s.text for s in row] for row in rows]
        with self._lock:
            others = self.store.list_models()
        score_rows: dict[tuple[str, str], np.ndarray] = {}
        tempered: dict[tuple[str, str, float], np.ndarray] = {}
        # a model's own row is the log-probability of its sampled path, as a suspect reports it
        score_rows[(name, name)] = _self_ll(rows).astype(np.float32)
        for i, o in enumerate(others):
            prog("cross-scoring", i, len(others))
            ob = self._backend(o.uri)
            _, osamples = self.store.fingerprint(o.id)
            for scorer, gen, b, smp in ((o.name, name, ob, samples),
                                        (name, o.name, backend, osamples)):
                score_rows[(scorer, gen)], tempered[(scorer, gen, SHARP_TEMPERATURE)] = \
                    self._score_both(b, smp)
        crash_point("register.before_store")
        with self._lock:
            rec = self.store.add_model(
                name=name, role=role, uri=uri, identity=backend.identity,
                suite_name=S.name, suite_hash=S.hash, dist=dist, samples=samples,
                score_rows=score_rows, request_id=request_id, tempered_rows=tempered)
            crash_point("register.after_store")
            self._roles = None
            if role == "reference":
                self._rebuild_index()
            else:
                self.index.upsert(np.array([rec.id]), self._signature_vectors([rec]))
                self.index.save()
        # teacher_text's inputs now rather than at the first full scan; a crash here loses
        # nothing (the first scan that needs them fills in what is missing)
        with self._lock:
            recs = self.store.list_models()
        teachers = [r for r in recs if r.role == "teacher"]
        refs = [r for r in recs if r.role == "reference"]
        if len(teachers) >= 2 and len(refs) >= stats.MIN_REFERENCES:
            prog("teacher text", 0, 1)
            self._ensure_sharp_text(teachers, refs)
        return rec

    def _pairs(self, samples: list[list[str]], offset: int
               ) -> tuple[list[str], list[str], tuple[int, int]]:
        """(prompts, samples) flattened row by row for samples [P][n] of probes offset..,
        and (P, n)."""
        n = len(samples[0]) if samples else 0
        prompts = [self.suite.probes[offset + i].prompt for i in range(len(samples))
                   for _ in range(n)]
        return prompts, [t for row in samples for t in row], (len(samples), n)

    def _score_at(self, backend: ModelBackend, samples: list[list[str]],
                  temperatures: Sequence[float], offset: int = 0) -> np.ndarray:
        """log P_tau(sample | prompt) for samples [P][n] of probes offset.., for each
        temperature: [P, n, K] float32 from one forward pass."""
        prompts, conts, shape = self._pairs(samples, offset)
        return np.asarray(backend.score_tempered(prompts, conts, temperatures),
                          dtype=np.float32).reshape(*shape, len(temperatures))

    def _score_text(self, v: ModelView, samples: list[list[str]], offset: int = 0
                    ) -> np.ndarray:
        """The viewed suspect's log P(sample | prompt) for samples [P][n] of probes
        offset..: [P, n] float64 (full access, or one query each through echo)."""
        prompts, conts, shape = self._pairs(samples, offset)
        # float32 like the stored scores it is compared with
        return np.asarray(v.score_text(prompts, conts), dtype=np.float32).astype(
            np.float64).reshape(shape)

    def _score_both(self, backend: ModelBackend, samples: list[list[str]], offset: int = 0
                    ) -> tuple[np.ndarray, np.ndarray]:
        """`_score_at` at temperature 1 and at SHARP_TEMPERATURE: two [P, n] arrays."""
        both = self._score_at(backend, samples, (1.0, SHARP_TEMPERATURE), offset)
        return both[..., 0], both[..., 1]

    def _ensure_tempered(self, recs: list[ModelRecord]) -> dict[tuple[int, int], np.ndarray]:
        """The tempered score matrix, after filling in any (scorer, generator) pair of
        registered models that lacks one (homes registered before the table existed, or a
        model registered by an older version). Returns the matrix."""
        have = self.store.tempered_matrix(SHARP_TEMPERATURE)
        missing = [(a, b) for a in recs for b in recs
                   if a.id != b.id and (a.id, b.id) not in have]
        if not missing:
            return have
        with self._fill_lock:
            have = self.store.tempered_matrix(SHARP_TEMPERATURE)
            rows: dict[tuple[int, int], np.ndarray] = {}
            for a, b in missing:
                if (a.id, b.id) in have:
                    continue
                _, smp = self.store.fingerprint(b.id)
                rows[(a.id, b.id)] = self._score_at(self._backend(a.uri), smp,
                                                    (SHARP_TEMPERATURE,))[..., 0]
            self.store.add_tempered(rows, SHARP_TEMPERATURE)
            return self.store.tempered_matrix(SHARP_TEMPERATURE)

    def _ensure_sharp_text(self, teachers: list[ModelRecord], refs: list[ModelRecord]
                           ) -> tuple[dict[int, list[list[str]]],
                                      dict[tuple[int, int], np.ndarray]]:
        """The teachers' samples at SHARP_TEMPERATURE and the references' log-likelihoods
        of them (temperature 1), after sampling and scoring whatever is missing (the first
        scan that needs them, in a home registered before they existed or since a model was
        added). Returns ({teacher id: [P][n] texts}, {(reference id, teacher id): [P, n]})."""
        tau = SHARP_TEMPERATURE
        texts, sc = self.store.sharp_texts(tau), self.store.sharp_text_matrix(tau)
        if all(t.id in texts for t in teachers) and all(
                (r.id, t.id) in sc for r in refs for t in teachers):
            return texts, sc
        with self._fill_lock:
            texts = self.store.sharp_texts(tau)
            new: dict[int, list[list[str]]] = {}
            S = self.suite
            for t in teachers:
                if t.id not in texts:
                    rows = view(self._backend(t.uri), AccessMode.FULL).sample(
                        S.prompts, n=self.settings.n_reg, max_new_tokens=S.max_new_tokens,
                        temperature=tau, seed=_seed_for("sharp:" + t.name, self.settings.seed))
                    new[t.id] = [[x.text for x in row] for row in rows]
            self.store.add_sharp_texts(new, tau)
            texts = self.store.sharp_texts(tau)
            sc = self.store.sharp_text_matrix(tau)
            rows2 = {(r.id, t.id): self._score_at(self._backend(r.uri), texts[t.id], (1.0,))[..., 0]
                     for r in refs for t in teachers
                     if (r.id, t.id) not in sc and t.id in texts}
            self.store.add_sharp_text_scores(rows2, tau)
            return texts, self.store.sharp_text_matrix(tau)

    def get_model(self, name: str) -> ModelRecord:
        return self.store.get_model(name)

    def list_models(self, *, after_id: int = 0, limit: int = 100, role: str | None = None
                    ) -> list[ModelRecord]:
        return self.store.list_models(after_id=after_id, limit=limit, role=role)

    def delete_model(self, name: str) -> None:
        with self._lock:
            rec = self.store.delete_model(name)
            crash_point("delete.after_store")
            self._roles = None
            if rec.role == "reference":
                self._rebuild_index()
            else:
                self.index.remove(np.array([rec.id]))
                self.index.save()

    # -- scans -----------------------------------------------------------------------------

    def scan(self, model: str, *, access: str = "full", max_queries: int | None = None,
             alpha: float = 0.01, teachers: Sequence[str] | None = None,
             request_id: str | None = None, progress: Progress | None = None,
             early_stop: bool | None = None, echo: bool | None = None,
             echo_texts: int | None = None) -> ScanResult:
        """Query the suspect, then test it against every registered teacher (or `teachers`).

        `echo` (logprobs access only): the suspect also scores the registered teachers'
        sharpened text through its endpoint's prompt logprobs (``echo=1`` in an
        ``openai+http`` URI; local weights emulate it), one query per text, so that
        teacher_text runs as in full access. None (the default)
        uses echo where the backend offers it; True requires it; False never uses it.
        `echo_texts` caps the texts per probe per teacher (1..n_reg; default n_reg, the
        texts a full-access scan scores); `plan_queries` says how a budget is spent.

        `early_stop` None (the default) means on for `text` and `logprobs` access, where
        every query goes to an endpoint and counts against its budget, and off for `full`
        access, where the suspect's weights are local and asking every probe costs a few
        forward passes (it raised TPR at 1% FPR from 0.81 to 0.95 on the two full zoos it
        was chosen on; a third, held out, gives 0.95 either way; README Results). With
        `early_stop`, the probes are asked in up to three looks (1/4, 1/2, all of the plan)
        and the scan stops at the first look where every teacher is decided: derived
        at alpha, or clearly not (raw p > FUTILITY_P). Validity under this optional stopping
        comes from alpha spending: look k may spend LOOK_WEIGHTS[k] of alpha, i.e. a
        teacher's p-value is min over looks of p_k / w_k (weighted Bonferroni), and Holm's
        correction across teachers applies to those. Stopping for futility never rejects, so
        it cannot raise the false-positive rate.
        """
        if not 0.0 < alpha < 1.0:
            raise InvalidArgumentError("alpha must be in (0, 1)", field="alpha")
        if request_id:
            prior = self.store.scan_by_request(request_id)
            if prior is not None:
                return _scan_from_json(prior)
        mode = AccessMode.parse(access)
        if early_stop is None:
            early_stop = mode is not AccessMode.FULL
        prog = progress or (lambda *_: None)
        recs = self.store.list_models()
        tlist = [r for r in recs if r.role == "teacher"]
        if teachers is not None:
            known = {t.name: t for t in tlist}
            missing = [t for t in teachers if t not in known]
            if missing:
                raise UnknownModelError(f"no registered teacher named {missing[0]!r}",
                                        field="teacher")
            tlist = [known[t] for t in teachers]
        if not tlist:
            raise InvalidArgumentError("no teachers are registered; register one first",
                                       field="teachers")
        refs = [r for r in recs if r.role == "reference"]
        if max_queries is not None and max_queries < 1:
            raise InvalidArgumentError("max_queries must be >= 1", field="max_queries")
        # Open first: a remote backend may spend queries probing its capabilities, and those
        # count against the same budget.
        if echo and mode is not AccessMode.LOGPROBS:
            raise InvalidArgumentError("echo applies to logprobs access only", field="echo")
        every_teacher = [r for r in recs if r.role == "teacher"]
        with_text = len(every_teacher) >= 2 and len(refs) >= stats.MIN_REFERENCES
        backend = open_model(model, max_queries=max_queries)
        use_echo = mode is AccessMode.LOGPROBS and (
            bool(echo) or (echo is None and offers_echo(backend)))
        v = view(backend, mode, echo=use_echo)  # before planning: refuses echo it cannot do
        plan = plan_queries(self.suite, mode, backend.usage.remaining, self.settings.n_reg,
                            len(every_teacher) if use_echo and with_text else 0, echo_texts)
        if max_queries is None:
            backend.usage.max_queries = backend.usage.queries + plan.total
        suite = self.suite.subset(plan.probes)
        sees_logprobs = mode is not AccessMode.TEXT
        # Local weights seed from their sha256, so the same model at two paths gets the same
        # samples and the same verdict; an endpoint has no weights hash and seeds from its URI.
        seed = _seed_for("scan:" + (backend.identity.get("sha256") or model), self.settings.seed)
        rows: list[list[Sample]] = []
        word_probs: list[list[float]] = []
        ll: dict[int, np.ndarray] = {}
        ll_sharp: dict[int, np.ndarray] = {}
        # The probes are asked in the same chunks (one sampling call and seed each) with or
        # without early stopping, so a sequential scan that runs to its end has exactly the
        # samples of a fixed-budget scan; only the weight of its last look differs.
        looks = _looks(plan.probes)
        weights = LOOK_WEIGHTS[-len(looks):] if early_stop and len(looks) > 1 \
            else (1.0,) * len(looks)
        best: dict[str, float] = {}
        stopped = False
        # the contrast needs the suspect's statistics against every teacher, tested or not
        scored = every_teacher if self.settings.contrast \
            and len(every_teacher) >= CONTRAST_MIN_TEACHERS else tlist
        allsc = self.store.score_matrix()  # read the registered population once per scan
        sharp = self._ensure_tempered(scored + refs)
        fps = {r.id: self.store.fingerprint(r.id) for r in scored + refs}
        # teacher_text: the suspect scores every registered teacher's sharpened text (the
        # other teachers are its controls, whichever are tested). In full access these are
        # local forward passes over stored text, not samples: they are not queries and use
        # all n_reg stored samples per probe, whatever the plan samples. With echo each text
        # is a query, and the plan's first `texts` stored samples per probe are scored.
        texts: dict[int, list[list[str]]] = {}
        text_sc: dict[tuple[int, int], np.ndarray] = {}
        if v.scores_text and with_text:
            prog("teacher text", 0, 1)
            texts, text_sc = self._ensure_sharp_text(every_teacher, refs)
            # exactly this scan's teachers, each scored by every reference: the suspect and
            # the references must contrast the same texts (a teacher registered meanwhile
            # may have stored texts that not every reference has scored yet)
            k = plan.texts if use_echo else self.settings.n_reg
            texts = {t.id: [row[:k] for row in texts[t.id]] for t in every_teacher
                     if t.id in texts and all((r.id, t.id) in text_sc for r in refs)}
            if len(texts) < 2:
                texts = {}
        text_ll: dict[int, np.ndarray] = {}
        for k, (P, w) in enumerate(zip(looks, weights)):
            lo = len(rows)
            prompts = suite.prompts[lo:P]
            prog("querying suspect", backend.usage.queries, plan.total)
            rows += v.sample(prompts, n=plan.samples, max_new_tokens=suite.max_new_tokens,
                             temperature=1.0, seed=seed + k,
                             top_logprobs=1 if sees_logprobs else 0)
            if mode is AccessMode.FULL:
                word_probs += v.word_distribution(prompts, [suite.buckets] * len(prompts))
            new = [[x.text for x in row] for row in rows[lo:P]]
            for i, r in enumerate(scored + refs):
                prog("scoring", i, len(scored) + len(refs))
                p1, pt = (a.astype(np.float64)
                          for a in self._score_both(self._backend(r.uri), new, offset=lo))
                ll[r.id] = p1 if r.id not in ll else np.concatenate([ll[r.id], p1])
                ll_sharp[r.id] = pt if r.id not in ll_sharp \
                    else np.concatenate([ll_sharp[r.id], pt])
            try:
                for tid, smp in texts.items():
                    prog("suspect scoring teacher text", backend.usage.queries, plan.total)
                    part = self._score_text(v, smp[lo:P], offset=lo)
                    text_ll[tid] = part if tid not in text_ll \
                        else np.concatenate([text_ll[tid], part])
            except InvalidArgumentError:  # a teacher's text does not fit the suspect's
                texts, text_ll = {}, {}   # context: the scan runs without teacher_text
            if not early_stop and k < len(looks) - 1:  # a chunk, not a look: no test here
                continue
            samples = [[x.text for x in row] for row in rows]
            sub = suite.subset(P)
            dist = exact_distribution(word_probs) if mode is AccessMode.FULL \
                else histogram(sub, samples)
            tchars = {tid: _chars(smp[:P]) for tid, smp in texts.items()}
            suspect = Observed(dist, _chars(samples), dict(ll),
                               _self_ll(rows) if sees_logprobs else None, dict(ll_sharp),
                               dict(text_ll) or None, tchars or None)
            tests = self._tests(tlist, refs, suspect, P, plan.samples, mode, allsc, fps, sharp,
                                (text_sc, tchars), scored)
            for t, x in zip(tlist, tests):
                p = 1.0 if x is None else min(1.0, x.p_value / w)
                best[t.name] = min(best.get(t.name, 1.0), p)
            adj = stats.holm([best[t.name] for t in tlist])
            decided = all(q <= alpha or (x is not None and x.p_value > FUTILITY_P)
                          for q, x in zip(adj, tests))
            if decided and k < len(looks) - 1:
                stopped = True
                break
        prog("querying suspect", backend.usage.queries, plan.total)
        candidates = self._candidates(tlist, refs, tests, [best[t.name] for t in tlist],
                                      sub, alpha)
        result = ScanResult(
            id=uuid.uuid4().hex, suspect=model, access=mode.value,
            queries=backend.usage.queries, generated_tokens=backend.usage.generated_tokens,
            alpha=alpha, suite_name=suite.name, suite_hash=self.suite.hash,
            candidates=tuple(candidates), created_at=utcnow(),
            identity={**backend.identity, **({"echo": "used"} if use_echo else {})},
            request_id=request_id, stopped_early=stopped,
            lineage_version=__version__)
        crash_point("scan.before_store")
        self.store.add_scan(result.id, model, result.to_json(), request_id)
        crash_point("scan.after_store")
        return result

    def _tests(self, tlist: list[ModelRecord], refs: list[ModelRecord], suspect: Observed,
               P: int, n: int, mode: AccessMode, allsc: dict[tuple[int, int], np.ndarray],
               fps: dict[int, tuple[np.ndarray, list[list[str]]]],
               sharp: dict[tuple[int, int], np.ndarray] | None = None,
               text: tuple[dict[tuple[int, int], np.ndarray], dict[int, np.ndarray]]
               | None = None, scored: list[ModelRecord] | None = None
               ) -> list[TeacherTest | None]:
        """One test per teacher on the first P probes, n samples each (None: no test).

        `allsc`, `sharp` and `fps` are the store's score matrices (at temperature 1 and at
        SHARP_TEMPERATURE) and fingerprints, read once per scan; `text` the references'
        scores of the teachers' sharpened text and its characters per sample (the first P
        probes, all stored samples), when the scan runs teacher_text. `scored` are the
        teachers the suspect's samples were scored by (default `tlist`): with
        Settings.contrast every teacher is tested and contrasted, and `tlist`'s tests returned.
        """
        scored = scored or tlist
        text_sc, tchars = text or ({}, {})
        if len(refs) < stats.MIN_REFERENCES:
            return [None] * len(tlist)
        sub = self.suite.subset(P)
        ref_obs: dict[int, Observed] = {}
        ref_exact: dict[int, np.ndarray] = {}
        scorer_ids = [t.id for t in scored] + [x.id for x in refs]
        for r in refs:
            d, smp = fps[r.id]
            smp = [row[:n] for row in smp[:P]]
            ref_exact[r.id] = d[:P]
            od = d[:P] if mode is AccessMode.FULL else histogram(sub, smp)
            ref_obs[r.id] = Observed(
                od, _chars(smp),
                {sid: allsc[(sid, r.id)][:P, :n].astype(np.float64)
                 for sid in scorer_ids if sid != r.id},
                None if mode is AccessMode.TEXT
                else allsc[(r.id, r.id)][:P, :n].astype(np.float64),
                None if not sharp
                else {sid: sharp[(sid, r.id)][:P, :n].astype(np.float64)
                      for sid in scorer_ids if sid != r.id and (sid, r.id) in sharp},
                {tid: text_sc[(r.id, tid)][:P, :tchars[tid].shape[1]].astype(np.float64)
                 for tid in tchars if (r.id, tid) in text_sc} or None,
                tchars or None)
        tests = {t.id: teacher_test(t.id, fps[t.id][0][:P], suspect, ref_obs, ref_exact)
                 for t in scored}
        if self.settings.contrast:
            tests = contrast(tests, self.settings.contrast)
        return [tests[t.id] for t in tlist]

    def _candidates(self, tlist: list[ModelRecord], refs: list[ModelRecord],
                    tests: list[TeacherTest | None], raw: list[float], suite: Suite,
                    alpha: float) -> list[Candidate]:
        adj, verdicts = decide(raw, alpha, [x is not None for x in tests])
        out = []  # (evidence p at the last look, candidate)
        for t, x, p, q, vd in zip(tlist, tests, raw, adj, verdicts):
            if x is None:
                out.append((1.0, Candidate(teacher=t.name, similarity=0.0, p_value=1.0,
                                           verdict=vd, raw_p_value=1.0,
                                           n_references=len(refs))))
                continue
            top = np.argsort(-x.contributions)[:5]
            ev = tuple(Evidence(suite.probes[i].id, suite.probes[i].prompt,
                                float(x.contributions[i])) for i in top)
            null = np.asarray(x.null)
            out.append((x.p_value, Candidate(
                teacher=t.name, similarity=x.similarity, p_value=q, verdict=vd, raw_p_value=p,
                statistic=x.statistic, closeness=x.closeness, null_mean=float(null.mean()),
                null_sd=float(null.std(ddof=1)), n_references=len(refs), evidence=ev,
                p_parts={k: float(v) for k, v in x.p_parts.items()})))
        # Ties in the reported p (e.g. every teacher at 1 after a futility stop) are broken by
        # the evidence at the last look (the test's combined p, before the look weight), then
        # by the statistic.
        out.sort(key=lambda e: (e[1].p_value, e[0], -e[1].statistic))
        return [c for _, c in out]

    def compare(self, model: str, teacher: str, *, access: str = "full",
                max_queries: int | None = None, alpha: float = 0.01,
                early_stop: bool | None = None, echo: bool | None = None,
                echo_texts: int | None = None) -> ScanResult:
        """A scan against one named teacher (no correction across teachers)."""
        return self.scan(model, access=access, max_queries=max_queries, alpha=alpha,
                         teachers=[teacher], early_stop=early_stop, echo=echo,
                         echo_texts=echo_texts)

    def get_scan(self, scan_id: str) -> ScanResult:
        d = self.store.get_scan(scan_id)
        if d is None:
            raise UnknownModelError(f"no scan with id {scan_id!r}", field="scan_id")
        return _scan_from_json(d)

    def list_scans(self, *, after: str | None = None, limit: int = 100) -> list[ScanResult]:
        return [_scan_from_json(d) for d in self.store.list_scans(after=after, limit=limit)]

    def search(self, *, vector: np.ndarray | None = None, model: str | None = None,
               access: str = "full", k: int = 10) -> list[SearchHit]:
        """Nearest registered teachers to a signature vector or a suspect model."""
        if (vector is None) == (model is None):
            raise InvalidArgumentError("give exactly one of vector or model", field="vector")
        if not 1 <= k <= 1000:
            raise InvalidArgumentError("k must be in 1..1000", field="k")
        if vector is None:
            mode = AccessMode.parse(access)
            plan = plan_queries(self.suite, mode, None, self.settings.n_reg)
            v = view(open_model(str(model)), mode)
            S = self.suite
            if mode is AccessMode.FULL:
                d = exact_distribution(v.word_distribution(S.prompts, [S.buckets] * len(S.probes)))
            else:
                rows = v.sample(S.prompts, n=plan.samples, max_new_tokens=S.max_new_tokens,
                                seed=self.settings.seed)
                d = histogram(S, [[s.text for s in r] for r in rows])
            refs = self.store.list_models(role="reference")
            mu = np.mean([np.sqrt(self.store.fingerprint(r.id)[0]) for r in refs], axis=0) \
                if refs else 0.0
            vector = (np.sqrt(d) - mu).ravel()
        return self.search_batch([vector], k)[0]

    def search_batch(self, vectors: Sequence[np.ndarray], k: int | Sequence[int] = 10
                     ) -> list[list[SearchHit]]:
        """Nearest registered teachers for each of several signature vectors, in one index call.

        vectors: each [dim] float (any shape with dim elements); k: one or one per vector.
        Scores are cosines: each query is normalised first.
        """
        ks = [int(k)] * len(vectors) if isinstance(k, int) else [int(x) for x in k]
        if len(ks) != len(vectors):
            raise InvalidArgumentError("one k per vector", field="k")
        if not all(1 <= x <= 1000 for x in ks):
            raise InvalidArgumentError("k must be in 1..1000", field="k")
        if not vectors:
            return []
        rows = [np.asarray(v, dtype=np.float32).ravel() for v in vectors]
        for v in rows:
            if v.size != self.index.dim:
                raise InvalidArgumentError(
                    f"signature has {v.size} values, expected {self.index.dim}", field="vector")
        q = np.stack(rows)
        norm = np.linalg.norm(q, axis=1, keepdims=True)
        q = np.divide(q, norm, out=q, where=norm > 0)  # scores are then cosines in [-1, 1]
        teachers, n_refs = self._search_roles()
        # only references and teachers are indexed, so k + n_refs hits hold k teachers
        D, I = self.index.search(q, max(ks) + n_refs)
        out = []
        for d, ids, kk in zip(D, I, ks):
            hits = [SearchHit(teachers[i], float(s)) for s, i in zip(d.tolist(), ids.tolist())
                    if i in teachers]
            out.append(hits[:kk])
        return out


def _looks(probes: int) -> list[int]:
    """Probe counts at which a scan's chunks end: where a sequential scan looks at its
    evidence."""
    if probes < 4 * MIN_PROBES:
        return [probes]
    return sorted({max(MIN_PROBES, round(f * probes)) for f in LOOK_FRACTIONS})


def _self_ll(rows: list[list[Sample]]) -> np.ndarray:
    """[P, n] sum of each sample's own token logprobs (requires logprob access)."""
    return np.asarray([[sum(s.token_logprobs or ()) for s in row] for row in rows],
                      dtype=np.float64)


def _chars(samples: list[list[str]]) -> np.ndarray:
    return np.asarray([[max(1, len(t)) for t in row] for row in samples], dtype=np.float64)


def _scan_from_json(d: dict[str, Any]) -> ScanResult:
    cands = tuple(
        Candidate(**{**c, "evidence": tuple(Evidence(**e) for e in c.get("evidence", []))})
        for c in d["candidates"])
    return ScanResult(
        id=d["scan_id"], suspect=d["suspect"], access=d["access"], queries=d["queries"],
        generated_tokens=d.get("generated_tokens", 0), alpha=d["alpha"],
        suite_name=d["suite"]["name"], suite_hash=d["suite"]["hash"], candidates=cands,
        created_at=d["created_at"], identity=d.get("identity", {}),
        request_id=d.get("request_id"), stopped_early=d.get("stopped_early", False),
        lineage_version=d.get("lineage_version", ""))

