"""Keep a long-running server's resident memory flat under glibc.

A server runs scans on many threads. glibc gives each thread that allocates its own malloc
arena (up to 8 per core), and memory freed in one arena is not reused by another, so the
resident size can creep up with the number of scans served even when nothing is leaked. A
30-minute soak (`benchmarks/soak.py`) grew 20% before these remedies and -0.6% after them
(together with a cache of loaded suspect weights); no leak check told the causes apart. Two
standard remedies:

- `limit_arenas(n)`: `mallopt(M_ARENA_MAX, n)` before the worker threads exist;
- `trim()`: `malloc_trim(0)` hands free pages in every arena back to the kernel; the server
  calls it periodically.

Both are no-ops where the C library is not glibc. `LINEAGE_MALLOC_ARENAS=0` leaves the arena
count alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

__all__ = ["ARENAS", "limit_arenas", "trim"]

M_ARENA_MAX = -8
ARENAS = int(os.environ.get("LINEAGE_MALLOC_ARENAS", "2"))


def _libc() -> ctypes.CDLL | None:
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        lib.mallopt, lib.malloc_trim  # noqa: B018 -- glibc only
        return lib
    except (OSError, AttributeError):
        return None


_LIBC = _libc()


def limit_arenas(n: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas at n (n <= 0: leave it). True when applied."""
    if _LIBC is None or n <= 0:
        return False
    return bool(_LIBC.mallopt(M_ARENA_MAX, int(n)))


def trim() -> bool:
    """Return free heap pages to the kernel. True when some memory was released."""
    if _LIBC is None:
        return False
    return bool(_LIBC.malloc_trim(0))
