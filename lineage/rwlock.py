"""A readers-writer lock: many readers at once, or one writer, writers first.

Used by `index.SignatureIndex`: faiss indexes are safe to search from many threads at once,
but not while one thread adds or removes vectors (a search could read a list mid-resize).
Writers take precedence over new readers, so a stream of searches cannot starve a
registration. The writer side is reentrant (a write may call another write, or a read);
a read must not be upgraded to a write (it would wait for itself).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["RWLock"]


class RWLock:
    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer: int | None = None  # the writing thread's ident
        self._depth = 0  # the writer's reentrancy depth
        self._waiting = 0  # writers waiting

    @contextmanager
    def read(self) -> Iterator[None]:
        me = threading.get_ident()
        with self._cond:
            if self._writer == me:  # the writer reads what it holds
                own = True
            else:
                own = False
                while self._writer is not None or self._waiting:
                    self._cond.wait()
                self._readers += 1
        try:
            yield
        finally:
            if not own:
                with self._cond:
                    self._readers -= 1
                    if self._readers == 0:
                        self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        me = threading.get_ident()
        with self._cond:
            if self._writer == me:
                self._depth += 1
            else:
                self._waiting += 1
                try:
                    while self._writer is not None or self._readers:
                        self._cond.wait()
                finally:
                    self._waiting -= 1
                self._writer, self._depth = me, 1
        try:
            yield
        finally:
            with self._cond:
                self._depth -= 1
                if self._depth == 0:
                    self._writer = None
                    self._cond.notify_all()
