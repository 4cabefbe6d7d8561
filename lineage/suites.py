"""Probe suites: versioned data files of canary prompts, each identified by a content hash.

A suite is JSON:

    {"name": "default", "version": 1, "description": "...",
     "max_new_tokens": 32,
     "buckets": ["the", "a", ...],            # first-word buckets shared by all probes
     "probes": [{"id": "p0000", "prompt": "Return the"}, ...]}

The hash is sha256 over the canonical JSON (sorted keys, no whitespace), so two suites with the
same hash ask exactly the same questions. Signatures carry the hash of the suite that made them;
comparing across suites raises `SuiteMismatchError`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from lineage.errors import InvalidArgumentError, SuiteMismatchError

__all__ = [
    "Probe",
    "Suite",
    "load_suite",
    "default_suite",
    "build_suite",
    "first_word",
    "MAX_PROBES",
]

#: bounds on what a suite file may ask for (suites can come from users)
MAX_PROBES = 4096
MAX_PROMPT_CHARS = 2048
MAX_BUCKETS = 256
MAX_NEW_TOKENS = 256

_WORD = re.compile(r"[A-Za-z0-9_]+")


def first_word(continuation: str) -> str:
    """The bucket key of a continuation: its first word, or its first non-space character.

    Leading whitespace is skipped; a word is a run of [A-Za-z0-9_]. An empty or all-space
    continuation maps to "" (it then falls into the "other" bucket).
    """
    s = continuation.lstrip()
    if not s:
        return ""
    m = _WORD.match(s)
    return m.group(0) if m else s[0]


@dataclass(frozen=True)
class Probe:
    id: str
    prompt: str


@dataclass(frozen=True)
class Suite:
    name: str
    version: int
    description: str
    max_new_tokens: int
    buckets: tuple[str, ...]
    probes: tuple[Probe, ...]

    @property
    def hash(self) -> str:
        return hashlib.sha256(_canonical(self.to_dict()).encode()).hexdigest()

    @property
    def prompts(self) -> list[str]:
        return [p.prompt for p in self.probes]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "max_new_tokens": self.max_new_tokens,
            "buckets": list(self.buckets),
            "probes": [{"id": p.id, "prompt": p.prompt} for p in self.probes],
        }

    def bucket_index(self, word: str) -> int:
        """Index of `word`'s bucket; len(buckets) is the "other" bucket."""
        try:
            return self._index[word]
        except KeyError:
            return len(self.buckets)

    @property
    def _index(self) -> dict[str, int]:
        # cached on first use; frozen dataclass, so stash via object.__setattr__
        idx = self.__dict__.get("_bucket_index")
        if idx is None:
            idx = {w: i for i, w in enumerate(self.buckets)}
            object.__setattr__(self, "_bucket_index", idx)
        return idx

    def check_same(self, other_hash: str) -> None:
        if other_hash != self.hash:
            raise SuiteMismatchError(
                f"suite mismatch: expected {self.name} {self.hash[:12]}, got {other_hash[:12]}"
            )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Suite":
        try:
            probes = d["probes"]
            buckets = d["buckets"]
            if not isinstance(probes, list) or not 1 <= len(probes) <= MAX_PROBES:
                raise InvalidArgumentError(f"suite needs 1..{MAX_PROBES} probes", field="probes")
            if not isinstance(buckets, list) or not 1 <= len(buckets) <= MAX_BUCKETS:
                raise InvalidArgumentError(
                    f"suite needs 1..{MAX_BUCKETS} buckets", field="buckets"
                )
            if len(set(buckets)) != len(buckets):
                raise InvalidArgumentError("suite buckets must be distinct", field="buckets")
            mnt = int(d.get("max_new_tokens", 32))
            if not 1 <= mnt <= MAX_NEW_TOKENS:
                raise InvalidArgumentError(
                    f"max_new_tokens must be in 1..{MAX_NEW_TOKENS}", field="max_new_tokens"
                )
            out = []
            seen = set()
            for i, p in enumerate(probes):
                pid, prompt = str(p["id"]), str(p["prompt"])
                if not prompt or len(prompt) > MAX_PROMPT_CHARS:
                    raise InvalidArgumentError(
                        f"probe {i}: prompt must have 1..{MAX_PROMPT_CHARS} chars",
                        field=f"probes[{i}].prompt",
                    )
                if pid in seen:
                    raise InvalidArgumentError(f"duplicate probe id {pid!r}", field="probes")
                seen.add(pid)
                out.append(Probe(pid, prompt))
            return cls(
                name=str(d["name"]),
                version=int(d["version"]),
                description=str(d.get("description", "")),
                max_new_tokens=mnt,
                buckets=tuple(str(b) for b in buckets),
                probes=tuple(out),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidArgumentError(f"malformed suite: {e!r}", field="suite") from None

    def subset(self, n: int) -> "Suite":
        """The first `n` probes (suites are stored in a seeded random order)."""
        return Suite(self.name, self.version, self.description, self.max_new_tokens,
                     self.buckets, self.probes[:n])


def _canonical(d: dict[str, Any]) -> str:
    return json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def load_suite(path: str | Path) -> Suite:
    p = Path(path)
    if p.stat().st_size > 16 * 1024 * 1024:
        raise InvalidArgumentError(f"suite file {p} is larger than 16 MiB", field="suite")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InvalidArgumentError(f"cannot read suite {p}: {e}", field="suite") from None
    return Suite.from_dict(data)


def default_suite() -> Suite:
    """The built-in suite shipped in `lineage/data/default_suite.json`."""
    text = resources.files("lineage.data").joinpath("default_suite.json").read_text("utf-8")
    return Suite.from_dict(json.loads(text))


def build_suite(
    texts: Iterable[str],
    *,
    name: str = "default",
    version: int = 1,
    n_probes: int = 256,
    n_buckets: int = 48,
    max_new_tokens: int = 32,
    seed: int = 0,
    description: str = "",
) -> Suite:
    """Mine a suite from held-out text: prompts are the first 2-6 words of a text.

    Buckets are the `n_buckets` most frequent first words of the true continuations of those
    prompts, so that a typical model puts most of its mass inside the named buckets.
    """
    rng = np.random.default_rng(seed)
    candidates: list[tuple[str, str]] = []
    for t in texts:
        words = t.split()
        if len(words) < 8:
            continue
        k = int(rng.integers(2, 7))
        prompt = " ".join(words[:k])
        if len(prompt) > 80:
            continue
        candidates.append((prompt, first_word(" ".join(words[k:]))))
    seen: set[str] = set()
    uniq = []
    for prompt, nxt in candidates:
        if prompt not in seen:
            seen.add(prompt)
            uniq.append((prompt, nxt))
    order = rng.permutation(len(uniq))
    chosen = [uniq[i] for i in order[:n_probes]]
    counts = Counter(nxt for _, nxt in uniq if nxt)
    buckets = [w for w, _ in counts.most_common(n_buckets)]
    probes = tuple(Probe(f"p{i:04d}", p) for i, (p, _) in enumerate(chosen))
    return Suite(name, version, description, max_new_tokens, tuple(buckets), probes)


def suites_equal(a: Sequence[Suite]) -> bool:
    return len({s.hash for s in a}) <= 1
