"""Build a zoo: teachers, their students by several distillation recipes, and independents.

    python -m lineage.zoo.build --out DIR [--size micro|small|full] [--seed 0]

Writes one Hugging Face directory per model (config.json, model.safetensors, tokenizer.json)
and `DIR/manifest.json` (shape in `manifest.py`). Resumable: a model is written to a temp dir
and renamed once complete (marker file last); finished models, tokenizers and teacher samples
(`DIR/_data`) are reused. Recipes are listed in `plan.py`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .corpus import load_corpus
from .manifest import DONE, eval_texts, model_meta, read_meta, write_manifest, write_meta
from .plan import MIX_SHARE, SIZES, Entry, Size
from .tok import TOKENIZERS, encode_stream, train_tokenizer
from .train import bits_per_char, sample, train_lm

__all__ = ["build_zoo", "main"]

CTX = 128
LR = 4e-3
PROMPT = 4  # EOS + 3 tokens of a docstring


class _Builder:
    def __init__(self, out: Path, size: Size, seed: int, log: Callable[[str], None]) -> None:
        self.out, self.size, self.seed, self.log = out, size, seed, log
        self.data = out / "_data"
        self.data.mkdir(parents=True, exist_ok=True)
        self._toks: dict[str, Any] = {}
        self._streams: dict[tuple[str, str], np.ndarray] = {}
        self._models: dict[str, Any] = {}
        self._samples: dict[tuple[str, str], np.ndarray] = {}

    def seed_of(self, name: str) -> int:
        return (zlib.crc32(name.encode()) + 7919 * self.seed) % (2**31)

    def tok(self, name: str) -> Any:
        if name not in self._toks:
            from transformers import PreTrainedTokenizerFast

            from .tok import EOS

            f = self.data / f"tok-{name}.json"
            if not f.exists():
                vocab, corpus = TOKENIZERS[name]
                tmp = f.with_suffix(".tmp")
                train_tokenizer(load_corpus(corpus, "train"), vocab).backend_tokenizer.save(
                    str(tmp))
                tmp.replace(f)
                self.log(f"tokenizer {name} trained")
            self._toks[name] = PreTrainedTokenizerFast(
                tokenizer_file=str(f), eos_token=EOS, bos_token=EOS, pad_token=EOS,
                model_max_length=CTX)
        return self._toks[name]

    def stream(self, tok: str, corpus: str) -> np.ndarray:
        if (tok, corpus) not in self._streams:
            self._streams[tok, corpus] = encode_stream(self.tok(tok), load_corpus(corpus))
        return self._streams[tok, corpus]

    def model(self, name: str) -> Any:
        if name not in self._models:
            from transformers import AutoModelForCausalLM

            self._models[name] = AutoModelForCausalLM.from_pretrained(self.out / name).eval()
        return self._models[name]

    def samples(self, e: Entry, split: str) -> np.ndarray:
        """Token rows [N, CTX] sampled from teacher `e` (prompted by docstring starts)."""
        key = (e.name, split)
        if key in self._samples:
            return self._samples[key]
        f = self.data / f"samples-{e.name}-{split}.npy"
        if f.exists():
            rows = np.load(f)
        else:
            tok = self.tok(e.tok)
            n = (self.size.sample_tokens // (CTX - PROMPT) + 1 if split == "train"
                 else self.size.eval_rows)
            docs = [d for d in load_corpus("stdlib", split)]
            rng = np.random.default_rng(self.seed_of(e.name + split))
            enc = tok.backend_tokenizer.encode_batch(
                [docs[i] for i in rng.integers(0, len(docs), size=2 * n)],
                add_special_tokens=False)
            heads = [x.ids[: PROMPT - 1] for x in enc if len(x.ids) >= PROMPT - 1][:n]
            while len(heads) < n:
                heads += heads[: n - len(heads)]
            prompts = np.asarray([[tok.eos_token_id] + h for h in heads], dtype=np.int32)
            t0 = time.monotonic()
            rows = sample(self.model(e.name), prompts, new_tokens=CTX - PROMPT,
                          seed=self.seed_of(e.name + split + "s"),
                          temperature=self.size.temperature)
            dt = time.monotonic() - t0
            self.log(f"{e.name}: sampled {rows.size - prompts.size} {split} tokens in "
                     f"{dt:.1f}s ({(rows.size - prompts.size) / max(dt, 1e-9):.0f} tok/s)")
            tmp = self.data / f".samples-{e.name}-{split}.npy"
            np.save(tmp, rows)
            tmp.replace(f)
        self._samples[key] = rows
        return rows

    def teacher_texts(self, teacher: Entry, split: str) -> list[str]:
        return eval_texts(self.tok(teacher.tok), self.samples(teacher, split))

    def train(self, e: Entry, entries: dict[str, Entry]) -> tuple[Any, int]:
        from .arch import new_model

        S, tok, seed = self.size, self.tok(e.tok), self.seed_of(e.name)
        if e.recipe == "seq_kd_ft":
            base = entries[f"{e.parent}-seq_kd"]
            m = self.model(base.name)
            m = type(m)(m.config)
            m.load_state_dict(self.model(base.name).state_dict())
            st = train_lm(m, self.stream(e.tok, "thirdparty"), tokens=S.ft_tokens, seed=seed,
                          lr=LR / 4, log=self.log)
            return m, int(read_meta(self.out / base.name)["train_tokens"]) + st["tokens"]
        m = new_model(e.arch, len(tok), seed=seed, ctx=CTX, eos_id=tok.eos_token_id)
        kw: dict[str, Any] = dict(seed=seed, lr=LR, log=self.log)
        tokens = {"teacher": S.teacher_tokens, "reference": S.ref_tokens}.get(
            e.role, S.kd_tokens if e.recipe == "logit_kd" else S.suspect_tokens)
        if e.recipe == "teacher" or e.recipe.startswith("independent"):
            stream = self.stream(e.tok, e.data)
        elif e.recipe == "logit_kd":
            stream, kw["teacher"] = self.stream(e.tok, "stdlib"), self.model(e.parent)
        else:
            t = entries[e.parent]
            rows = self.samples(t, "train")
            if e.tok == t.tok:
                teach = rows.reshape(-1)
            else:
                teach = encode_stream(tok, eval_texts(self.tok(t.tok), rows, min_chars=1))
            stream = teach
            if e.recipe in MIX_SHARE:
                f = MIX_SHARE[e.recipe]
                real = self.stream(e.tok, "stdlib")
                n_teach = min(len(teach), int(len(real) * f / (1 - f)))
                n_real = int(n_teach * (1 - f) / f)
                stream = np.concatenate([teach[:n_teach], np.resize(real, n_real)])
        st = train_lm(m, stream, tokens=tokens, **kw)
        self.log(f"  {st['tokens']} tokens in {st['seconds']}s ({st['tokens_per_s']} tok/s), "
                 f"loss {st['final_loss']}")
        return m, st["tokens"]

    def evaluate(self, e: Entry, m: Any, teachers: list[Entry]) -> dict[str, Any]:
        tok = self.tok(e.tok)
        by = {t.name: round(bits_per_char(m, tok, self.teacher_texts(t, "heldout")), 4)
              for t in teachers}
        vs = e.parent or (None if e.role == "teacher" else teachers[0].name)
        real = load_corpus("stdlib", "heldout")[: self.size.eval_docs]
        return {"teacher_bpc": by.get(vs) if vs else None, "vs": vs,
                "real_bpc": round(bits_per_char(m, tok, real), 4), "by_teacher": by}

    def build(self, e: Entry, entries: dict[str, Entry]) -> dict[str, Any]:
        final = self.out / e.name
        if (final / DONE).exists():
            return read_meta(final)
        t0 = time.monotonic()
        self.log(f"{e.name}: training ({e.recipe}, {e.arch}, {e.tok})")
        m, tokens = self.train(e, entries)
        m.eval()
        self._models[e.name] = m
        meta = model_meta(e, m, tokens, time.monotonic() - t0)
        self._save(e, m, meta)
        self.log(f"{e.name}: done in {time.monotonic() - t0:.1f}s")
        return meta

    def add_eval(self, e: Entry, meta: dict[str, Any], teachers: list[Entry]
                 ) -> dict[str, Any]:
        if "eval" not in meta:
            meta = dict(meta, eval=self.evaluate(e, self.model(e.name), teachers))
            write_meta(self.out / e.name, meta)
        return meta

    def _save(self, e: Entry, m: Any, meta: dict[str, Any]) -> Path:
        final, tmp = self.out / e.name, self.out / f".{e.name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        m.save_pretrained(tmp, safe_serialization=True)
        self.tok(e.tok).save_pretrained(tmp)
        write_meta(tmp, meta)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        return final


def build_zoo(out: Path, size: str = "small", seed: int = 0,
              progress: Callable[[str], None] | None = None) -> Path:
    """Train the zoo of `size` ("micro" | "small" | "full") into `out`; returns the manifest."""
    if size not in SIZES:
        raise ValueError(f"unknown zoo size {size!r}; choose one of {sorted(SIZES)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    log = progress or (lambda _m: None)
    t0 = time.monotonic()
    key = {"size": size, "seed": seed}
    kf = out / "_data" / "key.json"
    if kf.exists() and json.loads(kf.read_text()) != key:
        raise ValueError(f"{out} holds a zoo of {kf.read_text()}; use another directory")
    b = _Builder(out, SIZES[size], seed, log)
    kf.write_text(json.dumps(key))
    entries = {e.name: e for e in SIZES[size].entries}
    teachers = [e for e in entries.values() if e.role == "teacher"]
    metas = [b.build(e, entries) for e in entries.values()]
    t1 = time.monotonic()
    metas = [b.add_eval(e, m, teachers) for e, m in zip(entries.values(), metas)]
    log(f"evaluated in {time.monotonic() - t1:.0f}s")
    manifest = write_manifest(out, metas, size=size, seed=seed,
                              seconds=time.monotonic() - t0)
    log(f"zoo {size} built in {time.monotonic() - t0:.0f}s: {manifest}")
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lineage.zoo.build",
                                 description="Build the lineage model zoo (offline, CPU).")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--size", default="small", choices=sorted(SIZES))
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    build_zoo(a.out, a.size, a.seed, progress=lambda m: print(m, file=sys.stderr, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
