"""Opaque AIP-158 page tokens: which list they belong to, and where the last page ended.

A token is urlsafe-base64 JSON. It is not a secret and not signed: it only says where to resume,
and a token from another list, or with other filters, is refused with INVALID_ARGUMENT.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from lineage.errors import InvalidArgumentError

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "decode", "encode", "page_size"]

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


def page_size(n: int) -> int:
    """0 -> the default; above the maximum -> the maximum (AIP-158); negative -> error."""
    if n < 0:
        raise InvalidArgumentError("page_size must be >= 0", field="page_size")
    return DEFAULT_PAGE_SIZE if n == 0 else min(n, MAX_PAGE_SIZE)


def encode(kind: str, after: Any, **filters: Any) -> str:
    raw = json.dumps({"k": kind, "a": after, "f": filters}, sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(token: str, kind: str, **filters: Any) -> Any:
    """The resume point of `token` (None for an empty token)."""
    if not token:
        return None
    try:
        d = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        ok = isinstance(d, dict) and d.get("k") == kind and d.get("f") == filters and "a" in d
    except (ValueError, binascii.Error, RecursionError):  # RecursionError: "[[[[..." tokens
        ok = False
    if not ok:
        raise InvalidArgumentError("page_token is invalid or belongs to another request",
                                   field="page_token")
    return d["a"]
