"""The backend protocol: how lineage talks to a model, and what each access mode may see.

A backend wraps one model (local weights or a remote endpoint). Its *capabilities* say which
access modes it can serve. The signature code never holds a backend directly: it holds a
`ModelView` for one access mode, which exposes only what that mode allows. A `text` view returns
sampled strings and nothing else, so no code path can leak logits into a text-only scan.

Query accounting: one query is one request to the suspect that returns one completion, so `n`
samples of one prompt cost `n` queries. Scoring candidate continuations of one prompt with full
logits (`word_distribution`) costs one query per prompt. Generated tokens are counted too.
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass, field
from typing import Protocol, Sequence, runtime_checkable

from lineage.errors import AccessModeError, BudgetExceededError, InvalidArgumentError

__all__ = [
    "AccessMode",
    "Sample",
    "Usage",
    "ModelBackend",
    "ModelView",
    "view",
    "MAX_TOP_LOGPROBS",
]

#: OpenAI's chat API caps top_logprobs at 20; the local backend enforces the same cap.
MAX_TOP_LOGPROBS = 20


class AccessMode(str, enum.Enum):
    """How much of the model's output the scan may see."""

    FULL = "full"  # full next-token logits
    LOGPROBS = "logprobs"  # sampled text plus top-k logprobs of generated tokens, k <= 20
    TEXT = "text"  # sampled text only

    @classmethod
    def parse(cls, value: str | "AccessMode") -> "AccessMode":
        if isinstance(value, AccessMode):
            return value
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(m.value for m in cls)
            raise InvalidArgumentError(
                f"unknown access mode {value!r}; choose one of: {choices}", field="access"
            ) from None


@dataclass(frozen=True)
class Sample:
    """One sampled completion.

    `token_logprobs[i]` is the log-probability (nats) of the i-th generated token and
    `top_logprobs[i]` maps the top-k token strings at position i to their log-probabilities.
    Both are None unless the access mode allows logprobs.
    """

    text: str
    n_tokens: int
    token_logprobs: tuple[float, ...] | None = None
    top_logprobs: tuple[dict[str, float], ...] | None = None


@dataclass
class Usage:
    """Thread-safe query and token counter, with an optional hard cap on queries."""

    max_queries: int | None = None
    queries: int = 0
    generated_tokens: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def reserve(self, n: int) -> None:
        """Claim `n` queries before sending them; raises if that would pass the cap."""
        with self._lock:
            if self.max_queries is not None and self.queries + n > self.max_queries:
                raise BudgetExceededError(
                    f"query budget exhausted: {self.queries} used, {n} more requested, "
                    f"cap {self.max_queries}"
                )
            self.queries += n

    def add_tokens(self, n: int) -> None:
        with self._lock:
            self.generated_tokens += n

    @property
    def remaining(self) -> int | None:
        return None if self.max_queries is None else self.max_queries - self.queries


@runtime_checkable
class ModelBackend(Protocol):
    """What a backend implements. Methods take lists so that backends can batch."""

    #: a stable description of what is being queried (path + weight hash, or endpoint + model)
    identity: dict[str, str]
    capabilities: frozenset[AccessMode]
    usage: Usage

    def sample(
        self,
        prompts: Sequence[str],
        *,
        n: int,
        max_new_tokens: int,
        temperature: float,
        seed: int,
        top_logprobs: int = 0,
    ) -> list[list[Sample]]:
        """`n` completions per prompt (n queries each). Logprobs only if `top_logprobs` > 0."""
        ...

    def word_distribution(
        self, prompts: Sequence[str], buckets: Sequence[Sequence[str]]
    ) -> list[list[float]]:
        """Full-logit access only: P(continuation's first word == bucket) for each bucket.

        Returns one list per prompt, aligned with `buckets[i]`; the remainder of the mass
        (the "other" bucket) is 1 - sum. One query per prompt.
        """
        ...

    def score(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[float]:
        """Full-logit access only: log P(continuation | prompt) in nats, one per pair."""
        ...

    def score_tempered(self, prompts: Sequence[str], continuations: Sequence[str],
                       temperatures: Sequence[float]) -> list[list[float]]:
        """Full-logit access only: log P_tau(continuation | prompt) for each temperature tau
        (logits divided by tau), [N][K] nats."""
        ...


class ModelView:
    """A backend seen through one access mode. Only the allowed methods work."""

    def __init__(self, backend: ModelBackend, mode: AccessMode) -> None:
        if mode not in backend.capabilities:
            have = ", ".join(sorted(m.value for m in backend.capabilities))
            raise AccessModeError(
                f"this model cannot be queried in {mode.value!r} mode (it offers: {have})",
                field="access",
            )
        self._backend = backend
        self.mode = mode

    @property
    def identity(self) -> dict[str, str]:
        return dict(self._backend.identity)

    @property
    def usage(self) -> Usage:
        return self._backend.usage

    def sample(
        self,
        prompts: Sequence[str],
        *,
        n: int,
        max_new_tokens: int,
        temperature: float = 1.0,
        seed: int = 0,
        top_logprobs: int = 0,
    ) -> list[list[Sample]]:
        if self.mode is AccessMode.TEXT:
            top_logprobs = 0
        elif not 0 <= top_logprobs <= MAX_TOP_LOGPROBS:
            raise InvalidArgumentError(f"top_logprobs must be in 0..{MAX_TOP_LOGPROBS}")
        out = self._backend.sample(
            prompts,
            n=n,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            seed=seed,
            top_logprobs=top_logprobs,
        )
        if self.mode is AccessMode.TEXT:
            # Strip anything a backend returned beyond text, so text scans never see it.
            out = [[Sample(s.text, s.n_tokens) for s in row] for row in out]
        return out

    def word_distribution(
        self, prompts: Sequence[str], buckets: Sequence[Sequence[str]]
    ) -> list[list[float]]:
        self._require_full("word_distribution")
        return self._backend.word_distribution(prompts, buckets)

    def score(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[float]:
        self._require_full("score")
        return self._backend.score(prompts, continuations)

    def score_tempered(self, prompts: Sequence[str], continuations: Sequence[str],
                       temperatures: Sequence[float]) -> list[list[float]]:
        self._require_full("score_tempered")
        return self._backend.score_tempered(prompts, continuations, temperatures)

    def _require_full(self, what: str) -> None:
        if self.mode is not AccessMode.FULL:
            raise AccessModeError(f"{what} needs full access; this view is {self.mode.value!r}")


def view(backend: ModelBackend, mode: AccessMode | str) -> ModelView:
    """Wrap `backend` so that callers see only what `mode` allows."""
    return ModelView(backend, AccessMode.parse(mode))
