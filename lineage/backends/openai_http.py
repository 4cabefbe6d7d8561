"""OpenAI-compatible HTTP backend: a suspect behind `/v1/completions` or `/v1/chat/completions`.

URI: ``openai+http://HOST:PORT/v1?model=NAME&access=logprobs|text`` (or ``openai+https://``).
Optional query parameters: ``rps`` (request starts per second, default 5), ``concurrency``
(parallel requests, default 4), ``timeout`` (read timeout in seconds, default 30),
``retries`` (default 3), ``top_logprobs`` (k asked for when probing logprobs, 1..20, default 5),
``echo`` (0 or 1, default 0; logprobs access only: the endpoint also scores given text through
``echo=true`` prompt logprobs, as vLLM's /v1/completions does; see `echo_score`).
The API key is read from the environment variable ``LINEAGE_OPENAI_API_KEY`` (see `ENV_API_KEY`);
none is needed for a local server. The key never enters the identity, logs or errors.

Capabilities are probed once, with one max_tokens=1 request per endpoint tried, and every probe
request is counted as a query. The completions endpoint is preferred (lineage's prompts are text
prefixes to continue); chat is the fallback. `logprobs` is offered only if the server returned
valid logprobs to the probe. `echo` is used only when the URI asks for it (``echo=1``), and the
probe then sends one echo request too and fails if its prompt logprobs are not valid.
`access=text` never asks for logprobs at all.

Accounting: every HTTP attempt to a generation endpoint is one query, reserved with
`usage.reserve(1)` before it is sent. Retries therefore cost queries, so the count the server
sees equals `usage.queries` and never passes the cap. One request asks for one completion (n=1).
Retries: 429/5xx, timeouts and dropped connections, honouring Retry-After up to a cap. Anything
else a server does wrong (non-JSON, NaN, wrong shape, too big, too slow) is a `BackendError`
naming the endpoint. `word_distribution` and `score` need full logits and raise AccessModeError;
`echo_score` sends one request (one query, with its retries) per text.
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Sequence
from urllib.parse import parse_qsl, urlsplit

from lineage.backends.base import MAX_TOP_LOGPROBS, AccessMode, Sample, Usage
from lineage.backends.http_guard import BoundedTransport, RateLimiter, ResponseRejected
from lineage.backends.http_guard import retry_after_s, strict_json
from lineage.backends.openai_parse import parse_echo, parse_response
from lineage.errors import AccessModeError, BackendError, InvalidArgumentError

__all__ = ["OpenAIHTTPBackend", "HTTPSettings", "ENV_API_KEY", "parse_uri", "open_openai"]

ENV_API_KEY = "LINEAGE_OPENAI_API_KEY"
RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
UNSUPPORTED_STATUS = frozenset({400, 404, 405, 422, 501})  # probe: try the next endpoint
PROBE_PROMPT = "The"
MAX_SAMPLES_PER_PROMPT = 64


@dataclass(frozen=True)
class HTTPSettings:
    """Bounds on one endpoint. Worst case per request: (retries + 1) * (deadline_s + waits)."""

    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0
    deadline_s: float = 120.0  # wall clock for one attempt's whole response body
    retries: int = 3
    backoff_s: float = 0.5  # first backoff without Retry-After; doubles, jittered
    max_wait_s: float = 60.0  # a longer Retry-After fails at once instead of waiting
    max_response_bytes: int = 1 << 20
    max_text_chars: int = 65_536
    max_new_tokens: int = 1024
    rps: float = 5.0
    concurrency: int = 4
    top_logprobs: int = 5
    echo: bool = False  # score given text through echo=true prompt logprobs (completions only)


_URI_KEYS = {"model", "access", "rps", "concurrency", "timeout", "retries", "top_logprobs",
             "echo"}
ECHO_PROBE = ("The cat", " sat on the mat.")


def parse_uri(uri: str) -> tuple[str, str, AccessMode, HTTPSettings]:
    """``openai+http(s)://…?model=…&access=…`` -> (base_url, model, access, settings)."""
    def bad(msg: str) -> InvalidArgumentError:
        return InvalidArgumentError(f"bad OpenAI endpoint URI {uri!r}: {msg}", field="model")

    if not uri.startswith(("openai+http://", "openai+https://")):
        raise bad("expected openai+http:// or openai+https://")
    try:
        parts = urlsplit(uri[len("openai+"):])
        port = parts.port
        query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError as e:
        raise bad(str(e)) from None
    if not parts.hostname:
        raise bad("no host")
    if parts.username or parts.password:
        raise bad(f"put credentials in ${ENV_API_KEY}, not in the URI")
    keys = [k for k, _ in query]
    if len(set(keys)) != len(keys) or set(keys) - _URI_KEYS:
        extra = sorted(set(keys) - _URI_KEYS) or ["duplicate keys"]
        raise bad(f"unknown or repeated parameters {extra}; allowed: {sorted(_URI_KEYS)}")
    q = dict(query)
    model = q.get("model", "")
    if not model or len(model) > 256 or any(c.isspace() for c in model):
        raise bad("model=NAME is required (no spaces, at most 256 chars)")
    if "access" not in q:
        raise bad("access=logprobs or access=text is required")
    access = AccessMode.parse(q["access"])
    if access is AccessMode.FULL:
        raise bad("an HTTP endpoint offers access=logprobs or access=text, not full")
    if q.get("echo", "0") not in ("0", "1"):
        raise bad("echo must be 0 or 1")
    if q.get("echo") == "1" and access is not AccessMode.LOGPROBS:
        raise bad("echo=1 needs access=logprobs")
    s = HTTPSettings()
    try:
        s = replace(
            s,
            rps=float(q.get("rps", s.rps)),
            concurrency=int(q.get("concurrency", s.concurrency)),
            read_timeout_s=float(q.get("timeout", s.read_timeout_s)),
            retries=int(q.get("retries", s.retries)),
            top_logprobs=int(q.get("top_logprobs", s.top_logprobs)),
            echo=q.get("echo") == "1",
        )
    except ValueError as e:
        raise bad(str(e)) from None
    if not (0 < s.rps <= 1000 and 1 <= s.concurrency <= 64 and 0 < s.read_timeout_s <= 600
            and 0 <= s.retries <= 10 and 1 <= s.top_logprobs <= MAX_TOP_LOGPROBS):
        raise bad("rps in (0,1000], concurrency 1..64, timeout (0,600], retries 0..10, "
                  f"top_logprobs 1..{MAX_TOP_LOGPROBS}")
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    netloc = host + (f":{port}" if port else "")
    base = f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"
    return base, model, access, s


def open_openai(uri: str, max_queries: int | None) -> "OpenAIHTTPBackend":
    """The `open_model` opener for ``openai+http(s)://`` URIs."""
    base, model, access, settings = parse_uri(uri)
    return OpenAIHTTPBackend(base, model, access, settings=settings, max_queries=max_queries)


class _Unsupported(BackendError):
    """A 4xx that means "this endpoint or parameter is not offered" (used by the probe)."""


class OpenAIHTTPBackend:
    """A remote model over the OpenAI protocol: text always, top-k logprobs if probed."""

    def __init__(self, base_url: str, model: str, access: AccessMode | str = AccessMode.TEXT,
                 *, settings: HTTPSettings | None = None, max_queries: int | None = None,
                 api_key: str | None = None) -> None:
        import httpx
        from openai import OpenAI

        self.base_url, self.model = base_url.rstrip("/"), model
        self.access = AccessMode.parse(access)
        self.s = settings or HTTPSettings()
        self.usage = Usage(max_queries=max_queries)
        self.retries_used = 0  # attempts beyond the first, all counted in usage.queries
        self._count_lock = threading.Lock()
        timeout = httpx.Timeout(self.s.read_timeout_s, connect=self.s.connect_timeout_s)
        self._http = httpx.Client(
            transport=BoundedTransport(max_bytes=self.s.max_response_bytes,
                                       deadline_s=self.s.deadline_s),
            timeout=timeout, follow_redirects=False,
            limits=httpx.Limits(max_connections=self.s.concurrency))
        self._client = OpenAI(base_url=self.base_url, max_retries=0, timeout=timeout,
                              api_key=api_key or os.environ.get(ENV_API_KEY) or "unused",
                              http_client=self._http)
        self._limiter = RateLimiter(self.s.rps)
        self._stop = threading.Event()
        self.echo = False  # set by the probe when echo was asked for and works
        self.endpoint, self.capabilities = self._probe()
        self.identity = {
            "kind": "openai", "base_url": self.base_url, "model": self.model,
            "endpoint": self.endpoint, "access": self.access.value,
            "logprobs": ("top-k natural log" if AccessMode.LOGPROBS in self.capabilities
                         else "none"),
            "top_logprobs_max": str(self.s.top_logprobs
                                    if AccessMode.LOGPROBS in self.capabilities else 0),
        }
        if self.echo:
            self.identity["echo"] = "prompt logprobs"

    def close(self) -> None:
        self._http.close()

    # -- capability probe --------------------------------------------------------------------

    def _probe(self) -> tuple[str, frozenset[AccessMode]]:
        """Try completions, then chat, with one 1-token request each (logprobs if asked for);
        if both refuse the logprobs parameters, try them again without."""
        k = self.s.top_logprobs if self.access is AccessMode.LOGPROBS else 0
        tries = [("completions", k), ("chat", k)] + ([("completions", 0), ("chat", 0)] if k else [])
        text_endpoint: str | None = None
        reasons: list[str] = []
        try:
            for endpoint, kk in tries:
                if text_endpoint is not None and not kk:
                    break
                try:
                    sample = self._generate(endpoint, PROBE_PROMPT, 1, 1.0, 0, kk, probe=True)
                except _Unsupported as e:
                    reasons.append(e.message)
                    continue
                self.usage.add_tokens(sample.n_tokens)
                if kk and sample.token_logprobs is not None:
                    if self.s.echo:
                        self._probe_echo(endpoint)
                    return endpoint, frozenset({AccessMode.TEXT, AccessMode.LOGPROBS})
                text_endpoint = text_endpoint or endpoint
                if not kk:
                    break
                reasons.append(f"{endpoint}: no logprobs returned")
        except BaseException:
            self.close()
            raise
        if text_endpoint is None:
            self.close()
            raise BackendError(f"{self.base_url} serves neither /completions nor "
                               f"/chat/completions for model {self.model!r}: {reasons}")
        if self.s.echo:
            self.close()
            raise BackendError(f"{self.base_url} ({self.model}): echo=1 needs logprobs, and "
                               f"none were returned: {reasons}")
        return text_endpoint, frozenset({AccessMode.TEXT})

    def _probe_echo(self, endpoint: str) -> None:
        """One echo request; raises unless it returns valid prompt logprobs."""
        if endpoint != "completions":
            raise BackendError(f"{self.base_url} ({self.model}): echo=1 needs /completions, "
                               "which this server does not offer")
        prompt, cont = ECHO_PROBE
        try:
            self._echo_one(prompt, cont)
        except BackendError as e:
            raise BackendError(f"echo=1, but the endpoint's echo is not usable: {e.message}"
                               ) from None
        self.echo = True

    # -- sampling ----------------------------------------------------------------------------

    def sample(self, prompts: Sequence[str], *, n: int, max_new_tokens: int, temperature: float,
               seed: int, top_logprobs: int = 0) -> list[list[Sample]]:
        """`n` completions per prompt, one request (one query) each, in per-prompt order."""
        if not 1 <= n <= MAX_SAMPLES_PER_PROMPT:
            raise InvalidArgumentError(f"n must be in 1..{MAX_SAMPLES_PER_PROMPT}")
        if not 1 <= max_new_tokens <= self.s.max_new_tokens:
            raise InvalidArgumentError(f"max_new_tokens must be in 1..{self.s.max_new_tokens}")
        if not 0.0 < temperature <= 2.0:
            raise InvalidArgumentError("temperature must be in (0, 2] over the OpenAI API")
        if top_logprobs and AccessMode.LOGPROBS not in self.capabilities:
            raise AccessModeError(f"{self.base_url} ({self.model}) did not offer logprobs")
        if not 0 <= top_logprobs <= self.s.top_logprobs:
            raise InvalidArgumentError(f"top_logprobs must be in 0..{self.s.top_logprobs} "
                                       "for this endpoint (raise it with ?top_logprobs=)")
        self._check_budget(n * len(prompts))
        jobs = [(i, j) for i in range(len(prompts)) for j in range(n)]
        out: list[list[Sample | None]] = [[None] * n for _ in prompts]

        def run(job: tuple[int, int]) -> None:
            i, j = job
            out[i][j] = self._generate(self.endpoint, prompts[i], max_new_tokens, temperature,
                                       _request_seed(seed, i, j), top_logprobs)

        self._run_jobs(jobs, run)
        rows = [[s for s in row if s is not None] for row in out]
        for row in rows:
            for s in row:
                self.usage.add_tokens(s.n_tokens)
        return rows

    def _check_budget(self, need: int) -> None:
        left = self.usage.remaining
        if left is not None and need > left:  # fail before sending anything
            self.usage.reserve(need)

    def _run_jobs(self, jobs: Sequence[Any], run: Any) -> None:
        """`run(job)` for every job on up to `concurrency` threads; the first error (in job
        order) stops requests not yet started and is raised."""
        self._stop.clear()
        errors: list[BaseException] = []
        with ThreadPoolExecutor(max_workers=min(self.s.concurrency, max(1, len(jobs)))) as ex:
            futures = [ex.submit(run, job) for job in jobs]
            for f in futures:  # in job order, so the error reported is deterministic
                exc = f.exception()
                if exc is not None:
                    errors.append(exc)
                    self._stop.set()  # requests not yet started are never sent
                    for g in futures:
                        g.cancel()
                    break
        if errors:
            raise errors[0]

    def echo_score(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[float]:
        """log P(continuation | prompt) in nats through echo prompt logprobs: one request (one
        query, plus its retries) per pair. The server tokenizes prompt + continuation as one
        text, so a token straddling the boundary counts whole (see `parse_echo`)."""
        if not self.echo:
            raise AccessModeError(f"{self.base_url} ({self.model}) was not opened with echo=1")
        if len(prompts) != len(continuations):
            raise InvalidArgumentError("prompts and continuations differ in length")
        for p, c in zip(prompts, continuations):
            if len(p) + len(c) > self.s.max_text_chars or not p:
                raise InvalidArgumentError(
                    f"echo texts need a prompt and at most {self.s.max_text_chars} characters")
        self._check_budget(len(prompts))
        out: list[float] = [0.0] * len(prompts)

        def run(i: int) -> None:
            out[i] = self._echo_one(prompts[i], continuations[i])

        self._run_jobs(range(len(prompts)), run)
        return out

    def _echo_one(self, prompt: str, cont: str) -> float:
        text = prompt + cont
        args: dict[str, Any] = dict(model=self.model, prompt=text, max_tokens=1, n=1,
                                    temperature=1.0, seed=0, echo=True, logprobs=1)

        def decode(resp: Any, where: str) -> float:
            return parse_echo(self._json(resp, where), text=text, start=len(prompt),
                              max_tokens=1, max_chars=self.s.max_text_chars, where=where)

        value = self._post("completions", args, decode, probe=False)
        self.usage.add_tokens(1)  # the one generated token; echoed tokens are not generated
        return value

    def word_distribution(self, prompts: Sequence[str],
                          buckets: Sequence[Sequence[str]]) -> list[list[float]]:
        raise AccessModeError("word_distribution needs full logits, which HTTP endpoints "
                              "do not expose")

    def score(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[float]:
        raise AccessModeError("score needs full logits, which HTTP endpoints do not expose")

    def score_tempered(self, prompts: Sequence[str], continuations: Sequence[str],
                       temperatures: Sequence[float]) -> list[list[float]]:
        raise AccessModeError("score needs full logits, which HTTP endpoints do not expose")

    # -- one request, with retries -------------------------------------------------------------

    def _generate(self, endpoint: str, prompt: str, max_tokens: int, temperature: float,
                  seed: int, k: int, probe: bool = False) -> Sample:
        args: dict[str, Any] = dict(model=self.model, max_tokens=max_tokens, n=1,
                                    temperature=temperature, seed=seed)
        if endpoint == "completions":
            args["prompt"] = prompt
            if k:
                args["logprobs"] = k
        else:
            args["messages"] = [{"role": "user", "content": prompt}]
            if k:
                args.update(logprobs=True, top_logprobs=k)

        def decode(resp: Any, where: str) -> Sample:
            return parse_response(self._json(resp, where), endpoint=endpoint, k=k,
                                  max_tokens=max_tokens, max_chars=self.s.max_text_chars,
                                  where=where, logprobs_optional=probe)

        return self._post(endpoint, args, decode, probe)

    def _post(self, endpoint: str, args: dict[str, Any], decode: Any, probe: bool) -> Any:
        """One generation request with retries; `decode(http_response, where)` reads it."""
        from openai import APIConnectionError, APIStatusError, APITimeoutError

        path = "/completions" if endpoint == "completions" else "/chat/completions"
        where = f"POST {self.base_url}{path}"
        call = (self._client.completions.with_raw_response.create if endpoint == "completions"
                else self._client.chat.completions.with_raw_response.create)
        attempts = self.s.retries + 1
        for attempt in range(attempts):
            if self._stop.is_set():
                raise BackendError(f"{where}: cancelled after another request failed")
            self.usage.reserve(1)
            self._limiter.acquire()
            last = attempt == attempts - 1
            try:
                raw = call(**args)
            except APIStatusError as e:
                status, detail = e.status_code, _snippet(e.response)
                if status in RETRY_STATUS and not last:
                    self._wait(where, attempt, retry_after_s(e.response.headers), status)
                    continue
                cls = _Unsupported if probe and status in UNSUPPORTED_STATUS else BackendError
                raise cls(f"{where}: HTTP {status} after {attempt + 1} attempt(s): {detail}")
            except APITimeoutError:
                if not last:
                    self._wait(where, attempt, None, "timeout")
                    continue
                raise BackendError(f"{where}: no response within the {self.s.read_timeout_s:g}s "
                                   f"read timeout, {attempts} attempt(s)") from None
            except APIConnectionError as e:
                if not last:
                    self._wait(where, attempt, None, "connection")
                    continue
                raise BackendError(f"{where}: connection failed after {attempts} attempt(s): "
                                   f"{_cause(e)}") from None
            except ResponseRejected as e:
                raise BackendError(f"{where}: {e}") from None
            return decode(raw.http_response, where)
        raise AssertionError("unreachable")

    def _wait(self, where: str, attempt: int, asked: float | None, why: object) -> None:
        if asked is not None and asked > self.s.max_wait_s:
            raise BackendError(f"{where}: {why}, server asks to retry after {asked:g}s, "
                               f"longer than the {self.s.max_wait_s:g}s cap")
        wait = asked if asked is not None else (
            self.s.backoff_s * (2 ** attempt) * (0.5 + random.random() / 2))
        with self._count_lock:
            self.retries_used += 1
        time.sleep(min(wait, self.s.max_wait_s))

    @staticmethod
    def _json(resp: Any, where: str) -> Any:
        ctype = resp.headers.get("content-type", "")
        media = ctype.split(";", 1)[0].strip().lower()
        if media != "application/json" and not (media.startswith("application/")
                                                and media.endswith("+json")):
            raise BackendError(f"{where}: expected application/json, got {ctype[:80]!r}")
        try:
            data = strict_json(resp.content)
        except ValueError as e:
            raise BackendError(f"{where}: response is not valid JSON: {str(e)[:200]}") from None
        return data


def _request_seed(seed: int, i: int, j: int) -> int:
    """A distinct, reproducible seed per (prompt, sample), so samples differ but replay."""
    h = hashlib.sha256(f"{int(seed)}:{i}:{j}".encode()).digest()
    return int.from_bytes(h[:4], "big") >> 1


def _snippet(resp: Any) -> str:
    try:
        return " ".join(resp.text[:200].split())
    except Exception:  # body unreadable (already rejected or closed)
        return "<unreadable body>"


def _cause(e: BaseException) -> str:
    c: BaseException | None = e
    while c is not None and c.__cause__ is not None:
        c = c.__cause__
    return f"{type(c).__name__}: {c}"[:200] if c is not None else str(e)

