"""The ``hf:ORG/NAME[@REVISION]`` scheme: a Hugging Face Hub model, fetched without pickles.

Only the files a safetensors model needs are downloaded (`ALLOW_PATTERNS`); the snapshot is
then opened with `LocalHFBackend`, which runs the same safety checks as for a local directory.
Resolution honours the usual `huggingface_hub` environment (`HF_HUB_CACHE`, `HF_HUB_OFFLINE=1`,
`HF_TOKEN`), so an offline machine resolves from its cache and fails clearly otherwise.
"""

from __future__ import annotations

import re

from lineage.backends.base import ModelBackend
from lineage.errors import InvalidArgumentError, ModelLoadError

__all__ = ["parse_hf_uri", "resolve_hf", "open_hf", "ALLOW_PATTERNS"]

ALLOW_PATTERNS = [
    "config.json", "*.safetensors", "tokenizer.json", "tokenizer_config.json",
    "special_tokens_map.json", "generation_config.json",
]
_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_REPO = re.compile(rf"^{_PART}/{_PART}$")
_REV = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$")


def parse_hf_uri(uri: str) -> tuple[str, str | None]:
    """``hf:org/name@rev`` -> ("org/name", "rev"); the revision is None when omitted."""
    if not uri.startswith("hf:"):
        raise InvalidArgumentError(f"not an hf: URI: {uri!r}", field="model")
    body = uri[3:]
    repo, sep, rev = body.partition("@")
    if not _REPO.match(repo) or ".." in repo:
        raise InvalidArgumentError(
            f"bad hub id in {uri!r}: expected hf:ORG/NAME[@REVISION]", field="model")
    if sep and (not _REV.match(rev) or ".." in rev):
        raise InvalidArgumentError(f"bad revision in {uri!r}", field="model")
    return repo, (rev if sep else None)


def resolve_hf(uri: str) -> tuple[str, str | None, str]:
    """Download (or find in the cache) the snapshot; returns (repo, revision, local path)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    repo, rev = parse_hf_uri(uri)
    try:
        path = snapshot_download(repo_id=repo, revision=rev, allow_patterns=ALLOW_PATTERNS)
    except LocalEntryNotFoundError as e:
        raise ModelLoadError(f"{uri}: not in the local Hugging Face cache and the hub cannot "
                             f"be reached (offline?): {str(e)[:200]}") from None
    except (HfHubHTTPError, OSError, ValueError) as e:
        raise ModelLoadError(f"{uri}: cannot fetch from the Hugging Face Hub: "
                             f"{str(e)[:200]}") from None
    return repo, rev, str(path)


def open_hf(uri: str, max_queries: int | None) -> ModelBackend:
    """The `open_model` opener for ``hf:`` URIs."""
    from pathlib import Path

    from lineage.backends.local_hf import LocalHFBackend

    repo, rev, path = resolve_hf(uri)
    backend = LocalHFBackend(path, max_queries=max_queries)
    backend.identity = {**backend.identity, "hf_repo": repo, "hf_revision": rev or "main",
                        "hf_commit": Path(path).name}
    return backend
