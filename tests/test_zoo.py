"""The zoo: corpus (parsed, never imported; deterministic), tokenizers, and a micro build."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest


def test_docstrings_are_parsed_not_executed(tmp_path: Path) -> None:
    from lineage.zoo.corpus import docstrings_of

    marker = tmp_path / "executed"
    src = tmp_path / "evil.py"
    src.write_text(
        '"""Module docstring that is long enough to be kept by the corpus."""\n'
        f"open({str(marker)!r}, 'w').write('x')\n"
        "raise SystemExit('imported!')\n"
        "def f():\n    \"\"\"A function docstring, also long enough to be kept here.\"\"\"\n"
        "class C:\n    \"\"\"Short.\"\"\"\n")
    docs = docstrings_of(src)
    assert docs == ["Module docstring that is long enough to be kept by the corpus.",
                    "A function docstring, also long enough to be kept here."]
    assert not marker.exists()
    (tmp_path / "broken.py").write_text("def (:\n")
    assert docstrings_of(tmp_path / "broken.py") == []


def test_corpus_deterministic_and_split() -> None:
    from lineage.zoo import corpus

    train = corpus.load_corpus("stdlib", "train")
    held = corpus.load_corpus("stdlib", "heldout")
    assert isinstance(train, list) and all(isinstance(d, str) for d in train[:10])
    assert sum(map(len, train)) > 500_000 and sum(map(len, held)) > 20_000
    assert not set(train) & set(held)
    corpus._load.cache_clear()
    assert corpus.load_corpus("stdlib", "train") == train
    with pytest.raises(ValueError):
        corpus.load_corpus("stdlib", "dev")
    with pytest.raises(ValueError):
        corpus.load_corpus("nope", "train")


def test_tokenizer_round_trip(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from lineage.zoo.corpus import load_corpus
    from lineage.zoo.tok import encode_stream, train_tokenizer

    docs = load_corpus("stdlib", "train")[:400]
    tok = train_tokenizer(docs, 512)
    tok.save_pretrained(tmp_path)
    tok2 = AutoTokenizer.from_pretrained(tmp_path)
    for text in [docs[0], docs[-1], "Ünïcødé ✓ and\ttabs  double  spaces", "x = f(a, *b)"]:
        ids = tok2(text, add_special_tokens=False)["input_ids"]
        assert tok2.decode(ids) == text
    assert tok2.eos_token == tok2.pad_token == tok2.bos_token == "<|endoftext|>"
    s = encode_stream(tok, docs[:3])
    assert s[0] == tok.eos_token_id and (s == tok.eos_token_id).sum() == 3


def test_micro_zoo(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lineage.zoo.build import build_zoo

    lines: list[str] = []
    manifest = build_zoo(tmp_path / "zoo", size="micro", seed=0, progress=lines.append, jobs=1)
    assert manifest == tmp_path / "zoo" / "manifest.json" and lines
    m = json.loads(manifest.read_text())
    assert m["size"] == "micro" and m["seed"] == 0 and m["corpus"] == "stdlib"
    names = {x["name"] for x in m["models"]}
    for x in m["models"]:
        assert set(x) >= {"name", "path", "role", "parent", "recipe", "eval", "params", "arch",
                          "tokenizer", "train_tokens"}
        assert x["role"] in ("teacher", "reference", "suspect")
        assert x["parent"] is None or x["parent"] in names
        assert isinstance(x["eval"]["real_bpc"], float)
        d = manifest.parent / x["path"]
        assert (d / "model.safetensors").exists() and (d / "tokenizer.json").exists()
        assert not list(d.rglob("*.bin")) and not list(d.rglob("*.pt"))
    student = next(x for x in m["models"] if x["recipe"] == "seq_kd")
    assert student["parent"] == "t1" and isinstance(student["eval"]["teacher_bpc"], float)
    d = manifest.parent / student["path"]
    model = AutoModelForCausalLM.from_pretrained(d)
    tok = AutoTokenizer.from_pretrained(d)
    out = model(**tok("Return the value", return_tensors="pt"))
    assert out.logits.shape[-1] == model.config.vocab_size
    # resumable: a second call reuses every finished model
    before = {x["name"]: (manifest.parent / x["path"] / "model.safetensors").stat().st_mtime_ns
              for x in m["models"]}
    build_zoo(tmp_path / "zoo", size="micro", seed=0, jobs=1)
    after = {x["name"]: (manifest.parent / x["path"] / "model.safetensors").stat().st_mtime_ns
             for x in m["models"]}
    assert before == after


def test_micro_zoo_on_the_other_corpus(tmp_path: Path, monkeypatch) -> None:
    """--corpus thirdparty swaps the plan's two corpora: every model trains on thirdparty text
    (the micro plan names only stdlib), the manifest and key say so, and the directory refuses
    a build on the default corpus."""
    import pytest

    from lineage.zoo import build as B

    streams: list[str] = []
    real_stream = B._Builder.stream
    monkeypatch.setattr(B._Builder, "stream",
                        lambda self, tok, corpus: streams.append(corpus) or
                        real_stream(self, tok, corpus))
    out = tmp_path / "zoo"
    m = json.loads(B.build_zoo(out, size="micro", seed=0, jobs=1,
                               corpus="thirdparty").read_text())
    assert m["corpus"] == "thirdparty" and streams and set(streams) == {"thirdparty"}
    assert {x["data"] for x in m["models"]} == {"thirdparty"}
    assert json.loads((out / "_data" / "key.json").read_text())["corpus"] == "thirdparty"
    with pytest.raises(ValueError, match="another directory"):
        B.build_zoo(out, size="micro", seed=0, jobs=1)
    with pytest.raises(ValueError, match="unknown corpus"):
        B.build_zoo(tmp_path / "z2", size="micro", corpus="wiki")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_parallel_micro_zoo_killed_and_resumed(tmp_path: Path) -> None:
    """Two workers: a build killed once the teacher is saved resumes (its workers die with
    it, the teacher is reused) and writes the manifest of every model in plan order."""
    from lineage.zoo.build import build_zoo
    from lineage.zoo.manifest import DONE
    from lineage.zoo.plan import SIZES

    out = tmp_path / "zoo"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    log = tmp_path / "build.log"
    with open(log, "w") as err:
        p = subprocess.Popen([sys.executable, "-m", "lineage.zoo.build", "--out", str(out),
                              "--size", "micro", "--jobs", "2"], stderr=err, env=env)
        try:
            deadline = time.monotonic() + 600
            while not (out / "t1" / DONE).exists() and p.poll() is None:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        finally:
            p.kill()
            p.wait()
    text = log.read_text()
    pids = [int(x) for x in re.search(r"pids ([\d, ]+)\)", text).group(1).split(", ")]
    assert len(pids) == 2, text
    t1 = (out / "t1" / "model.safetensors").stat().st_mtime_ns
    if sys.platform.startswith("linux"):  # workers die with their parent
        deadline = time.monotonic() + 30
        while any(map(_alive, pids)):
            assert time.monotonic() < deadline, f"workers {pids} outlived the build"
            time.sleep(0.2)
    lines: list[str] = []
    manifest = build_zoo(out, size="micro", seed=0, progress=lines.append, jobs=2)
    assert (out / "t1" / "model.safetensors").stat().st_mtime_ns == t1
    assert not [x for x in out.iterdir() if x.name.endswith(".tmp")]
    assert any(" worker processes " in x for x in lines)
    m = json.loads(manifest.read_text())
    assert [x["name"] for x in m["models"]] == [e.name for e in SIZES["micro"].entries]
    seen: set[str] = set()
    for x in m["models"]:
        assert x["parent"] is None or x["parent"] in seen
        seen.add(x["name"])
        assert isinstance(x["eval"]["real_bpc"], float)
        assert set(x["eval"]["by_teacher"]) == {"t1"}
        assert (out / x["path"] / DONE).exists()
        assert (out / x["path"] / "model.safetensors").exists()
    student = next(x for x in m["models"] if x["recipe"] == "seq_kd")
    assert isinstance(student["eval"]["teacher_bpc"], float)


def test_parallel_tasks_respect_the_plan() -> None:
    """Tasks need parents, samples and bases, and can all run (no cycle, nothing missing)."""
    from lineage.zoo.build import _tasks
    from lineage.zoo.plan import SIZES

    for plan in SIZES.values():
        entries = {e.name: e for e in plan.entries}
        deps = _tasks(entries)
        assert {t[1] for t in deps if t[0] in ("model", "eval")} == set(entries)
        assert all(d in deps for need in deps.values() for d in need)
        done: set = set()
        while len(done) < len(deps):
            ready = [t for t in deps if t not in done and set(deps[t]) <= done]
            assert ready, set(deps) - done
            done.update(ready)
        for e in plan.entries:
            need = deps["model", e.name, ""]
            if e.recipe == "seq_kd_ft":
                assert need == (("model", f"{e.parent}-seq_kd", ""),)
            elif e.recipe == "logit_kd":
                assert need == (("model", e.parent, ""),)
            elif e.parent:
                assert need == (("samples", e.parent, "train"),)
            else:
                assert need == ()


def test_plans_are_consistent() -> None:
    from lineage.zoo.arch import SIZES as ARCH_SIZES
    from lineage.zoo.plan import SIZES, STUDENT_RECIPES
    from lineage.zoo.tok import TOKENIZERS

    for size, plan in SIZES.items():
        seen: dict[str, str] = {}
        for e in plan.entries:
            assert e.tok in TOKENIZERS and e.arch.split("-")[1] in ARCH_SIZES, (size, e)
            assert e.arch.split("-")[0] in ("llama", "neox", "gpt2")
            assert e.name not in seen
            if e.parent is not None:  # parents (and a fine-tuned model's base) come first
                assert seen.get(e.parent) == "teacher" and e.role == "suspect"
                assert e.recipe in STUDENT_RECIPES
            if e.recipe == "seq_kd_ft":
                assert f"{e.parent}-seq_kd" in seen
            seen[e.name] = e.role
    full = SIZES["full"].entries
    teachers = [e for e in full if e.role == "teacher"]
    assert len(teachers) >= 3 and len({e.arch.split("-")[0] for e in teachers}) >= 2
    for t in teachers:
        assert {e.recipe for e in full if e.parent == t.name} == set(STUDENT_RECIPES)
    assert sum(e.role == "reference" for e in full) >= 4
    assert sum(e.role == "suspect" and e.parent is None for e in full) >= 3
    # issue 4's calibration needs >= 100 null suspect-teacher pairs from distinct models
    suspects = [e for e in full if e.role == "suspect"]
    null_pairs = [(s.name, t.name) for s in suspects for t in teachers if s.parent != t.name]
    assert len(null_pairs) >= 100 and len({s.name for s in suspects}) == len(suspects)
    assert {e.arch for e in full if e.recipe == "independent_small"} >= {"llama-xs", "neox-xs",
                                                                         "gpt2-xs"}
