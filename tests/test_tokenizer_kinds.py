"""Suspects and registered models need not use the zoo's byte-level BPE: WordPiece (no bos,
[SEP] as eos), SentencePiece-style Unigram (separate <s>) and BPE without a pad token all
register and scan in every access mode."""

from __future__ import annotations

import pytest

from lineage.engine import Lineage

KINDS = ["wordpiece", "unigram", "bpe-nopad"]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    from tinymodels import make_tiny_model

    root = tmp_path_factory.mktemp("kinds")
    paths = {(k, a): make_tiny_model(root / f"{k}-{a}", seed=10 * i + j, arch=a, tokenizer=k)
             for i, k in enumerate(["bpe", *KINDS])
             for j, a in enumerate(["llama", "gpt2", "neox"])}
    eng = Lineage(root / "home")
    eng.register("T", str(paths["wordpiece", "llama"]), "teacher")
    eng.register("T2", str(paths["unigram", "gpt2"]), "teacher")
    for n, key in enumerate([("bpe", "llama"), ("unigram", "neox"), ("bpe-nopad", "gpt2"),
                             ("wordpiece", "neox")]):
        eng.register(f"r{n}", str(paths[key]), "reference")
    return eng, paths


@pytest.mark.parametrize("access", ["full", "logprobs", "text"])
@pytest.mark.parametrize("kind", KINDS)
def test_scan_runs_for_each_tokenizer_kind(home, kind, access):
    eng, paths = home
    r = eng.scan(str(paths[kind, "llama" if kind != "wordpiece" else "gpt2"]), access=access,
                 max_queries=40)
    assert 0 < r.queries <= 40
    assert {c.teacher for c in r.candidates} == {"T", "T2"}
    assert all(0.0 <= c.raw_p_value <= 1.0 and c.verdict != "derived" for c in r.candidates)
    assert all(c.p_parts for c in r.candidates)  # every test ran: no teacher was skipped
    # full access: the suspect scored both teachers' texts in their own tokenizers
    assert all(("teacher_text" in c.p_parts) == (access == "full") for c in r.candidates)
