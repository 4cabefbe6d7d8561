"""A loopback OpenAI-protocol server over a local model: the test fixture standing in for vLLM.

Serves `GET /v1/models`, `POST /v1/completions` (legacy `logprobs=k`) and
`POST /v1/chat/completions` (`logprobs`, `top_logprobs`) from a `LocalHFBackend`, plus
`GET /_stats`. Every request is counted; `queries` counts requests to the two generation
endpoints, whatever their outcome, which is what a client's query budget must match.

Switches: `logprobs=False` serves text only (logprob requests get `logprobs: null`, like a
server without them); `chat_only=True` answers 404 on /v1/completions; `echo=True` (the
default) answers completions asked with ``echo: true`` as vLLM does: the prompt tokenized as one
text, each token's logprob (null for the document-start token) and character offset, then the
generated text; `echo=False` ignores the parameter, as llama.cpp's server does. Faults for tests
(`set_fault`), applied to generation requests: timeout (hang), 429 (with Retry-After), 500,
garbage (non-JSON), content_type (HTML), oversized (50 MB, declared), oversized_stream
(50 MB, no Content-Length), nan (NaN logprob), nologprobs (logprobs dropped), wrong_shape
(no choices), reset (TCP RST without a response).

Use `serve_model(path)` or `serve_backend(backend)`: context managers yielding (base_url, server).
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

__all__ = ["Fault", "OpenAIServer", "serve_backend", "serve_model", "FAULTS"]

FAULTS = ("timeout", "429", "500", "garbage", "content_type", "oversized", "oversized_stream",
          "nan", "nologprobs", "wrong_shape", "reset")
BIG = 50 * 1024 * 1024


@dataclass
class Fault:
    kind: str
    times: int | None = None  # how many generation requests it hits; None: all
    skip: int = 0  # generation requests let through before it starts
    retry_after: str = "1"
    hang_s: float = 10.0


class OpenAIServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, backend: Any, *, logprobs: bool = True, chat_only: bool = False,
                 model_name: str = "tiny", echo: bool = True) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.backend, self.logprobs, self.chat_only = backend, logprobs, chat_only
        self.echo = echo
        self.model_name = model_name
        self.requests = 0  # every HTTP request
        self.queries = 0  # requests to the generation endpoints
        self.fault: Fault | None = None
        self.last_auth: str | None = None  # Authorization header of the last request
        self._lock = threading.Lock()
        self.gen_lock = threading.Lock()  # one generation at a time on the model
        self.closing = threading.Event()
        self._conns: set[Any] = set()
        self._handlers: list[threading.Thread] = []

    def set_fault(self, kind: str | None, **kw: Any) -> None:
        if kind is not None and kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}")
        with self._lock:
            self.fault = Fault(kind, **kw) if kind else None

    def reset_counts(self) -> None:
        with self._lock:
            self.requests = self.queries = 0

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"requests": self.requests, "queries": self.queries}

    def count(self, generation: bool) -> str | None:
        """Count one request; for generation requests, return the fault to apply (if any)."""
        with self._lock:
            self.requests += 1
            if not generation:
                return None
            self.queries += 1
            f = self.fault
            if f is None:
                return None
            if f.skip > 0:
                f.skip -= 1
                return None
            if f.times is not None:
                if f.times <= 0:
                    return None
                f.times -= 1
            return f.kind

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # faults break connections on purpose

    def process_request(self, request: Any, client_address: Any) -> None:
        # Track connections and handler threads so that `stop` can end keep-alive handlers
        # before the interpreter exits (a daemon thread that ran torch aborts the process).
        t = threading.Thread(target=self.process_request_thread, args=(request, client_address),
                             daemon=True)
        with self._lock:
            self._conns.add(request)
            self._handlers = [h for h in self._handlers if h.is_alive()] + [t]
        t.start()

    def shutdown_request(self, request: Any) -> None:
        with self._lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def stop(self) -> None:
        """Stop serving, drop open connections and wait for handler threads."""
        self.closing.set()
        self.shutdown()
        with self._lock:
            conns, handlers = list(self._conns), list(self._handlers)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
        for h in handlers:
            h.join(timeout=5)
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: OpenAIServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, ctype: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers=headers)

    def _error(self, status: int, msg: str, headers: dict[str, str] | None = None) -> None:
        self._json(status, {"error": {"message": msg, "code": status}}, headers)

    def do_GET(self) -> None:
        self.server.count(False)
        if self.path == "/v1/models":
            self._json(200, {"object": "list", "data": [
                {"id": self.server.model_name, "object": "model", "owned_by": "lineage-tests"}]})
        elif self.path == "/_stats":
            self._json(200, self.server.stats())
        else:
            self._error(404, f"no route {self.path}")

    def do_POST(self) -> None:
        chat = self.path == "/v1/chat/completions"
        gen = chat or self.path == "/v1/completions"
        fault = self.server.count(gen)
        self.server.last_auth = self.headers.get("Authorization")
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(min(length, 1 << 20))
        if not gen or (self.server.chat_only and not chat):
            return self._error(404, f"no route {self.path}")
        if fault and self._fault_before(fault):
            return
        try:
            req = json.loads(raw)
            body = self._generate(req, chat)
        except (ValueError, TypeError, KeyError) as e:
            return self._error(400, f"bad request: {e}")
        if body is None:
            return self._error(404, "model not found")
        if fault == "nan":
            _poison(body, chat)
        elif fault == "nologprobs":
            body["choices"][0]["logprobs"] = None
        elif fault == "wrong_shape":
            body["choices"] = []
        self._send(200, json.dumps(body).encode())  # json.dumps writes NaN as-is

    def _fault_before(self, fault: str) -> bool:
        """Faults that replace the response entirely; True if one was served."""
        if fault == "timeout":
            self.server.closing.wait(self.server.fault.hang_s if self.server.fault else 10.0)
            self.close_connection = True
        elif fault == "429":
            ra = self.server.fault.retry_after if self.server.fault else "1"
            self._error(429, "rate limited", {"Retry-After": ra})
        elif fault == "500":
            self._error(500, "internal error")
        elif fault == "garbage":
            self._send(200, b"{\"choices\": [ this is not json")
        elif fault == "content_type":
            self._send(200, b"<html><body>gateway</body></html>", ctype="text/html")
        elif fault in ("oversized", "oversized_stream"):
            self._oversized(declared=fault == "oversized")
        elif fault == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
        else:
            return False
        return True

    def _oversized(self, declared: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if declared:
            self.send_header("Content-Length", str(BIG))
        else:
            self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        chunk = b" " * 65536
        with contextlib.suppress(OSError):
            self.wfile.write(b'{"pad": "')
            for _ in range(BIG // len(chunk)):
                self.wfile.write(chunk)

    def _generate(self, req: dict[str, Any], chat: bool) -> dict[str, Any] | None:
        s = self.server
        if req.get("model") != s.model_name:
            return None
        if chat:
            msgs = req["messages"]
            prompt = next(m["content"] for m in reversed(msgs) if m.get("role") == "user")
            k = int(req.get("top_logprobs") or 0) if req.get("logprobs") else 0
        else:
            prompt = req["prompt"]
            k = int(req.get("logprobs") or 0)
        if not isinstance(prompt, str) or not 0 <= k <= 20:
            raise ValueError("prompt must be a string and logprobs in 0..20")
        n = int(req.get("n") or 1)
        k = k if s.logprobs else 0
        if not chat and req.get("echo") and s.echo and k:
            return _echo(s, req, prompt)
        with s.gen_lock:
            rows = s.backend.sample([prompt], n=n, max_new_tokens=int(req.get("max_tokens") or 16),
                                    temperature=float(req.get("temperature", 1.0)),
                                    seed=int(req.get("seed") or 0), top_logprobs=k)
        choices = [_choice(i, smp, k, chat) for i, smp in enumerate(rows[0])]
        ntok = sum(smp.n_tokens for smp in rows[0])
        return {"id": f"cmpl-{s.queries}", "created": int(time.time()), "model": s.model_name,
                "object": "chat.completion" if chat else "text_completion", "choices": choices,
                "usage": {"prompt_tokens": 0, "completion_tokens": ntok, "total_tokens": ntok}}


def _echo(s: OpenAIServer, req: dict[str, Any], prompt: str) -> dict[str, Any]:
    """vLLM's echo: every prompt token's logprob and offset, then the generated text."""
    import torch

    b = s.backend
    enc = b.tokenizer(prompt, add_special_tokens=False, return_offsets_mapping=True)
    start = b.tokenizer.bos_token_id if b.tokenizer.bos_token_id is not None \
        else b.tokenizer.eos_token_id
    ids = [start] + list(enc["input_ids"])
    if len(ids) + 1 > b.max_len:
        raise ValueError(f"prompt is {len(ids)} tokens; the context is {b.max_len}")
    with s.gen_lock, torch.inference_mode():
        logits = b.model(input_ids=torch.tensor([ids])).logits[0].float()
        lp = torch.log_softmax(logits, -1)
        token_lps = [None] + [float(lp[i, ids[i + 1]]) for i in range(len(ids) - 1)]
        gen = b.sample([prompt], n=1, max_new_tokens=max(1, int(req.get("max_tokens") or 1)),
                       temperature=float(req.get("temperature", 1.0)),
                       seed=int(req.get("seed") or 0), top_logprobs=1)[0][0]
    offs = [0] + [a for a, _ in enc["offset_mapping"]]
    toks = [""] + [prompt[a:e] for a, e in enc["offset_mapping"]]
    toks.append(gen.text)
    offs.append(len(prompt))
    token_lps.append(sum(gen.token_logprobs or (0.0,)))
    return {"id": f"cmpl-{s.queries}", "created": int(time.time()), "model": s.model_name,
            "object": "text_completion",
            "choices": [{"index": 0, "text": prompt + gen.text, "finish_reason": "length",
                         "logprobs": {"tokens": toks, "token_logprobs": token_lps,
                                      "text_offset": offs,
                                      "top_logprobs": [None] * len(toks)}}],
            "usage": {"prompt_tokens": len(ids), "completion_tokens": gen.n_tokens,
                      "total_tokens": len(ids) + gen.n_tokens}}


def _choice(i: int, smp: Any, k: int, chat: bool) -> dict[str, Any]:
    lp: Any = None
    if k and smp.token_logprobs is not None:
        toks = [next((t for t, v in top.items() if v == x), "<?>")
                for x, top in zip(smp.token_logprobs, smp.top_logprobs)]
        if chat:
            lp = {"content": [
                {"token": t, "logprob": x, "bytes": None,
                 "top_logprobs": [{"token": a, "logprob": b, "bytes": None}
                                  for a, b in top.items()]}
                for t, x, top in zip(toks, smp.token_logprobs, smp.top_logprobs)]}
        else:
            lp = {"tokens": toks, "token_logprobs": list(smp.token_logprobs),
                  "top_logprobs": [dict(top) for top in smp.top_logprobs], "text_offset": []}
    out: dict[str, Any] = {"index": i, "logprobs": lp, "finish_reason": "length"}
    if chat:
        out["message"] = {"role": "assistant", "content": smp.text}
    else:
        out["text"] = smp.text
    return out


def _poison(body: dict[str, Any], chat: bool) -> None:
    lp = body["choices"][0].get("logprobs")
    if lp is None:
        body["usage"]["completion_tokens"] = float("nan")
        body["choices"][0]["text"] = float("nan")
    elif chat:
        lp["content"][0]["logprob"] = float("nan")
    else:
        lp["token_logprobs"][0] = float("nan")


@contextlib.contextmanager
def serve_backend(backend: Any, *, logprobs: bool = True, chat_only: bool = False,
                  model_name: str = "tiny", echo: bool = True
                  ) -> Iterator[tuple[str, OpenAIServer]]:
    """Serve an already-loaded backend on 127.0.0.1:<free port>; yields (base_url, server)."""
    server = OpenAIServer(backend, logprobs=logprobs, chat_only=chat_only, model_name=model_name,
                          echo=echo)
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", server
    finally:
        server.stop()
        t.join(timeout=5)


@contextlib.contextmanager
def serve_model(path: str | Path, *, logprobs: bool = True, chat_only: bool = False,
                model_name: str = "tiny", echo: bool = True
                ) -> Iterator[tuple[str, OpenAIServer]]:
    """Load the HF model at `path` (CPU) and serve it; yields (base_url, server)."""
    from lineage.backends.local_hf import LocalHFBackend

    backend = LocalHFBackend(path, device="cpu")
    with serve_backend(backend, logprobs=logprobs, chat_only=chat_only,
                       model_name=model_name, echo=echo) as out:
        yield out
