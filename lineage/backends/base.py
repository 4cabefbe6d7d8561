"""The backend protocol: how lineage talks to a model, and what each access mode may see.

A backend wraps one model (local weights or a remote endpoint). Its *capabilities* say which
access modes it can serve. The signature code never holds a backend directly: it holds a
`ModelView` for one access mode, which exposes only what that mode allows. A `text` view returns
sampled strings and nothing else, so no code path can leak logits into a text-only scan.

Query accounting: one query is one request to the suspect that returns one completion, so `n`
samples of one prompt cost `n` queries. Scoring candidate continuations of one prompt with full
logits (`word_distribution`) costs one query per prompt. Generated tokens are counted too.

*Echo scoring* (`view(backend, "logprobs", echo=True)`): an OpenAI-compatible completions
endpoint asked with ``echo=true`` and ``logprobs`` returns the log-probabilities of the prompt's
own tokens (vLLM does; lm-evaluation-harness scores likelihoods this way). A logprobs view with
echo may then `score_text`: the suspect's log-likelihood of a given continuation, one query per
text. A backend offers it with an `echo_score` method (the HTTP backend, when its URI asks for
``echo=1`` and the capability probe saw valid prompt logprobs); local weights emulate it for
benchmarks and tests, each text reserved as one query.
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
    "offers_echo",
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

    def __init__(self, backend: ModelBackend, mode: AccessMode, echo: bool = False) -> None:
        if mode not in backend.capabilities:
            have = ", ".join(sorted(m.value for m in backend.capabilities))
            raise AccessModeError(
                f"this model cannot be queried in {mode.value!r} mode (it offers: {have})",
                field="access",
            )
        if echo:
            if mode is not AccessMode.LOGPROBS:
                raise InvalidArgumentError("echo scoring applies to logprobs access only",
                                           field="echo")
            if not offers_echo(backend) and AccessMode.FULL not in backend.capabilities:
                raise AccessModeError(
                    "this endpoint does not score prompts (echo); open it with echo=1 on a "
                    "server that returns prompt logprobs", field="echo")
        self._backend = backend
        self.mode = mode
        self.echo = echo

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

    @property
    def scores_text(self) -> bool:
        """Whether `score_text` works: full access, or logprobs access with echo."""
        return self.mode is AccessMode.FULL or self.echo

    def score_text(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[float]:
        """log P(continuation | prompt) in nats under the viewed model, one per pair.

        Full access: local forward passes, not queries. Logprobs access with echo: one query
        per pair, through the endpoint's prompt logprobs (or reserved as one query each when
        local weights emulate an echo endpoint).
        """
        if self.mode is AccessMode.FULL:
            return self._backend.score(prompts, continuations)
        if not self.echo:
            raise AccessModeError(f"score_text needs full access or echo; this view is "
                                  f"{self.mode.value!r} without echo")
        if len(prompts) != len(continuations):
            raise InvalidArgumentError("prompts and continuations differ in length")
        if offers_echo(self._backend):
            return self._backend.echo_score(prompts, continuations)  # type: ignore[attr-defined]
        self._backend.usage.reserve(len(prompts))
        return self._backend.score(prompts, continuations)

    def _require_full(self, what: str) -> None:
        if self.mode is not AccessMode.FULL:
            raise AccessModeError(f"{what} needs full access; this view is {self.mode.value!r}")


def offers_echo(backend: object) -> bool:
    """Whether a backend scores prompts through an endpoint's echo (see the module doc)."""
    return bool(getattr(backend, "echo", False)) and callable(getattr(backend, "echo_score",
                                                                       None))


def view(backend: ModelBackend, mode: AccessMode | str, echo: bool = False) -> ModelView:
    """Wrap `backend` so that callers see only what `mode` allows (and, in logprobs mode with
    `echo`, the suspect's likelihood of given text, one query per text)."""
    return ModelView(backend, AccessMode.parse(mode), echo)
