"""Hostile OpenAI-compatible endpoints beyond the faults of test_openai_backend.py: each is a
clear BackendError within a stated bound, from a real raw-socket server on 127.0.0.1.

Client settings (`FAST`): read timeout 0.5 s, a 3 s deadline per response (headers and body
together), 1 MiB bodies, 2 retries. Bounds: the deadline cases (slow drip, slow endless
streams) fail within 5 s (the 3 s deadline plus slack for a loaded machine), one attempt (a response cut by the deadline is not retried); the rest
within 2 s. With the default settings (`HTTPSettings`: 120 s deadline, 3 retries) the same
cases fail within 121 s and 4 x 30 s respectively; see the README's Security section.
"""

from __future__ import annotations

import time

import pytest

from hostile_http import BEHAVIORS, hostile
from lineage.backends import view
from lineage.backends.openai_http import HTTPSettings, OpenAIHTTPBackend
from lineage.errors import BackendError

FAST = HTTPSettings(connect_timeout_s=1.0, read_timeout_s=0.5, deadline_s=3.0, retries=2,
                    backoff_s=0.05, max_wait_s=2.0, rps=500.0, concurrency=1)
DEADLINE = "longer than 3s"

CASES = [  # (behavior, bound_s, message in the error)
    ("slow_drip_body", 5.0, DEADLINE),
    ("slow_drip_headers", 5.0, DEADLINE),
    ("endless_chunked_fast", 2.0, "exceeds 1048576 bytes"),
    ("endless_chunked_slow", 5.0, DEADLINE),
    ("endless_sse", 5.0, DEADLINE),
    ("http10_endless", 2.0, "exceeds 1048576 bytes"),
    ("ctype_text_plain", 2.0, "expected application/json, got 'text/plain'"),
    ("ctype_missing", 2.0, "expected application/json, got ''"),
    ("ctype_jsonish", 2.0, "expected application/json, got 'application/jsonx'"),
    ("ctype_octet", 2.0, "expected application/json, got 'application/octet-stream'"),
    ("gzip_bomb", 2.0, "content-encoding 'gzip'"),
    ("logprob_plus_inf", 2.0, "non-finite number Infinity"),
    ("logprob_minus_inf", 2.0, "non-finite number -Infinity"),
    ("logprob_overflow", 2.0, "non-finite number 1e999"),
    ("logprob_nan", 2.0, "non-finite number NaN"),
    ("top_logprob_nan", 2.0, "non-finite number NaN"),
    ("logprob_positive", 2.0, "5.0 is not a finite log-probability"),
    ("logprob_string", 2.0, "token logprob is str, not a number"),
    ("huge_header", 2.0, "connection failed after 3 attempt"),
    ("redirect", 2.0, "HTTP 302"),
]


def test_every_behaviour_has_a_case() -> None:
    assert sorted(c[0] for c in CASES) == sorted(BEHAVIORS)


@pytest.mark.parametrize("behavior,bound_s,message", CASES, ids=[c[0] for c in CASES])
def test_hostile_endpoint_fails_clearly_within_bound(behavior: str, bound_s: float,
                                                     message: str) -> None:
    with hostile(behavior) as srv:
        b = OpenAIHTTPBackend(srv.url, "m", "logprobs", settings=FAST)  # probe: answered OK
        t0 = time.monotonic()
        with pytest.raises(BackendError) as ei:
            view(b, "logprobs").sample(["The"], n=1, max_new_tokens=4, seed=0, top_logprobs=1)
        took = time.monotonic() - t0
        b.close()
    assert message in ei.value.message, ei.value.message
    assert f"POST {srv.url}/completions" in ei.value.message
    assert took < bound_s, f"{behavior}: {took:.2f}s"
    if message == DEADLINE:
        assert srv.requests == 2  # the probe and one attempt: a deadline is not retried


def test_deadline_covers_the_probe_too() -> None:
    """A server that drips from its first byte never gets a backend built."""
    with hostile("slow_drip_headers", ok_first=0) as srv:
        t0 = time.monotonic()
        with pytest.raises(BackendError, match=DEADLINE):
            OpenAIHTTPBackend(srv.url, "m", "logprobs", settings=FAST)
        assert time.monotonic() - t0 < 5.0
