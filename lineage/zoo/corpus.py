"""Corpora every machine has: docstrings of installed Python sources, parsed with `ast`.

Nothing is imported or executed: files are read as text and parsed. Two corpora:
- "stdlib": the standard library (about 1.6 MB of docstrings);
- "thirdparty": numpy, torch and transformers as installed (different data, for independents
  trained on other data and for fine-tuning after distillation).
Each is split deterministically by a hash of the file path into "train" and "heldout".
"""

from __future__ import annotations

import ast
import hashlib
import sysconfig
from functools import lru_cache
from pathlib import Path

__all__ = ["load_corpus", "docstrings_of"]

_SKIP = ("test", "tests", "idlelib", "lib2to3", "site-packages", "turtledemo", "__pycache__")
_THIRD = ("numpy", "torch", "transformers")
MAX_FILE_BYTES = 2 << 20


def docstrings_of(path: Path) -> list[str]:
    """Docstrings of a module, its classes and functions, by parsing (never importing)."""
    try:
        src = path.read_bytes()
        if len(src) > MAX_FILE_BYTES:
            return []
        tree = ast.parse(src)
    except (SyntaxError, ValueError, OSError, RecursionError):
        return []
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            d = ast.get_docstring(node)
            if d and len(d) >= 40:
                out.append(" ".join(d.split()))  # flatten whitespace: one paragraph each
    return out


def _files(name: str) -> list[Path]:
    if name == "stdlib":
        root = Path(sysconfig.get_paths()["stdlib"])
        return sorted(p for p in root.rglob("*.py")
                      if not any(part in _SKIP for part in p.relative_to(root).parts))
    if name == "thirdparty":
        site = Path(sysconfig.get_paths()["purelib"])
        files: list[Path] = []
        for pkg in _THIRD:
            files += [p for p in (site / pkg).rglob("*.py")
                      if not any(part in ("tests", "testing") for part in p.parts)]
        return sorted(files)
    raise ValueError(f"unknown corpus {name!r}")


def _is_heldout(path: Path) -> bool:
    return hashlib.sha256(path.name.encode() + str(path.parent.name).encode()).digest()[0] < 26


@lru_cache(maxsize=8)
def load_corpus(name: str, split: str = "train", max_chars: int = 4_000_000) -> tuple[str, ...]:
    """Docstrings of corpus `name` ("stdlib" | "thirdparty"), split "train" | "heldout",
    stopping once `max_chars` characters are collected (files in sorted order)."""
    if split not in ("train", "heldout"):
        raise ValueError(f"unknown split {split!r}")
    out: list[str] = []
    total = 0
    for f in _files(name):
        if _is_heldout(f) == (split == "heldout"):
            docs = docstrings_of(f)
            out += docs
            total += sum(map(len, docs))
            if total >= max_chars:
                break
    return tuple(out)
