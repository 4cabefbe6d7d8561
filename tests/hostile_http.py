"""A raw-socket HTTP server on 127.0.0.1 that misbehaves on purpose (tests only).

It answers the first `ok_first` generation requests with a valid OpenAI completion (so that a
client's capability probe succeeds), then applies `behavior` to every later one. Behaviours
work below HTTP libraries, byte by byte, so that they can do what no polite server does:
trickle headers, stream forever, lie about encodings.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import socketserver
import threading
import time
from typing import Iterator

VALID = {"id": "x", "object": "text_completion", "model": "m", "choices": [{
    "index": 0, "text": " x", "finish_reason": "length",
    "logprobs": {"tokens": [" x"], "token_logprobs": [-0.5], "top_logprobs": [{" x": -0.5}]}}],
    "usage": {"completion_tokens": 1}}


def _body_with(token_logprob: str = "-0.5", top: str = '{" x": -0.5}') -> bytes:
    return ('{"choices": [{"index": 0, "text": " x", "finish_reason": "length", "logprobs": '
            '{"tokens": [" x"], "token_logprobs": [' + token_logprob + '], "top_logprobs": ['
            + top + ']}}], "usage": {"completion_tokens": 1}}').encode()


def _head(status: str = "200 OK", ctype: str | None = "application/json",
          extra: str = "", length: int | None = None, version: str = "HTTP/1.1") -> bytes:
    h = f"{version} {status}\r\n"
    if ctype is not None:
        h += f"Content-Type: {ctype}\r\n"
    if length is not None:
        h += f"Content-Length: {length}\r\n"
    return (h + extra + "\r\n").encode()


class _Handler(socketserver.BaseRequestHandler):
    server: "HostileServer"

    def handle(self) -> None:
        conn: socket.socket = self.request
        conn.settimeout(30)
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
            head, _, rest = buf.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    length = int(v.strip())
            while len(rest) < length:
                rest += conn.recv(65536)
            buf = rest[length:]
            with self.server.lock:
                self.server.requests += 1
                n = self.server.requests
            try:
                if n <= self.server.ok_first:
                    body = json.dumps(VALID).encode()
                    conn.sendall(_head(length=len(body)) + body)
                    continue
                getattr(self, "b_" + self.server.behavior)(conn)
            except OSError:
                pass
            return  # misbehaving responses end the connection

    def _forever(self, conn: socket.socket, piece: bytes, every: float) -> None:
        while not self.server.closing.is_set():
            conn.sendall(piece)
            if every:
                time.sleep(every)

    # -- behaviours -------------------------------------------------------------------------
    def b_slow_drip_body(self, conn: socket.socket) -> None:
        body = _body_with()
        conn.sendall(_head(length=len(body)))
        for b in body:  # one byte per 0.2 s: no single read waits 0.5 s
            if self.server.closing.is_set():
                return
            conn.sendall(bytes([b]))
            time.sleep(0.2)

    def b_slow_drip_headers(self, conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-Pad: ")
        self._forever(conn, b"a", 0.2)

    def b_endless_chunked_fast(self, conn: socket.socket) -> None:
        conn.sendall(_head(extra="Transfer-Encoding: chunked\r\n"))
        self._forever(conn, b"4000\r\n" + b" " * 0x4000 + b"\r\n", 0)

    def b_endless_chunked_slow(self, conn: socket.socket) -> None:
        conn.sendall(_head(extra="Transfer-Encoding: chunked\r\n") + b"1\r\n{\r\n")
        self._forever(conn, b"10\r\n" + b" " * 16 + b"\r\n", 0.1)

    def b_endless_sse(self, conn: socket.socket) -> None:
        conn.sendall(_head(ctype="text/event-stream", extra="Transfer-Encoding: chunked\r\n"))
        ev = b"data: " + json.dumps(VALID).encode() + b"\n\n"
        self._forever(conn, f"{len(ev):x}\r\n".encode() + ev + b"\r\n", 0.05)

    def b_http10_endless(self, conn: socket.socket) -> None:
        conn.sendall(_head(version="HTTP/1.0") + b'{"choices": "')
        self._forever(conn, b"x" * 65536, 0)

    def b_ctype_text_plain(self, conn: socket.socket) -> None:
        body = _body_with()
        conn.sendall(_head(ctype="text/plain", length=len(body)) + body)

    def b_ctype_missing(self, conn: socket.socket) -> None:
        body = _body_with()
        conn.sendall(_head(ctype=None, length=len(body)) + body)

    def b_ctype_jsonish(self, conn: socket.socket) -> None:
        body = _body_with()
        conn.sendall(_head(ctype="application/jsonx", length=len(body)) + body)

    def b_ctype_octet(self, conn: socket.socket) -> None:
        body = _body_with()
        conn.sendall(_head(ctype="application/octet-stream", length=len(body)) + body)

    def b_gzip_bomb(self, conn: socket.socket) -> None:
        body = self.server.bomb
        conn.sendall(_head(length=len(body), extra="Content-Encoding: gzip\r\n") + body)

    def _lp(self, conn: socket.socket, body: bytes) -> None:
        conn.sendall(_head(length=len(body)) + body)

    def b_logprob_plus_inf(self, conn: socket.socket) -> None:
        self._lp(conn, _body_with("Infinity"))

    def b_logprob_minus_inf(self, conn: socket.socket) -> None:
        self._lp(conn, _body_with("-Infinity"))

    def b_logprob_overflow(self, conn: socket.socket) -> None:
        self._lp(conn, _body_with("1e999"))

    def b_logprob_nan(self, conn: socket.socket) -> None:
        self._lp(conn, _body_with("NaN"))

    def b_top_logprob_nan(self, conn: socket.socket) -> None:
        self._lp(conn, _body_with(top='{" x": NaN}'))

    def b_logprob_positive(self, conn: socket.socket) -> None:
        self._lp(conn, _body_with("5.0"))

    def b_logprob_string(self, conn: socket.socket) -> None:
        self._lp(conn, _body_with('"nan"'))

    def b_huge_header(self, conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 300_000 + b"\r\n\r\n")

    def b_redirect(self, conn: socket.socket) -> None:
        conn.sendall(_head(status="302 Found", length=0,
                           extra="Location: http://169.254.169.254/latest/meta-data/\r\n"))


class HostileServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, behavior: str, ok_first: int = 1) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.behavior, self.ok_first = behavior, ok_first
        self.requests = 0
        self.lock = threading.Lock()
        self.closing = threading.Event()
        self.bomb = gzip.compress(b"[" + b" " * (200 << 20) + b"]", compresslevel=9) \
            if behavior == "gzip_bomb" else b""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


BEHAVIORS = [n[2:] for n in dir(_Handler) if n.startswith("b_")]


@contextlib.contextmanager
def hostile(behavior: str, ok_first: int = 1) -> Iterator[HostileServer]:
    srv = HostileServer(behavior, ok_first)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        srv.closing.set()
        srv.shutdown()
        srv.server_close()
