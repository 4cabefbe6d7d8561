"""Backends: how lineage reaches a model. `open_model` turns a model URI into a backend.

Registry of URI schemes (one adapter per backend, no if/elif factory growing without bound):
- a local directory in Hugging Face format -> `LocalHFBackend`
- ``hf:ORG/NAME[@REVISION]`` -> a Hub snapshot (safetensors only) opened with `LocalHFBackend`
- ``openai+http(s)://HOST:PORT/v1?model=NAME&access=logprobs|text`` -> `OpenAIHTTPBackend`
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from lineage.backends.base import AccessMode, ModelBackend, ModelView, Sample, Usage, view
from lineage.errors import InvalidArgumentError

__all__ = [
    "AccessMode", "ModelBackend", "ModelView", "Sample", "Usage", "view",
    "open_model", "register_scheme", "SCHEMES", "check_uri", "MAX_URI",
]

MAX_URI = 4096

Opener = Callable[[str, "int | None"], ModelBackend]
SCHEMES: dict[str, Opener] = {}


def register_scheme(prefix: str, opener: Opener) -> None:
    """Route URIs starting with `prefix` (e.g. "hf:", "openai+http") to `opener`."""
    SCHEMES[prefix] = opener


def _open_local(uri: str, max_queries: int | None) -> ModelBackend:
    from lineage.backends.local_hf import LocalHFBackend

    return LocalHFBackend(uri, max_queries=max_queries)


def _open_hf(uri: str, max_queries: int | None) -> ModelBackend:
    from lineage.backends.hub import open_hf

    return open_hf(uri, max_queries)


def _open_openai(uri: str, max_queries: int | None) -> ModelBackend:
    from lineage.backends.openai_http import open_openai

    return open_openai(uri, max_queries)


register_scheme("hf:", _open_hf)
register_scheme("openai+http://", _open_openai)
register_scheme("openai+https://", _open_openai)


def check_uri(uri: str, field: str = "model") -> str:
    """Refuse model URIs no backend could mean: too long, or with NUL / control characters
    (which the OS rejects with errors that are not LineageErrors)."""
    if not isinstance(uri, str) or not uri:
        raise InvalidArgumentError("model URI is empty", field=field)
    if len(uri) > MAX_URI:
        raise InvalidArgumentError(f"model URI is {len(uri)} chars; the limit is {MAX_URI}",
                                   field=field)
    if any(ord(c) < 32 or ord(c) == 127 for c in uri):
        raise InvalidArgumentError("model URI contains control characters", field=field)
    return uri


def open_model(uri: str, *, max_queries: int | None = None) -> ModelBackend:
    """Open `uri`: a registered scheme prefix, else a local directory."""
    check_uri(uri)
    for prefix, opener in SCHEMES.items():
        if uri.startswith(prefix):
            return opener(uri, max_queries)
    if "://" in uri:
        known = ", ".join(sorted(SCHEMES)) or "none"
        raise InvalidArgumentError(f"unsupported model URI {uri!r} (schemes: {known})",
                                   field="model")
    try:
        exists = Path(uri).exists()
    except (OSError, ValueError) as e:  # e.g. a path component longer than NAME_MAX
        raise InvalidArgumentError(f"bad model path: {e.strerror if isinstance(e, OSError) else e}",
                                   field="model") from None
    if not exists:
        raise InvalidArgumentError(f"model path does not exist: {uri}", field="model")
    return _open_local(uri, max_queries)
