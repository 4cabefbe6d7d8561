"""Corpora every machine has: docstrings of installed Python sources, parsed with `ast`.

Nothing is imported or executed: files are read as bytes and parsed. Two corpora:
- "stdlib": the standard library (about 1.5 MB of docstrings);
- "thirdparty": numpy, torch and transformers as installed (other data, for independents
  trained on other data and for fine-tuning after distillation), capped per package.
Each is split deterministically by a hash of the file's path relative to its root into
"train" and "heldout" (about 10% of files).
"""

from __future__ import annotations

import ast
import hashlib
import sysconfig
from functools import lru_cache
from pathlib import Path

__all__ = ["CORPORA", "docstrings_of", "load_corpus"]

CORPORA = ("stdlib", "thirdparty")
_SKIP = ("test", "tests", "testing", "idlelib", "lib2to3", "site-packages", "turtledemo",
         "__pycache__", "ensurepip", "pydoc_data")
_THIRD = ("numpy", "torch", "transformers")
_THIRD_CAP = 1_500_000  # characters per package per split
MAX_FILE_BYTES = 2 << 20
MIN_DOC = 40


def docstrings_of(path: Path) -> list[str]:
    """Docstrings of a module, its classes and functions, by parsing (never importing)."""
    try:
        src = path.read_bytes()
        if len(src) > MAX_FILE_BYTES:
            return []
        tree = ast.parse(src)
    except (SyntaxError, ValueError, OSError, RecursionError, MemoryError):
        return []
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            d = ast.get_docstring(node)
            if d and len(d) >= MIN_DOC:
                out.append(" ".join(d.split()))  # flatten whitespace: one paragraph each
    return out


def _roots(name: str) -> list[Path]:
    if name == "stdlib":
        return [Path(sysconfig.get_paths()["stdlib"])]
    if name == "thirdparty":
        site = Path(sysconfig.get_paths()["purelib"])
        return [site / p for p in _THIRD if (site / p).is_dir()]
    raise ValueError(f"unknown corpus {name!r}")


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py")
                  if not any(part in _SKIP for part in p.relative_to(root).parts))


def is_heldout(rel: str) -> bool:
    """Whether a file (path relative to its corpus root, '/'-separated) is held out."""
    return hashlib.sha256(rel.encode()).digest()[0] < 26


def load_corpus(name: str, split: str = "train") -> list[str]:
    """Docstrings of corpus `name` ("stdlib" | "thirdparty"), split "train" | "heldout".

    Deterministic: files in sorted order, docstrings in source order, duplicates dropped;
    no held-out docstring also occurs in "train"."""
    if split not in ("train", "heldout"):
        raise ValueError(f"unknown split {split!r}")
    return list(_load(name, split))


@lru_cache(maxsize=8)
def _load(name: str, split: str) -> tuple[str, ...]:
    out: dict[str, None] = {}  # ordered set: many docstrings are copied verbatim
    cap = _THIRD_CAP if name == "thirdparty" else None
    for root in _roots(name):
        total = 0
        for f in _files(root):
            rel = f.relative_to(root.parent if name == "thirdparty" else root).as_posix()
            if is_heldout(rel) != (split == "heldout"):
                continue
            for d in docstrings_of(f):
                if d not in out:
                    out[d] = None
                    total += len(d)
            if cap and total >= (cap if split == "train" else cap // 8):
                break
    if split == "heldout":  # never hold out text the models were trained on
        seen = set(_load(name, "train"))
        return tuple(d for d in out if d not in seen)
    return tuple(out)
