"""Value types that cross module boundaries: registered models, scan results, candidates.

These are plain frozen dataclasses. The CLI prints them as JSON (`to_json`), the service converts
them to protobuf in `server/convert.py`, and the store persists them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = ["Role", "Verdict", "ModelRecord", "Evidence", "Candidate", "ScanResult", "SearchHit"]

Role = Literal["teacher", "reference"]
Verdict = Literal["derived", "not_derived", "inconclusive"]
ROLES: tuple[str, ...] = ("teacher", "reference")


@dataclass(frozen=True)
class ModelRecord:
    """A registered (fingerprinted) teacher or reference model."""

    id: int
    name: str
    role: str
    uri: str
    #: what was fingerprinted: {"kind": "local", "path": ..., "sha256": ...} or endpoint details
    identity: dict[str, str]
    suite_name: str
    suite_hash: str
    created_at: str  # ISO 8601, UTC

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Evidence:
    """One probe that carried weight in a decision."""

    probe_id: str
    prompt: str
    contribution: float  # the probe's share of the test statistic (positive = towards derived)


@dataclass(frozen=True)
class Candidate:
    """The test of one suspect against one teacher."""

    teacher: str
    similarity: float  # centred signature cosine in [-1, 1]
    p_value: float  # Holm-adjusted across teachers
    verdict: str  # Verdict
    raw_p_value: float = 1.0  # before Holm
    statistic: float = 0.0  # the combined test statistic (standardised units)
    closeness: float = 0.0  # teacher likelihood advantage on the suspect's text, nats/char
    null_mean: float = 0.0  # the statistic's mean over references
    null_sd: float = 0.0  # and its spread
    n_references: int = 0
    evidence: tuple[Evidence, ...] = ()
    #: each statistic's own raw p-value (closeness, similarity, divergence), before combining
    p_parts: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["evidence"] = [asdict(e) for e in self.evidence]
        return d


@dataclass(frozen=True)
class ScanResult:
    """A finished scan: one candidate per registered teacher, sorted by p-value ascending
    (ties by the evidence at the last look: `lineage.verdict.combine(p_parts)`)."""

    id: str
    suspect: str
    access: str
    queries: int
    generated_tokens: int
    alpha: float
    suite_name: str
    suite_hash: str
    candidates: tuple[Candidate, ...]
    created_at: str
    identity: dict[str, str] = field(default_factory=dict)
    request_id: str | None = None
    stopped_early: bool = False
    lineage_version: str = ""  # "" for scans stored before the version was recorded

    def to_json(self) -> dict[str, Any]:
        """The CLI contract: suspect, access, queries, candidates[...] plus extra fields."""
        return {
            "suspect": self.suspect,
            "access": self.access,
            "queries": self.queries,
            "candidates": [c.to_json() for c in self.candidates],
            "scan_id": self.id,
            "generated_tokens": self.generated_tokens,
            "alpha": self.alpha,
            "suite": {"name": self.suite_name, "hash": self.suite_hash},
            "identity": dict(self.identity),
            "created_at": self.created_at,
            "stopped_early": self.stopped_early,
            "request_id": self.request_id,
            "lineage_version": self.lineage_version,
        }


@dataclass(frozen=True)
class SearchHit:
    """A nearest registered teacher by signature inner product."""

    teacher: str
    score: float
