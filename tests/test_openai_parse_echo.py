"""`parse_echo`: an untrusted echo response is read strictly (unit tests on hand-made JSON)."""

from __future__ import annotations

import copy
import math

import pytest

from lineage.backends.openai_parse import parse_echo
from lineage.errors import BackendError

PROMPT, TEXT = "def f", "def f(x): return"
# tokens: "def" " f" "(x" "):" " return", then one generated token "\n"
GOOD = {"choices": [{"index": 0, "text": TEXT + "\n", "logprobs": {
    "tokens": ["def", " f", "(x", "):", " return", "\n"],
    "token_logprobs": [None, -1.0, -2.0, -0.5, -0.25, -3.0],
    "text_offset": [0, 3, 5, 7, 9, 16],
    "top_logprobs": [None] * 6}}]}


def parse(data: object, text: str = TEXT, start: int = len(PROMPT)) -> float:
    return parse_echo(data, text=text, start=start, max_tokens=1, max_chars=1000, where="W")


def test_sums_the_continuation_tokens_only() -> None:
    assert parse(GOOD) == pytest.approx(-2.75)  # "(x" "):" " return"; not the generated "\n"
    assert parse(GOOD, start=len(TEXT)) == 0.0  # an empty continuation


def test_a_token_straddling_the_boundary_counts_whole() -> None:
    assert parse(GOOD, start=6) == pytest.approx(-2.75)  # "(x" starts at 5, ends at 7


def bad(mutate) -> dict:  # type: ignore[no-untyped-def]
    d = copy.deepcopy(GOOD)
    mutate(d["choices"][0])
    return d


@pytest.mark.parametrize("data,why", [
    ([], "not an object"),
    ({"error": {"message": "x"}}, "server error"),
    ({"choices": []}, "exactly one choice"),
    (bad(lambda c: c.update(text="something else")), "does not start with the prompt"),
    (bad(lambda c: c.update(logprobs=None)), "no logprobs"),
    (bad(lambda c: c["logprobs"].pop("text_offset")), "equal lengths"),
    (bad(lambda c: c["logprobs"]["tokens"].pop()), "equal lengths"),
    (bad(lambda c: c["logprobs"].update(text_offset=[0, 3, 2, 7, 9, 16])), "non-decreasing"),
    (bad(lambda c: c["logprobs"].update(text_offset=[0, 3, 5, 7, 9, 99])), "non-decreasing"),
    (bad(lambda c: c["logprobs"].update(text_offset=[0, 3, 5, 7, 9, "16"])), "non-decreasing"),
    (bad(lambda c: c["logprobs"]["token_logprobs"].__setitem__(2, math.nan)), "finite"),
    (bad(lambda c: c["logprobs"]["token_logprobs"].__setitem__(2, 0.5)), "finite"),
    (bad(lambda c: c["logprobs"]["token_logprobs"].__setitem__(2, None)), "no logprob"),
    (bad(lambda c: c["logprobs"]["token_logprobs"].__setitem__(2, "x")), "not a number"),
    (bad(lambda c: c["logprobs"].update(text_offset=[9, 9, 9, 9, 9, 16])), "do not cover"),
    (bad(lambda c: c.update(text=TEXT + "\n" * 2000)), "size limit"),
    (bad(lambda c: c["logprobs"]["tokens"].__setitem__(2, 7)), "not a token string"),
])
def test_malformed_echo_is_a_clear_error(data: object, why: str) -> None:
    with pytest.raises(BackendError, match=why):
        parse(data)


def test_too_many_positions_for_the_text() -> None:
    d = bad(lambda c: c["logprobs"].update(
        tokens=["a"] * 40, token_logprobs=[-1.0] * 40, text_offset=[0] * 40))
    with pytest.raises(BackendError, match="positions"):
        parse(d)
