"""The zoo's records: per-model metadata (`zoo.json` + a completion marker) and the manifest.

manifest.json: {"models": [{"name", "path", "role", "parent", "recipe", "arch", "tokenizer",
"params", "train_tokens", "train_seconds", "eval": {"teacher_bpc", "vs", "real_bpc",
"by_teacher"}}], "size", "seed", "build_seconds"}; `path` is relative to the manifest's dir.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .plan import Entry

__all__ = [
    "DONE",
    "META",
    "eval_texts",
    "model_meta",
    "read_meta",
    "write_manifest",
    "write_meta",
]

DONE = ".zoo-complete"
META = "zoo.json"


def model_meta(e: Entry, model: Any, tokens: int, seconds: float,
               data: str | None = None) -> dict[str, Any]:
    """`data`: the corpus the model was trained on (default the plan's `e.data`)."""
    return {"name": e.name, "path": e.name, "role": e.role, "parent": e.parent,
            "recipe": e.recipe, "arch": e.arch, "tokenizer": e.tok, "data": data or e.data,
            "params": int(sum(p.numel() for p in model.parameters())),
            "train_tokens": int(tokens), "train_seconds": round(seconds, 1)}


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def write_meta(model_dir: Path, meta: dict[str, Any]) -> None:
    """Write `zoo.json`, then the completion marker (last)."""
    _atomic_write(model_dir / META, json.dumps(meta, indent=1))
    (model_dir / DONE).touch()


def read_meta(model_dir: Path) -> dict[str, Any]:
    return json.loads((model_dir / META).read_text())


def write_manifest(out: Path, metas: list[dict[str, Any]], *, size: str, seed: int,
                   seconds: float, corpus: str = "stdlib") -> Path:
    """`corpus`: the zoo's main training text (each model's "data" names its own)."""
    path = out / "manifest.json"
    _atomic_write(path, json.dumps({"models": metas, "size": size, "seed": seed,
                                    "corpus": corpus, "build_seconds": round(seconds, 1)},
                                   indent=1))
    return path


def eval_texts(tok: Any, rows: np.ndarray, min_chars: int = 20) -> list[str]:
    """Sampled token rows as texts: each row split at EOS, pieces decoded."""
    eos = tok.eos_token_id
    out: list[str] = []
    for row in rows:
        piece: list[int] = []
        for t in [*row.tolist(), eos]:
            if t == eos:
                if piece:
                    text = tok.decode(piece)
                    if len(text) >= min_chars:
                        out.append(text)
                piece = []
            else:
                piece.append(t)
    return out
