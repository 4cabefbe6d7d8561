"""The OpenAI HTTP backend against a real loopback server (tests/openai_server.py), and hf: URIs.

Bounds used below (client settings `FAST`: read timeout 0.5 s, 2 retries, backoff 0.05 s
doubling, Retry-After capped at 2 s, 1 MiB bodies, 3 s per response body):
every fault fails with a BackendError naming the endpoint within the `bound_s` of its row in
`FAULTS`, and the server's query count equals the backend's `usage.queries` afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import pytest

from lineage.backends import AccessMode, open_model, view
from lineage.backends.hub import parse_hf_uri
from lineage.backends.openai_http import ENV_API_KEY, HTTPSettings, OpenAIHTTPBackend, parse_uri
from lineage.errors import (AccessModeError, BackendError, BudgetExceededError,
                            InvalidArgumentError)
from openai_server import OpenAIServer, serve_backend
from tinymodels import make_tiny_model

ROOT = Path(__file__).resolve().parent.parent
FAST = HTTPSettings(connect_timeout_s=1.0, read_timeout_s=0.5, deadline_s=3.0, retries=2,
                    backoff_s=0.05, max_wait_s=2.0, rps=500.0, concurrency=2)
PROMPTS = ["Return the value", "This function computes", "Raise an error if"]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    torch.set_num_threads(1)  # another engineer trains on this machine
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "m")


@pytest.fixture(scope="module")
def local(tiny_dir: Path):  # type: ignore[no-untyped-def]
    from lineage.backends.local_hf import LocalHFBackend

    return LocalHFBackend(tiny_dir, device="cpu")


@pytest.fixture(scope="module")
def lp_server(local) -> Iterator[tuple[str, OpenAIServer]]:  # type: ignore[no-untyped-def]
    with serve_backend(local) as out:
        yield out


@pytest.fixture()
def server(lp_server: tuple[str, OpenAIServer]) -> Iterator[tuple[str, OpenAIServer]]:
    url, srv = lp_server
    srv.set_fault(None)
    srv.reset_counts()
    yield url, srv
    srv.set_fault(None)


def backend(url: str, access: str = "logprobs", **kw: object) -> OpenAIHTTPBackend:
    return OpenAIHTTPBackend(url, "tiny", access, settings=FAST, **kw)  # type: ignore[arg-type]


def assert_counts_match(b: OpenAIHTTPBackend, srv: OpenAIServer) -> None:
    time.sleep(0.05)  # let the server thread of a dropped connection finish counting
    assert srv.stats()["queries"] == b.usage.queries


# -- capability probing ------------------------------------------------------------------------

def test_probe_finds_logprobs_on_completions(server: tuple[str, OpenAIServer]) -> None:
    url, srv = server
    b = backend(url)
    assert b.capabilities == frozenset({AccessMode.TEXT, AccessMode.LOGPROBS})
    assert b.identity == {"kind": "openai", "base_url": url, "model": "tiny",
                          "endpoint": "completions", "access": "logprobs",
                          "logprobs": "top-k natural log", "top_logprobs_max": "5"}
    assert b.usage.queries == 1 and srv.stats()["queries"] == 1


def test_probe_text_only_server(local) -> None:  # type: ignore[no-untyped-def]
    with serve_backend(local, logprobs=False) as (url, srv):
        b = backend(url)
        assert b.capabilities == frozenset({AccessMode.TEXT})
        assert b.identity["logprobs"] == "none" and b.identity["endpoint"] == "completions"
        assert b.usage.queries == 2 == srv.stats()["queries"]  # completions, then chat
        with pytest.raises(AccessModeError, match="offers: text"):
            view(b, AccessMode.LOGPROBS)
        rows = view(b, "text").sample(PROMPTS[:1], n=2, max_new_tokens=4, seed=0)
        assert [s.token_logprobs for s in rows[0]] == [None, None]
        assert b.usage.queries == 4 == srv.stats()["queries"]


def test_chat_fallback_with_logprobs(local) -> None:  # type: ignore[no-untyped-def]
    with serve_backend(local, chat_only=True) as (url, srv):
        b = backend(url)
        assert b.identity["endpoint"] == "chat"
        assert AccessMode.LOGPROBS in b.capabilities
        rows = view(b, "logprobs").sample(PROMPTS[:1], n=1, max_new_tokens=4, seed=0,
                                          top_logprobs=3)
        s = rows[0][0]
        assert s.token_logprobs is not None and len(s.token_logprobs) == s.n_tokens == 4
        assert b.usage.queries == 3 == srv.stats()["queries"]  # 404 + chat probe + 1


def test_access_text_never_asks_for_logprobs(server: tuple[str, OpenAIServer]) -> None:
    url, srv = server
    b = backend(url, access="text")
    assert b.capabilities == frozenset({AccessMode.TEXT})
    assert b.identity["access"] == "text" and b.usage.queries == 1 == srv.stats()["queries"]


# -- sampling and exact accounting ----------------------------------------------------------------

def test_sample_order_determinism_and_exact_count(server: tuple[str, OpenAIServer]) -> None:
    url, srv = server
    b = backend(url, max_queries=100)
    rows = view(b, "logprobs").sample(PROMPTS, n=4, max_new_tokens=5, seed=7, top_logprobs=3)
    assert [len(r) for r in rows] == [4, 4, 4]
    assert b.usage.queries == 1 + 12 == srv.stats()["queries"]
    assert b.usage.generated_tokens == 1 + sum(s.n_tokens for r in rows for s in r)
    for s in (s for r in rows for s in r):
        assert s.token_logprobs is not None and s.top_logprobs is not None
        assert len(s.token_logprobs) == len(s.top_logprobs) == s.n_tokens <= 5
        assert all(x <= 0.0 for x in s.token_logprobs)
        assert all(1 <= len(t) <= 3 for t in s.top_logprobs)
    again = view(backend(url), "logprobs").sample(PROMPTS, n=4, max_new_tokens=5, seed=7,
                                                  top_logprobs=3)
    assert [[s.text for s in r] for r in again] == [[s.text for s in r] for r in rows]
    assert len({s.text for s in rows[0]}) > 1  # each sample gets its own seed


def test_budget_is_checked_before_sending(server: tuple[str, OpenAIServer]) -> None:
    url, srv = server
    b = backend(url, max_queries=5)
    v = view(b, "text")
    with pytest.raises(BudgetExceededError):
        v.sample(PROMPTS[:2], n=3, max_new_tokens=3, seed=0)  # 6 > 4 left
    assert b.usage.queries == 1 == srv.stats()["queries"]
    v.sample(PROMPTS[:2], n=2, max_new_tokens=3, seed=0)
    assert b.usage.queries == 5 == srv.stats()["queries"]
    with pytest.raises(BudgetExceededError):
        v.sample(PROMPTS[:1], n=1, max_new_tokens=3, seed=0)
    assert b.usage.queries == 5 == srv.stats()["queries"]


def test_retries_count_and_never_pass_the_cap(server: tuple[str, OpenAIServer]) -> None:
    url, srv = server
    b = backend(url, max_queries=3)
    srv.set_fault("429", retry_after="0")
    with pytest.raises(BudgetExceededError):
        view(b, "text").sample(PROMPTS[:1], n=1, max_new_tokens=3, seed=0)
    assert b.usage.queries == 3 == srv.stats()["queries"]


def test_retry_after_is_honoured(server: tuple[str, OpenAIServer]) -> None:
    url, srv = server
    b = backend(url)
    srv.set_fault("429", times=1, retry_after="1")
    t0 = time.monotonic()
    rows = view(b, "logprobs").sample(PROMPTS[:1], n=1, max_new_tokens=3, seed=0,
                                      top_logprobs=2)
    elapsed = time.monotonic() - t0
    assert 0.95 <= elapsed < 2.0
    assert rows[0][0].token_logprobs is not None
    assert b.usage.queries == 3 == srv.stats()["queries"] and b.retries_used == 1


def test_retry_after_longer_than_cap_fails_at_once(server: tuple[str, OpenAIServer]) -> None:
    url, srv = server
    b = backend(url)
    srv.set_fault("429", retry_after="3600")
    t0 = time.monotonic()
    with pytest.raises(BackendError, match="retry after 3600s"):
        view(b, "text").sample(PROMPTS[:1], n=1, max_new_tokens=3, seed=0)
    assert time.monotonic() - t0 < 0.5
    assert_counts_match(b, srv)


def test_500_then_success(server: tuple[str, OpenAIServer]) -> None:
    url, srv = server
    b = backend(url)
    srv.set_fault("500", times=2)
    rows = view(b, "text").sample(PROMPTS[:1], n=1, max_new_tokens=3, seed=0)
    assert isinstance(rows[0][0].text, str) and b.retries_used == 2
    assert b.usage.queries == 4 == srv.stats()["queries"]


# -- faults: each a clear BackendError within a bound --------------------------------------------

FAULTS = [  # (fault, bound_s, message)
    ("500", 2.0, "HTTP 500 after 3 attempt"),
    ("429", 2.0, "HTTP 429 after 3 attempt"),
    ("timeout", 3.0, "no response within the 0.5s read timeout, 3 attempt"),
    ("garbage", 1.0, "not valid JSON"),
    ("content_type", 1.0, "expected application/json, got 'text/html'"),
    ("oversized", 1.0, "declares 52428800 bytes; the limit is 1048576"),
    ("oversized_stream", 2.0, "exceeds 1048576 bytes"),
    ("nan", 1.0, "non-finite number NaN"),
    ("nologprobs", 1.0, "logprobs requested but missing"),
    ("wrong_shape", 1.0, "expected exactly one choice"),
    ("reset", 2.0, "connection failed after 3 attempt"),
]


@pytest.mark.parametrize("fault,bound_s,message", FAULTS, ids=[f[0] for f in FAULTS])
def test_fault_is_a_clear_error_within_bound(server: tuple[str, OpenAIServer], fault: str,
                                             bound_s: float, message: str) -> None:
    url, srv = server
    b = backend(url)
    srv.set_fault(fault, retry_after="0.1", hang_s=2.0)
    t0 = time.monotonic()
    with pytest.raises(BackendError) as ei:
        view(b, "logprobs").sample(PROMPTS[:1], n=1, max_new_tokens=3, seed=0, top_logprobs=2)
    elapsed = time.monotonic() - t0
    assert elapsed < bound_s, f"{fault} took {elapsed:.2f}s"
    assert f"POST {url}/completions" in ei.value.message
    assert message in ei.value.message
    assert_counts_match(b, srv)


def test_failure_stops_unsent_requests(server: tuple[str, OpenAIServer]) -> None:
    url, srv = server
    b = OpenAIHTTPBackend(url, "tiny", "text", settings=HTTPSettings(retries=0, concurrency=2))
    srv.set_fault("500", skip=0)
    with pytest.raises(BackendError):
        b.sample(PROMPTS * 5, n=2, max_new_tokens=3, temperature=1.0, seed=0)
    assert_counts_match(b, srv)
    assert b.usage.queries < 1 + 30


def test_probe_failure_is_counted(server: tuple[str, OpenAIServer]) -> None:
    url, srv = server
    srv.set_fault("500")
    with pytest.raises(BackendError, match="HTTP 500"):
        backend(url)
    assert srv.stats()["queries"] == 3  # one probe, retried twice


def test_full_logit_methods_refused(server: tuple[str, OpenAIServer]) -> None:
    b = backend(server[0])
    with pytest.raises(AccessModeError):
        b.word_distribution(["x"], [["a"]])
    with pytest.raises(AccessModeError):
        b.score(["x"], ["y"])
    with pytest.raises(AccessModeError):
        view(b, AccessMode.FULL)


def test_api_key_from_env_stays_out_of_identity(server: tuple[str, OpenAIServer],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    url, srv = server
    monkeypatch.setenv(ENV_API_KEY, "sk-lineage-test")
    b = open_model(f"openai+{url}?model=tiny&access=text&rps=100", max_queries=10)
    assert srv.last_auth == "Bearer sk-lineage-test"
    assert "sk-lineage-test" not in json.dumps(b.identity)
    assert b.usage.max_queries == 10


# -- echo: the suspect's likelihood of given text ------------------------------------------------

ECHO_PROMPTS = ["def area(r):", "import os\n", "The value of"]
ECHO_TEXTS = [" return 3.14 * r * r", "import sys", " the argument is"]


def test_echo_scores_match_local_weights(server: tuple[str, OpenAIServer], local) -> None:  # type: ignore[no-untyped-def]
    """echo=1: one request per text, and the prompt logprobs the server echoes sum to the
    local model's log P(text | prompt) for texts that start a new token."""
    url, srv = server
    b = OpenAIHTTPBackend(url, "tiny", "logprobs", settings=replace(FAST, echo=True))
    assert b.echo and b.identity["echo"] == "prompt logprobs"
    assert b.usage.queries == 2  # the logprobs probe, then the echo probe
    got = view(b, "logprobs", echo=True).score_text(ECHO_PROMPTS, ECHO_TEXTS)
    want = local.score(ECHO_PROMPTS, ECHO_TEXTS)
    assert got == pytest.approx(want, abs=1e-3)
    assert all(x < 0 for x in got)
    assert b.usage.queries == 2 + len(ECHO_TEXTS)
    assert_counts_match(b, srv)


def test_echo_refused_where_the_server_does_not_echo(local) -> None:  # type: ignore[no-untyped-def]
    """A server that ignores echo (as llama.cpp's does) or offers chat only fails the open
    with a clear error; without echo=1 a logprobs view cannot score text."""
    for kw, why in (({"echo": False}, "does not echo|no logprobs|do not cover"),
                    ({"chat_only": True}, "needs /completions")):
        with serve_backend(local, **kw) as (url, _srv):  # type: ignore[arg-type]
            with pytest.raises(BackendError, match=why):
                open_model(f"openai+{url}?model=tiny&access=logprobs&echo=1")
            plain = open_model(f"openai+{url}?model=tiny&access=logprobs")
            assert not getattr(plain, "echo", False)
            with pytest.raises(AccessModeError, match="echo"):
                view(plain, "logprobs", echo=True)
            with pytest.raises(AccessModeError):
                view(plain, "logprobs").score_text(["a"], [" b"])


def test_echo_budget_is_checked_before_sending(server: tuple[str, OpenAIServer]) -> None:
    url, srv = server
    b = open_model(f"openai+{url}?model=tiny&access=logprobs&echo=1", max_queries=4)
    with pytest.raises(BudgetExceededError):
        b.echo_score(ECHO_PROMPTS, ECHO_TEXTS)  # type: ignore[attr-defined]
    assert b.usage.queries == 2
    assert_counts_match(b, srv)


# -- URIs --------------------------------------------------------------------------------------

def test_parse_uri() -> None:
    base, model, access, s = parse_uri(
        "openai+https://api.example.com:8443/v1/?model=org/m-1&access=text&rps=2&timeout=9")
    assert (base, model, access) == ("https://api.example.com:8443/v1", "org/m-1", AccessMode.TEXT)
    assert (s.rps, s.read_timeout_s, s.retries) == (2.0, 9.0, 3)


@pytest.mark.parametrize("uri,why", [
    ("openai+http://h:80/v1?access=text", "model=NAME is required"),
    ("openai+http://h:80/v1?model=m", "access=logprobs or access=text is required"),
    ("openai+http://h:80/v1?model=m&access=full", "not full"),
    ("openai+http://h:80/v1?model=m&access=weights", "unknown access mode"),
    ("openai+http://h:80/v1?model=m&access=text&temperature=0", "unknown or repeated"),
    ("openai+http://h:80/v1?model=m&model=n&access=text", "unknown or repeated"),
    ("openai+http://h:80/v1?model=m&access=text&rps=-1", "rps in"),
    ("openai+http://h:80/v1?model=m&access=text&top_logprobs=50", "top_logprobs 1..20"),
    ("openai+http://h:80/v1?model=m&access=text&rps=x", "could not convert"),
    ("openai+http://u:pw@h:80/v1?model=m&access=text", ENV_API_KEY),
    ("openai+http://h:99999/v1?model=m&access=text", "Port out of range"),
    ("openai+http:///v1?model=m&access=text", "no host"),
    ("openai+http://h:80/v1?model=m&access=text&echo=1", "echo=1 needs access=logprobs"),
    ("openai+http://h:80/v1?model=m&access=logprobs&echo=yes", "echo must be 0 or 1"),
])
def test_bad_uris(uri: str, why: str) -> None:
    with pytest.raises(InvalidArgumentError, match=why):
        open_model(uri)


def test_unknown_scheme() -> None:
    with pytest.raises(InvalidArgumentError, match="unsupported model URI"):
        open_model("openai+ftp://h/v1?model=m&access=text")


@pytest.mark.parametrize("uri", ["hf:", "hf:noslash", "hf:a/b/c", "hf:../x", "hf:a/b@",
                                 "hf:a/b@../../etc", "hf:a/-b"])
def test_bad_hf_uris(uri: str) -> None:
    with pytest.raises(InvalidArgumentError):
        parse_hf_uri(uri)


def test_hf_uri_parts() -> None:
    assert parse_hf_uri("hf:org/name") == ("org/name", None)
    assert parse_hf_uri("hf:org/name@v1.0") == ("org/name", "v1.0")


_HF_SCRIPT = """
import json, torch
torch.set_num_threads(1)
from lineage.backends import open_model
from lineage.errors import ModelLoadError
b = open_model("hf:lineage-test/tiny", max_queries=3)
out = {"identity": b.identity, "caps": sorted(m.value for m in b.capabilities),
       "max_queries": b.usage.max_queries}
try:
    open_model("hf:lineage-test/absent")
except ModelLoadError as e:
    out["missing"] = e.message
print(json.dumps(out))
"""


def test_hf_resolves_offline_from_cache(tiny_dir: Path, tmp_path: Path) -> None:
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--lineage-test--tiny"
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    for f in tiny_dir.iterdir():
        shutil.copy(f, snap / f.name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf_home"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", _HF_SCRIPT], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    ident = out["identity"]
    assert ident["kind"] == "local" and ident["hf_repo"] == "lineage-test/tiny"
    assert (ident["hf_revision"], ident["hf_commit"]) == ("main", commit)
    assert Path(ident["path"]) == snap.resolve()
    assert out["caps"] == ["full", "logprobs", "text"] and out["max_queries"] == 3
    assert "hf:lineage-test/absent" in out["missing"] and "offline" in out["missing"]


def test_unknown_model_fails_probe_clearly(server: tuple[str, OpenAIServer]) -> None:
    url, srv = server
    with pytest.raises(BackendError, match="serves neither /completions nor /chat/completions"):
        OpenAIHTTPBackend(url, "no-such-model", "logprobs", settings=FAST)
    assert srv.stats()["queries"] == 4  # completions/chat, with then without logprobs


def test_server_models_and_stats_are_not_queries(server: tuple[str, OpenAIServer]) -> None:
    import httpx

    url, srv = server
    models = httpx.get(f"{url}/models", timeout=2).json()
    assert [m["id"] for m in models["data"]] == ["tiny"]
    stats = httpx.get(url.removesuffix("/v1") + "/_stats", timeout=2).json()
    assert stats == {"requests": 2, "queries": 0}
