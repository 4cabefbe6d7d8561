"""Defences for talking to untrusted HTTP endpoints: body-size caps, deadlines, rate limits.

Owns the pieces of the HTTP backends that do not depend on the OpenAI protocol:
- `BoundedTransport`: an `httpx` transport that refuses a response whose body would pass
  `max_bytes` (declared by Content-Length or counted while streaming), one that takes longer
  than `deadline_s` in all, headers included (the read timeout alone lets a server trickle a
  byte every few seconds forever: every socket read gets at most the time left before the
  deadline), and compressed ones (it asks for `identity`; a gzip bomb would inflate past any
  byte count taken on the wire);
- `RateLimiter`: at most `rps` request starts per second across threads;
- `retry_after_s`: the server's requested wait from `Retry-After` / `retry-after-ms` headers;
- `strict_json`: JSON decoding that rejects NaN and Infinity, which Python's `json` accepts.
"""

from __future__ import annotations

import email.utils
import json
import math
import threading
import time
from typing import Any, Iterator, Mapping

import httpx
import httpcore

__all__ = ["BoundedTransport", "ResponseRejected", "RateLimiter", "retry_after_s", "strict_json"]


class ResponseRejected(Exception):
    """A response that broke a bound (size or time). Not an httpx error, so no client retries it."""


class _BoundedStream(httpx.SyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream, max_bytes: int, deadline: float,
                 deadline_s: float) -> None:
        self._inner, self._max, self._deadline, self._deadline_s = (
            inner, max_bytes, deadline, deadline_s)

    def __iter__(self) -> Iterator[bytes]:
        seen = 0
        for chunk in self._inner:
            seen += len(chunk)
            if seen > self._max:
                raise ResponseRejected(f"response body exceeds {self._max} bytes")
            if time.monotonic() > self._deadline:
                raise ResponseRejected(f"response took longer than {self._deadline_s:g}s")
            yield chunk

    def close(self) -> None:
        self._inner.close()


_local = threading.local()  # the current request's deadline, per thread (httpcore sync I/O
#                             runs in the calling thread)


def _left(default: float | None) -> float | None:
    """The socket timeout to use now: the read timeout, cut to the time left before the
    current request's deadline; raises when that deadline has passed."""
    dl = getattr(_local, "deadline", None)
    if dl is None:
        return default
    left = dl - time.monotonic()
    if left <= 0:
        raise ResponseRejected(f"response took longer than {_local.deadline_s:g}s in all "
                               "(a server trickling bytes?)")
    return left if default is None else min(default, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        t = _left(timeout)
        try:
            return self._inner.read(max_bytes, t)
        except httpcore.ReadTimeout:
            _left(None)  # the deadline, not the read timeout, cut it short: say so
            raise

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _left(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname,
                                                     _left(timeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Any = None) -> httpcore.NetworkStream:
        return _DeadlineStream(self._inner.connect_tcp(
            host, port, _left(timeout), local_address=local_address,
            socket_options=socket_options))

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Any = None) -> httpcore.NetworkStream:
        return _DeadlineStream(self._inner.connect_unix_socket(
            path, _left(timeout), socket_options=socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _deadline_transport() -> httpx.HTTPTransport:
    """httpx's own transport, with every socket operation bound by the request deadline."""
    t = httpx.HTTPTransport(retries=0)
    pool = getattr(t, "_pool", None)
    if pool is None or not hasattr(pool, "_network_backend"):  # httpx/httpcore internals moved
        raise RuntimeError("cannot install the response deadline on this httpx version")
    pool._network_backend = _DeadlineBackend(pool._network_backend)
    return t


class BoundedTransport(httpx.BaseTransport):
    """Wraps `httpx.HTTPTransport`; bounds every response in bytes and in wall-clock time
    (headers and body together), and refuses compressed bodies."""

    def __init__(self, *, max_bytes: int, deadline_s: float,
                 inner: httpx.BaseTransport | None = None) -> None:
        self._inner = inner or _deadline_transport()
        self.max_bytes = max_bytes
        self.deadline_s = deadline_s

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        deadline = time.monotonic() + self.deadline_s
        _local.deadline, _local.deadline_s = deadline, self.deadline_s
        request.headers["Accept-Encoding"] = "identity"
        resp = self._inner.handle_request(request)
        enc = resp.headers.get("content-encoding", "").strip().lower()
        if enc not in ("", "identity"):
            resp.close()
            raise ResponseRejected(
                f"compressed response (content-encoding {enc[:40]!r}) refused; asked for identity")
        declared = resp.headers.get("content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > self.max_bytes:
            resp.close()
            raise ResponseRejected(
                f"response body declares {int(declared)} bytes; the limit is {self.max_bytes}")
        assert isinstance(resp.stream, httpx.SyncByteStream)
        resp.stream = _BoundedStream(resp.stream, self.max_bytes, deadline, self.deadline_s)
        return resp

    def close(self) -> None:
        self._inner.close()


class RateLimiter:
    """Spaces request starts at least 1/rps seconds apart, across threads. rps <= 0: no limit."""

    def __init__(self, rps: float) -> None:
        self._interval = 1.0 / rps if rps > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        if not self._interval:
            return
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self._interval
        if slot > now:
            time.sleep(slot - now)


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asked us to wait, or None. Accepts `retry-after-ms` (OpenAI),
    `Retry-After: <seconds>` and `Retry-After: <HTTP-date>`; garbage counts as absent."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            v = float(ms) / 1000.0
            if 0 <= v < float("inf"):
                return v
        except ValueError:
            pass
    ra = headers.get("retry-after")
    if ra is None:
        return None
    try:
        v = float(ra)
        return v if 0 <= v < float("inf") else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(ra)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name} in JSON")


def _finite_float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        _reject_constant(text)
    return v


def strict_json(body: bytes) -> Any:
    """Decode UTF-8 JSON; raises ValueError on bad encoding, bad syntax, NaN or Infinity."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"body is not UTF-8 ({e.reason})") from None
    return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
