"""Build a zoo: teachers, their students by several distillation recipes, and independents.

    python -m lineage.zoo.build --out DIR [--size micro|small|full] [--seed 0] [--jobs N]

Writes one Hugging Face directory per model (config.json, model.safetensors, tokenizer.json)
and `DIR/manifest.json` (shape in `manifest.py`). Resumable: a model is written to a temp dir
and renamed once complete (marker file last); finished models, tokenizers and teacher samples
(`DIR/_data`) are reused. Recipes are listed in `plan.py`.

The models are too small for one training run to use several cores well, so `jobs` worker
processes (default: min(2, cores)) each train one model at a time on one torch thread, in
the order of `plan.py` as far as the dependencies allow: a student starts once its teacher
(and, for sequence KD, the teacher's samples) is done, `seq_kd_ft` once its base is. The
parent trains the tokenizers first; every teacher's samples are one task, made once. Each
model's seed is that of the serial build, but one thread sums floats in another order than
two, so a model can differ from the serial (`jobs=1`, caller's threads) build's in the last
bits. A build directory is locked while building (a second builder waits).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import sys
import time
import traceback
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np

from .corpus import CORPORA, load_corpus
from .manifest import DONE, eval_texts, model_meta, read_meta, write_manifest, write_meta
from .plan import MIX_SHARE, SIZES, Entry, Size
from .tok import TOKENIZERS, encode_stream, train_tokenizer
from .train import bits_per_char, sample, train_lm

__all__ = ["build_zoo", "default_jobs", "main"]

CTX = 128
LR = 4e-3
PROMPT = 4  # EOS + 3 tokens of a docstring


class _Builder:
    def __init__(self, out: Path, size: Size, seed: int, log: Callable[[str], None],
                 corpus: str = "stdlib") -> None:
        self.out, self.size, self.seed, self.log = out, size, seed, log
        # `corpus` is checked by build_zoo. The plan names "stdlib" as the main corpus and
        # "thirdparty" as the other data; a zoo built on thirdparty swaps the two (tokenizers
        # keep their own corpora)
        self.main = corpus
        self.other = next(c for c in CORPORA if c != corpus)
        self.data = out / "_data"
        self.data.mkdir(parents=True, exist_ok=True)
        self._toks: dict[str, Any] = {}
        self._streams: dict[tuple[str, str], np.ndarray] = {}
        self._models: dict[str, Any] = {}
        self._samples: dict[tuple[str, str], np.ndarray] = {}

    def data_of(self, data: str) -> str:
        """The corpus an entry's `data` ("stdlib": main, "thirdparty": other) means here."""
        return self.main if data == "stdlib" else self.other

    def seed_of(self, name: str) -> int:
        return (zlib.crc32(name.encode()) + 7919 * self.seed) % (2**31)

    def tok_file(self, name: str) -> Path:
        """The tokenizer's file in `_data`, trained first if it is not there."""
        f = self.data / f"tok-{name}.json"
        if not f.exists():
            vocab, corpus = TOKENIZERS[name]
            tmp = self.data / f".tok-{name}.{os.getpid()}.tmp"
            train_tokenizer(load_corpus(corpus, "train"), vocab).backend_tokenizer.save(str(tmp))
            tmp.replace(f)
            self.log(f"tokenizer {name} trained")
        return f

    def tok(self, name: str) -> Any:
        if name not in self._toks:
            from transformers import PreTrainedTokenizerFast

            from .tok import EOS

            f = self.tok_file(name)
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
            docs = [d for d in load_corpus(self.main, split)]
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
            tmp = self.data / f".samples-{e.name}-{split}.{os.getpid()}.tmp.npy"
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
            st = train_lm(m, self.stream(e.tok, self.other), tokens=S.ft_tokens, seed=seed,
                          lr=LR / 4, log=self.log)
            return m, int(read_meta(self.out / base.name)["train_tokens"]) + st["tokens"]
        m = new_model(e.arch, len(tok), seed=seed, ctx=CTX, eos_id=tok.eos_token_id)
        kw: dict[str, Any] = dict(seed=seed, lr=LR, log=self.log)
        tokens = e.tokens or {"teacher": S.teacher_tokens, "reference": S.ref_tokens}.get(
            e.role, S.kd_tokens if e.recipe == "logit_kd" else S.suspect_tokens)
        if e.recipe == "teacher" or e.recipe.startswith("independent"):
            stream = self.stream(e.tok, self.data_of(e.data))
        elif e.recipe == "logit_kd":
            stream, kw["teacher"] = self.stream(e.tok, self.main), self.model(e.parent)
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
                real = self.stream(e.tok, self.main)
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
        real = load_corpus(self.main, "heldout")[: self.size.eval_docs]
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
        meta = model_meta(e, m, tokens, time.monotonic() - t0, self.data_of(e.data))
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
        final, tmp = self.out / e.name, self.out / f".{e.name}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        m.save_pretrained(tmp, safe_serialization=True)
        self.tok(e.tok).save_pretrained(tmp)
        write_meta(tmp, meta)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        return final


def default_jobs() -> int:
    """Worker processes by default: min(2, the cores this process may run on)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(2, n))


# A task: (kind, model name, split); kind "model" trains and saves a model, "samples" makes a
# teacher's samples of a split, "eval" adds a model's evaluation to its metadata.
Task = tuple[str, str, str]


def _uses_samples(e: Entry) -> bool:
    """Whether `e` trains on its teacher's sampled text (see `_Builder.train`)."""
    return e.parent is not None and e.recipe not in ("logit_kd", "seq_kd_ft")


def _tasks(entries: dict[str, Entry]) -> dict[Task, tuple[Task, ...]]:
    """Every task and the tasks it needs, in the order to start them when several are ready:
    a teacher's training samples first (students wait on them), then models in plan order,
    then held-out samples and evaluations (which wait on every teacher's held-out samples)."""
    teachers = [e.name for e in entries.values() if e.role == "teacher"]
    deps: dict[Task, tuple[Task, ...]] = {}
    sampled = {e.parent for e in entries.values() if _uses_samples(e)}
    for t in teachers:
        if t in sampled:
            deps["samples", t, "train"] = (("model", t, ""),)
    for e in entries.values():
        need: tuple[Task, ...] = ()
        if e.recipe == "seq_kd_ft":
            need = (("model", f"{e.parent}-seq_kd", ""),)
        elif e.recipe == "logit_kd":
            need = (("model", str(e.parent), ""),)
        elif _uses_samples(e):
            need = (("samples", str(e.parent), "train"),)
        deps["model", e.name, ""] = need
    for t in teachers:
        deps["samples", t, "heldout"] = (("model", t, ""),)
    held = tuple(("samples", t, "heldout") for t in teachers)
    for e in entries.values():
        deps["eval", e.name, ""] = (("model", e.name, ""), *held)
    return deps


def _task_done(out: Path, task: Task) -> bool:
    kind, name, split = task
    if kind == "samples":
        return (out / "_data" / f"samples-{name}-{split}.npy").exists()
    if not (out / name / DONE).exists():
        return False
    return kind == "model" or "eval" in read_meta(out / name)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` (blocking): one builder per zoo directory at a time."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


_ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
               "TOKENIZERS_PARALLELISM": "false"}


@contextmanager
def _env(values: dict[str, str]) -> Iterator[None]:
    """`values` in os.environ while spawning workers (they read it before importing torch)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _worker(out: str, size: str, seed: int, corpus: str, tasks: Any, results: Any) -> None:
    """A worker process: runs tasks from `tasks` one at a time on one torch thread and reports
    log lines, completions and failures on `results`; stops at None or when the parent dies."""
    os.environ.update(_ONE_THREAD)
    if sys.platform.startswith("linux"):  # die with the parent: a killed build leaves no
        import ctypes  # worker training on (elsewhere the loop below watches the parent)
        import signal

        with suppress(Exception):
            ctypes.CDLL(None).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    parent = os.getppid()
    import torch

    torch.set_num_threads(1)
    name = ""

    def log(m: str) -> None:  # indented lines (training steps) name their model
        results.put(("log", f"  {name}:{m[1:]}" if m.startswith("  ") else m))

    b = _Builder(Path(out), SIZES[size], seed, log, corpus)
    entries = {e.name: e for e in SIZES[size].entries}
    teachers = [e for e in entries.values() if e.role == "teacher"]
    while True:
        try:
            task = tasks.get(timeout=5)
        except queue.Empty:
            if os.getppid() != parent:
                return
            continue
        if task is None:
            return
        kind, name, split = task
        t0 = time.monotonic()
        try:
            e = entries[name]
            if kind == "model":
                b.build(e, entries)
            elif kind == "samples":
                b.samples(e, split)
            else:
                b.add_eval(e, read_meta(b.out / name), teachers)
        except BaseException:  # noqa: BLE001 - reported to the parent, which stops the build
            results.put(("error", task, traceback.format_exc()))
            return
        results.put(("done", task, time.monotonic() - t0))


def _run_parallel(b: _Builder, entries: dict[str, Entry], size: str, seed: int,
                  jobs: int) -> float:
    """Run every unfinished task on `jobs` worker processes; returns the evaluation seconds
    (summed over workers)."""
    import multiprocessing as mp

    log = b.log
    deps = _tasks(entries)
    done = {t for t in deps if _task_done(b.out, t)}
    need = {t for t in deps if t not in done and t[0] != "samples"}
    grow = list(need)
    while grow:  # samples only where an unfinished task needs them (as in a serial build)
        for d in deps[grow.pop()]:
            if d not in done and d not in need:
                need.add(d)
                grow.append(d)
    todo = [t for t in deps if t in need]
    if not todo:
        return 0.0
    for tok in dict.fromkeys(entries[t[1]].tok for t in todo):  # made once, here
        b.tok_file(tok)
    ctx = mp.get_context("spawn")
    tasks, results = ctx.Queue(), ctx.Queue()
    procs = []
    with _env(_ONE_THREAD):
        for _ in range(min(jobs, len(todo))):
            p = ctx.Process(target=_worker, args=(str(b.out), size, seed, b.main, tasks, results),
                            daemon=True)
            p.start()
            procs.append(p)
    log(f"{len(procs)} worker processes (pids {', '.join(str(p.pid) for p in procs)}), "
        f"one torch thread each, {len(todo)} tasks")
    running: set[Task] = set()
    eval_s = 0.0
    try:
        while todo or running:
            for t in list(todo):
                if len(running) >= len(procs):
                    break
                if all(d in done for d in deps[t]):
                    todo.remove(t)
                    running.add(t)
                    tasks.put(t)
            if not running:
                raise RuntimeError(f"zoo tasks wait on each other: {todo}")
            try:
                msg = results.get(timeout=1.0)
            except queue.Empty:
                dead = [p for p in procs if not p.is_alive()]
                if not dead:
                    continue
                try:  # its last words, if any
                    msg = results.get(timeout=1.0)
                except queue.Empty:
                    raise RuntimeError(f"a zoo worker exited (code {dead[0].exitcode}) while "
                                       f"running {sorted(running)}") from None
            if msg[0] == "log":
                log(msg[1])
            elif msg[0] == "error":
                raise RuntimeError(f"zoo task {msg[1]} failed in a worker:\n{msg[2]}")
            else:
                running.discard(msg[1])
                done.add(msg[1])
                if msg[1][0] == "eval":
                    eval_s += msg[2]
        for _ in procs:
            tasks.put(None)
        for p in procs:
            p.join(timeout=30)
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(timeout=10)
        tasks.close()
        results.close()
    return eval_s


def build_zoo(out: Path, size: str = "small", seed: int = 0,
              progress: Callable[[str], None] | None = None, jobs: int | None = None,
              corpus: str = "stdlib") -> Path:
    """Train the zoo of `size` ("micro" | "small" | "full") into `out`; returns the manifest.

    `corpus` is the main training text ("stdlib", or "thirdparty": every model's data swapped
    with the other corpus, a zoo from another corpus than the default suite's probes).

    `jobs` worker processes (default `default_jobs()`) train models side by side; with 1 the
    build runs in this process, on the caller's torch threads."""
    if size not in SIZES:
        raise ValueError(f"unknown zoo size {size!r}; choose one of {sorted(SIZES)}")
    if corpus not in CORPORA:
        raise ValueError(f"unknown corpus {corpus!r}; choose one of {list(CORPORA)}")
    jobs = default_jobs() if jobs is None else int(jobs)
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, not {jobs}")
    out = Path(out)
    (out / "_data").mkdir(parents=True, exist_ok=True)
    with _locked(out / "_data" / ".lock"):
        return _build(out, size, seed, progress or (lambda _m: None), jobs, corpus)


def _build(out: Path, size: str, seed: int, log: Callable[[str], None], jobs: int,
           corpus: str = "stdlib") -> Path:
    t0 = time.monotonic()
    key: dict[str, Any] = {"size": size, "seed": seed}
    if corpus != "stdlib":  # the default's key (and so existing zoos) unchanged
        key["corpus"] = corpus
    kf = out / "_data" / "key.json"
    if kf.exists() and json.loads(kf.read_text()) != key:
        raise ValueError(f"{out} holds a zoo of {kf.read_text()}; use another directory")
    entries = {e.name: e for e in SIZES[size].entries}
    stale = [p for name in entries for p in out.glob(f".{name}.*tmp")]  # a killed build's
    stale += [*(out / "_data").glob(".tok-*.tmp"), *(out / "_data").glob(".samples-*.tmp.npy")]
    for p in stale:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    b = _Builder(out, SIZES[size], seed, log, corpus)
    kf.write_text(json.dumps(key))
    teachers = [e for e in entries.values() if e.role == "teacher"]
    if jobs > 1:
        import multiprocessing as mp

        if mp.current_process().daemon:  # may not start processes of its own
            jobs = 1
    if jobs == 1:
        metas = [b.build(e, entries) for e in entries.values()]
        t1 = time.monotonic()
        metas = [b.add_eval(e, m, teachers) for e, m in zip(entries.values(), metas)]
        log(f"evaluated in {time.monotonic() - t1:.0f}s")
    else:
        eval_s = _run_parallel(b, entries, size, seed, jobs)
        metas = [read_meta(out / name) for name in entries]
        log(f"evaluated in {eval_s:.0f}s (summed over workers)")
    manifest = write_manifest(out, metas, size=size, seed=seed,
                              seconds=time.monotonic() - t0, corpus=corpus)
    log(f"zoo {size} built in {time.monotonic() - t0:.0f}s: {manifest}")
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lineage.zoo.build",
                                 description="Build the lineage model zoo (offline, CPU).")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--size", default="small", choices=sorted(SIZES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--corpus", default="stdlib", choices=CORPORA,
                    help="main training text (default stdlib; thirdparty swaps the two)")
    ap.add_argument("--jobs", type=int, default=None,
                    help="worker processes, one model each at a time (default: min(2, cores);"
                         " 1: serial, in this process)")
    a = ap.parse_args(argv)
    build_zoo(a.out, a.size, a.seed, progress=lambda m: print(m, file=sys.stderr, flush=True),
              jobs=a.jobs, corpus=a.corpus)
    return 0


if __name__ == "__main__":
    sys.exit(main())
