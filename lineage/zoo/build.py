"""Build a zoo: teachers, their students by several distillation recipes, and independents.

    python -m lineage.zoo.build --out DIR [--size micro|small|full] [--seed 0]

Writes one Hugging Face directory per model and `DIR/manifest.json`:
    {"models": [{"name", "path", "role", "parent", "recipe", "arch", "tokenizer", "params",
                 "train_tokens", "eval": {"teacher_bpc", "real_bpc"}}], "size", "seed"}

Recipes (students have role "suspect" and their teacher as parent):
- logit_kd      KL to the teacher's full next-token distribution on real text (same tokenizer)
- seq_kd        trained only on text the teacher sampled (temperature 1), same tokenizer
- seq_kd_xtok   the same teacher text, another tokenizer and architecture
- mix50/20/05   teacher text is 50% / 20% / 5% of the training tokens, the rest real text
- seq_kd_ft     seq_kd, then fine-tuned on other data (third-party docstrings)
- independent_seed / independent_arch / independent_data: no parent; some are references.

The build is resumable: finished models are skipped (each is written to a temp dir, then
renamed), and teacher samples are cached under DIR/_data.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from lineage.zoo.corpus import load_corpus
from lineage.zoo.train import (ModelSpec, bits_per_char, encode_stream, new_model, save,
                               train_lm, train_tokenizer)

__all__ = ["build_zoo", "SIZES"]

LR = 5e-3
BATCH = 16


@dataclass(frozen=True)
class Entry:
    name: str
    role: str
    recipe: str
    arch: str
    tok: str
    parent: str | None = None
    data: str = "stdlib"  # training text for independents
    hidden: int = 128


@dataclass(frozen=True)
class Size:
    tokens: int  # training tokens per model
    teacher_tokens: int  # teacher-sampled tokens per teacher (sequence KD data)
    ft_tokens: int
    entries: tuple[Entry, ...]


def _students(t: str, arch: str, tok: str, xarch: str, xtok: str, recipes: tuple[str, ...]
              ) -> list[Entry]:
    out = []
    for r in recipes:
        a, k = (xarch, xtok) if r == "seq_kd_xtok" else (arch, tok)
        out.append(Entry(f"{t}-{r.replace('_', '-')}", "suspect", r, a, k, parent=t))
    return out


_SMALL = (
    Entry("t1", "teacher", "teacher", "llama", "bpe4k"),
    Entry("t2", "teacher", "teacher", "neox", "bpe4k"),
    Entry("r1", "reference", "independent_seed", "llama", "bpe4k"),
    Entry("r2", "reference", "independent_arch", "neox", "bpe4k"),
    Entry("r3", "reference", "independent_arch", "llama", "bpe2k"),
    Entry("i1", "suspect", "independent_seed", "llama", "bpe4k"),
    *_students("t1", "llama", "bpe4k", "neox", "bpe2k", ("logit_kd", "seq_kd")),
)
_ALL = ("logit_kd", "seq_kd", "seq_kd_xtok", "mix50", "mix20", "mix05", "seq_kd_ft")
_FULL = (
    Entry("t1", "teacher", "teacher", "llama", "bpe4k"),
    Entry("t2", "teacher", "teacher", "neox", "bpe4k"),
    Entry("t3", "teacher", "teacher", "llama", "bpe3k", hidden=160),
    Entry("r1", "reference", "independent_seed", "llama", "bpe4k"),
    Entry("r2", "reference", "independent_arch", "neox", "bpe4k"),
    Entry("r3", "reference", "independent_arch", "llama", "bpe2k"),
    Entry("r4", "reference", "independent_data", "neox", "bpe3k", data="thirdparty"),
    Entry("r5", "reference", "independent_seed", "llama", "bpe3k", hidden=160),
    Entry("i1", "suspect", "independent_seed", "llama", "bpe4k"),
    Entry("i2", "suspect", "independent_arch", "neox", "bpe2k"),
    Entry("i3", "suspect", "independent_data", "llama", "bpe3k", data="thirdparty"),
    Entry("i4", "suspect", "independent_seed", "neox", "bpe4k"),
    *_students("t1", "llama", "bpe4k", "neox", "bpe2k", _ALL),
    *_students("t2", "neox", "bpe4k", "llama", "bpe2k", _ALL),
    *_students("t3", "llama", "bpe3k", "neox", "bpe2k", _ALL),
)
SIZES = {
    "micro": Size(20_000, 10_000, 5_000, (
        Entry("t1", "teacher", "teacher", "llama", "bpe4k", hidden=32),
        Entry("r1", "reference", "independent_seed", "neox", "bpe4k", hidden=32),
        Entry("t1-seq-kd", "suspect", "seq_kd", "llama", "bpe4k", parent="t1", hidden=32))),
    "small": Size(400_000, 250_000, 0, _SMALL),
    "full": Size(1_000_000, 1_000_000, 150_000, _FULL),
}
_VOCAB = {"bpe4k": 4096, "bpe3k": 3072, "bpe2k": 2048}


class _Zoo:
    def __init__(self, out: Path, size: Size, seed: int, log: Callable[[str], None]) -> None:
        self.out, self.size, self.seed, self.log = out, size, seed, log
        self.data = out / "_data"
        self.data.mkdir(parents=True, exist_ok=True)
        self._toks: dict[str, Any] = {}
        self._streams: dict[tuple[str, str], np.ndarray] = {}
        self._models: dict[str, Any] = {}

    def text(self, corpus: str) -> tuple[str, ...]:
        return load_corpus(corpus, "train")

    def tok(self, name: str) -> Any:
        if name not in self._toks:
            from transformers import PreTrainedTokenizerFast

            f = self.data / f"{name}.json"
            if not f.exists():
                # bpe3k learns from both corpora, so it differs from bpe4k beyond its size
                texts = self.text("stdlib") + (self.text("thirdparty")[:3000]
                                               if name == "bpe3k" else ())
                train_tokenizer(texts, _VOCAB[name]).backend_tokenizer.save(str(f))
            from lineage.zoo.train import EOS

            self._toks[name] = PreTrainedTokenizerFast(tokenizer_file=str(f), eos_token=EOS,
                                                       pad_token=EOS, bos_token=EOS)
        return self._toks[name]

    def stream(self, tok: str, corpus: str) -> np.ndarray:
        key = (tok, corpus)
        if key not in self._streams:
            self._streams[key] = encode_stream(self.tok(tok), self.text(corpus))
        return self._streams[key]

    def model(self, name: str) -> Any:
        if name not in self._models:
            from transformers import AutoModelForCausalLM

            self._models[name] = AutoModelForCausalLM.from_pretrained(self.out / name).eval()
        return self._models[name]

    def teacher_text(self, teacher: str, split: str, n_tokens: int) -> list[str]:
        """Prompt + sampled continuation strings from `teacher` (cached)."""
        f = self.data / f"{teacher}-{split}-samples.json"
        if f.exists():
            return json.loads(f.read_text())
        from lineage.backends.local_hf import LocalHFBackend

        b = LocalHFBackend(self.out / teacher, device="cpu")
        docs = load_corpus("stdlib", split)
        rng = np.random.default_rng(self.seed + 17)
        out: list[str] = []
        got = 0
        t0 = time.monotonic()
        while got < n_tokens:
            idx = rng.integers(0, len(docs), size=512)
            prompts = [" ".join(docs[i].split()[: int(rng.integers(2, 6))]) for i in idx]
            rows = b.sample(prompts, n=1, max_new_tokens=48, temperature=1.0,
                            seed=int(rng.integers(1 << 30)))
            for p, r in zip(prompts, rows):
                out.append(p + r[0].text)
                got += r[0].n_tokens
        self.log(f"{teacher}: sampled {got} tokens in {time.monotonic() - t0:.0f}s")
        f.write_text(json.dumps(out))
        return out

    def build(self, e: Entry) -> dict[str, Any]:
        final = self.out / e.name
        meta_f = final / "zoo.json"
        if meta_f.exists():
            return json.loads(meta_f.read_text())
        S = self.size
        seed = self.seed * 1000 + sum(map(ord, e.name))
        tok = self.tok(e.tok)
        spec = ModelSpec(e.arch, hidden=e.hidden, layers=2, heads=4, ctx=64)
        m = new_model(spec, len(tok), seed)
        t0 = time.monotonic()
        kw: dict[str, Any] = dict(tokens=S.tokens, seed=seed, lr=LR, batch=BATCH)
        if e.recipe in ("teacher",) or e.recipe.startswith("independent"):
            stream = self.stream(e.tok, e.data)
        elif e.recipe == "logit_kd":
            stream = self.stream(e.tok, "stdlib")
            kw["teacher"] = self.model(e.parent)
        else:
            tt = encode_stream(tok, self.teacher_text(e.parent, "train", S.teacher_tokens))
            if e.recipe.startswith("mix"):
                share = int(e.recipe[3:]) / 100
                real = self.stream(e.tok, "stdlib")
                n_t = int(share * S.tokens)
                reps = int(np.ceil((S.tokens - n_t) / len(real)))
                stream = np.concatenate([tt[:n_t], np.tile(real, reps)[: S.tokens - n_t]])
            else:
                stream = tt
        train_lm(m, stream, **kw)
        if e.recipe == "seq_kd_ft":
            train_lm(m, self.stream(e.tok, "thirdparty"), tokens=S.ft_tokens, seed=seed + 1,
                     lr=1e-3, batch=BATCH)
        tmp = self.out / f".{e.name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        save(m, tok, tmp)
        meta = {"name": e.name, "path": e.name, "role": e.role, "parent": e.parent,
                "recipe": e.recipe, "arch": e.arch, "tokenizer": e.tok,
                "params": int(sum(p.numel() for p in m.parameters())),
                "train_tokens": S.tokens + (S.ft_tokens if e.recipe == "seq_kd_ft" else 0),
                "train_seconds": round(time.monotonic() - t0, 1)}
        (tmp / "zoo.json").write_text(json.dumps(meta))
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        self._models[e.name] = m
        self.log(f"{e.name} ({e.recipe}) trained in {meta['train_seconds']}s")
        return meta

    def evaluate(self, e: Entry, meta: dict[str, Any], first_teacher: str) -> dict[str, Any]:
        """Bits per char on held-out samples of the parent (or first) teacher and on real text."""
        if "eval" in meta:
            return meta
        m, tok = self.model(e.name), self.tok(e.tok)
        ref = e.parent or (first_teacher if e.role != "teacher" else None)
        held = self.teacher_text(ref, "heldout", 4000) if ref else []
        meta["eval"] = {
            "teacher": ref,
            "teacher_bpc": round(bits_per_char(m, tok, held, 60), 4) if ref else None,
            "real_bpc": round(bits_per_char(m, tok, load_corpus("stdlib", "heldout"), 60), 4),
        }
        (self.out / e.name / "zoo.json").write_text(json.dumps(meta))
        return meta


def build_zoo(out: Path, size: str = "small", seed: int = 0,
              progress: Callable[[str], None] | None = None) -> Path:
    """Train the zoo of `size` into `out`; returns the manifest path."""
    if size not in SIZES:
        raise ValueError(f"unknown zoo size {size!r}; choose one of {sorted(SIZES)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    log = progress or (lambda _m: None)
    t0 = time.monotonic()
    zoo = _Zoo(out, SIZES[size], seed, log)
    entries = SIZES[size].entries
    metas = {e.name: zoo.build(e) for e in entries}  # teachers come before their students
    first = next(e.name for e in entries if e.role == "teacher")
    models = [zoo.evaluate(e, metas[e.name], first) for e in entries]
    manifest = out / "manifest.json"
    tmp = out / ".manifest.json.tmp"
    tmp.write_text(json.dumps({"models": models, "size": size, "seed": seed,
                               "build_seconds": round(time.monotonic() - t0, 1)}, indent=1))
    tmp.replace(manifest)
    log(f"zoo {size} built in {time.monotonic() - t0:.0f}s: {manifest}")
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Build the lineage model zoo.")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--size", default="small", choices=sorted(SIZES))
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    build_zoo(a.out, a.size, a.seed, progress=lambda m: print(m, file=sys.stderr, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
