"""Strict reading of OpenAI-protocol generation responses into `Sample`s.

A suspect endpoint is untrusted: every field is checked for type, length and range, and any
deviation is a `BackendError` that names the endpoint and the field. Two shapes are read:

- legacy completions: ``choices[0].text`` and ``choices[0].logprobs = {tokens, token_logprobs,
  top_logprobs: [{token: logprob}]}``;
- chat: ``choices[0].message.content`` and ``choices[0].logprobs.content = [{token, logprob,
  top_logprobs: [{token, logprob}]}]``.

Logprobs are natural logs (nats), finite and <= 0 (a rounding slack of 1e-4 is allowed).
"""

from __future__ import annotations

import math
from typing import Any

from lineage.backends.base import MAX_TOP_LOGPROBS, Sample
from lineage.errors import BackendError

__all__ = ["parse_echo", "parse_response"]

_SLACK = 1e-4
MAX_TOKEN_CHARS = 256


def _fail(where: str, what: str) -> BackendError:
    return BackendError(f"{where}: malformed response: {what}")


def _logprob(x: Any, where: str, field: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise _fail(where, f"{field} is {type(x).__name__}, not a number")
    v = float(x)
    if not math.isfinite(v) or v > _SLACK:
        raise _fail(where, f"{field} = {v!r} is not a finite log-probability")
    return min(v, 0.0)


def _token(x: Any, where: str, field: str) -> str:
    if not isinstance(x, str) or len(x) > MAX_TOKEN_CHARS:
        raise _fail(where, f"{field} is not a token string")
    return x


def _top(entries: Any, k: int, where: str, field: str) -> dict[str, float]:
    # Servers may add the sampled token to the top-k list (vLLM does), hence k + 1.
    if isinstance(entries, dict):
        items = list(entries.items())
    elif isinstance(entries, list):
        items = []
        for e in entries:
            if not isinstance(e, dict):
                raise _fail(where, f"{field} entry is not an object")
            items.append((e.get("token"), e.get("logprob")))
    else:
        raise _fail(where, f"{field} is {type(entries).__name__}, not a list or object")
    if len(items) > min(k + 1, MAX_TOP_LOGPROBS + 1):
        raise _fail(where, f"{field} has {len(items)} entries; asked for {k}")
    return {_token(t, where, field): _logprob(v, where, field) for t, v in items}


def _completion_logprobs(lp: Any, k: int, where: str) -> tuple[list[float], list[Any]]:
    if not isinstance(lp, dict):
        raise _fail(where, "logprobs requested but missing")
    tl, top = lp.get("token_logprobs"), lp.get("top_logprobs")
    if not isinstance(tl, list) or not isinstance(top, list) or len(tl) != len(top):
        raise _fail(where, "logprobs.token_logprobs/top_logprobs missing or unequal lengths")
    return tl, top


def _chat_logprobs(lp: Any, where: str) -> tuple[list[float], list[Any]]:
    content = lp.get("content") if isinstance(lp, dict) else None
    if not isinstance(content, list):
        raise _fail(where, "logprobs requested but logprobs.content missing")
    tl, top = [], []
    for e in content:
        if not isinstance(e, dict):
            raise _fail(where, "logprobs.content entry is not an object")
        tl.append(e.get("logprob"))
        top.append(e.get("top_logprobs"))
    return tl, top


def _only_choice(data: Any, where: str) -> dict[str, Any]:
    """The one choice of an n=1 response (a server error or any other shape raises)."""
    if not isinstance(data, dict):
        raise _fail(where, f"top level is {type(data).__name__}, not an object")
    if "error" in data and data.get("error"):
        raise BackendError(f"{where}: server error: {str(data['error'])[:200]}")
    choices = data.get("choices")
    if not isinstance(choices, list) or len(choices) != 1 or not isinstance(choices[0], dict):
        raise _fail(where, "expected exactly one choice (n=1)")
    return choices[0]


def parse_response(data: Any, *, endpoint: str, k: int, max_tokens: int, max_chars: int,
                   where: str, logprobs_optional: bool = False) -> Sample:
    """One generation response -> `Sample`. `k` > 0 means logprobs were asked for; they are
    required unless `logprobs_optional` (the capability probe), where absent means unsupported
    but present-and-malformed is still an error."""
    c = _only_choice(data, where)
    if endpoint == "completions":
        text = c.get("text")
    else:
        msg = c.get("message")
        if not isinstance(msg, dict):
            raise _fail(where, "choices[0].message missing")
        text = msg.get("content") if msg.get("content") is not None else ""
    if not isinstance(text, str):
        raise _fail(where, "completion text is not a string")
    if len(text) > max_chars:
        raise _fail(where, f"completion text is {len(text)} chars; the limit is {max_chars}")
    token_lps: tuple[float, ...] | None = None
    tops: tuple[dict[str, float], ...] | None = None
    raw_lp = c.get("logprobs")
    if logprobs_optional and (raw_lp is None or (endpoint == "chat" and isinstance(raw_lp, dict)
                                                 and raw_lp.get("content") is None)):
        k = 0
    if k:
        tl, top = (_completion_logprobs(raw_lp, k, where) if endpoint == "completions"
                   else _chat_logprobs(raw_lp, where))
        if len(tl) > max_tokens + 1:
            raise _fail(where, f"{len(tl)} logprob positions for max_tokens={max_tokens}")
        token_lps = tuple(_logprob(x, where, "token logprob") for x in tl)
        tops = tuple(_top(t, k, where, "top_logprobs") for t in top)
    n_tokens = len(token_lps) if token_lps is not None else 0
    usage = data.get("usage")
    if isinstance(usage, dict):
        ct = usage.get("completion_tokens")
        if isinstance(ct, int) and not isinstance(ct, bool) and 0 <= ct <= max_tokens + 1:
            n_tokens = ct
    return Sample(text=text, n_tokens=n_tokens, token_logprobs=token_lps, top_logprobs=tops)


def parse_echo(data: Any, *, text: str, start: int, max_tokens: int, max_chars: int,
               where: str) -> float:
    """An ``echo=true`` completions response for the prompt `text` -> log P(text[start:] |
    text[:start]) in nats: the summed prompt-token logprobs of every token that overlaps
    ``text[start:]`` (a token straddling `start` counts whole; tokens the server generated
    after `text` do not count). The response must echo `text` itself and give `tokens`,
    `token_logprobs` and `text_offset` of equal lengths, offsets non-decreasing character
    positions; only the first token's logprob may be null, and it must not be needed."""
    c = _only_choice(data, where)
    out = c.get("text")
    if not isinstance(out, str) or len(out) > max_chars:
        raise _fail(where, "completion text is not a string within the size limit")
    if not out.startswith(text):
        raise _fail(where, "echo=true but the text does not start with the prompt "
                           "(the server does not echo)")
    lp = c.get("logprobs")
    if not isinstance(lp, dict):
        raise _fail(where, "echo=true but no logprobs returned")
    toks, tl, off = lp.get("tokens"), lp.get("token_logprobs"), lp.get("text_offset")
    if not (isinstance(toks, list) and isinstance(tl, list) and isinstance(off, list)
            and len(toks) == len(tl) == len(off)):
        raise _fail(where, "echo logprobs need tokens, token_logprobs and text_offset of "
                           "equal lengths")
    if len(tl) > len(out) + max_tokens + 1:
        raise _fail(where, f"{len(tl)} logprob positions for {len(out)} characters")
    prev = 0
    for o in off:
        if isinstance(o, bool) or not isinstance(o, int) or not prev <= o <= len(out):
            raise _fail(where, "text_offset is not a non-decreasing list of character offsets")
        prev = o
    if len(text) <= start:
        return 0.0
    if not off or off[0] > start:
        raise _fail(where, "echo logprobs do not cover the continuation")
    total, seen = 0.0, 0
    for i, (t, x, o) in enumerate(zip(toks, tl, off)):
        end = off[i + 1] if i + 1 < len(off) else o + len(_token(t, where, "token"))
        _token(t, where, "token")
        if o >= len(text) or end <= start:
            continue
        if x is None:
            raise _fail(where, "the continuation's first token has no logprob (start the "
                               "prompt before it)")
        total += _logprob(x, where, "prompt token logprob")
        seen += 1
    if seen == 0:
        raise _fail(where, "echo logprobs do not cover the continuation")
    return total
