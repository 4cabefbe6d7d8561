"""Checks a model directory before any of it is parsed by transformers: suspects are untrusted.

Refused, each with a clear `UnsafeModelFormatError` or `ModelLoadError`:
- pickle-based weights (`*.bin`, `*.pt`, `*.pth`, `*.ckpt`, `*.pkl`) without safetensors, and
  files named `.safetensors` that are not (a pickle's zip or protocol header);
- `auto_map` or any remote-code hook in `config.json` / `tokenizer_config.json`;
- symlinks that point outside the model directory;
- oversized files and config values (a safetensors header claiming terabytes, 10^9 vocab).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from lineage.errors import ModelLoadError, UnsafeModelFormatError

__all__ = ["check_model_dir", "Limits"]

PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle"}


class Limits:
    """Upper bounds on what a model directory may declare."""

    max_config_bytes = 1 << 20
    max_tokenizer_bytes = 64 << 20
    max_weights_bytes = 64 << 30
    max_header_bytes = 64 << 20
    max_vocab = 1_000_000
    max_layers = 512
    max_hidden = 65_536
    max_positions = 1 << 20
    max_heads = 1024


_CONFIG_BOUNDS = {
    "vocab_size": Limits.max_vocab,
    "num_hidden_layers": Limits.max_layers,
    "n_layer": Limits.max_layers,
    "hidden_size": Limits.max_hidden,
    "n_embd": Limits.max_hidden,
    "intermediate_size": 4 * Limits.max_hidden,
    "num_attention_heads": Limits.max_heads,
    "num_key_value_heads": Limits.max_heads,
    "max_position_embeddings": Limits.max_positions,
}


def _read_json(path: Path, limit: int) -> dict[str, Any]:
    size = path.stat().st_size
    if size > limit:
        raise UnsafeModelFormatError(f"{path.name} is {size} bytes; the limit is {limit}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ModelLoadError(f"{path.name} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path.name} must hold a JSON object")
    return data


def _check_safetensors(path: Path) -> None:
    size = path.stat().st_size
    if size > Limits.max_weights_bytes:
        raise UnsafeModelFormatError(f"{path.name}: {size} bytes exceeds the weight size limit")
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise UnsafeModelFormatError(f"{path.name} is too short to be safetensors")
        if head[:2] == b"PK" or head[:1] == b"\x80":
            raise UnsafeModelFormatError(
                f"{path.name} is a pickle/zip checkpoint posing as safetensors; refusing"
            )
        (n,) = struct.unpack("<Q", head)
        if n > Limits.max_header_bytes or n + 8 > size:
            raise UnsafeModelFormatError(
                f"{path.name}: safetensors header claims {n} bytes (file has {size}); refusing"
            )
        try:
            header = json.loads(f.read(n))
        except ValueError:
            raise UnsafeModelFormatError(f"{path.name}: safetensors header is not JSON") from None
    if not isinstance(header, dict):
        raise UnsafeModelFormatError(f"{path.name}: safetensors header is not an object")
    end = 0
    for k, v in header.items():
        if k == "__metadata__":
            continue
        try:
            lo, hi = v["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise UnsafeModelFormatError(f"{path.name}: tensor {k!r} has no offsets") from None
        end = max(end, int(hi))
        if not 0 <= int(lo) <= int(hi):
            raise UnsafeModelFormatError(f"{path.name}: tensor {k!r} has bad offsets")
    if end + n + 8 > size:
        raise UnsafeModelFormatError(
            f"{path.name}: tensors claim {end} bytes but the file holds {size - n - 8}"
        )


def _reject_remote_code(name: str, cfg: dict[str, Any]) -> None:
    for key in ("auto_map", "trust_remote_code", "custom_pipelines"):
        if key in cfg:
            raise UnsafeModelFormatError(
                f"{name} declares {key!r} (remote code); lineage never runs model-supplied code"
            )


def check_model_dir(path: str | Path) -> dict[str, Any]:
    """Validate `path` as a safe Hugging Face model dir; returns the parsed config.json."""
    root = Path(path)
    if not root.is_dir():
        raise ModelLoadError(f"model directory not found: {root}")
    root = root.resolve()
    files = list(root.iterdir())
    for f in files:
        if f.is_symlink():
            target = f.resolve()
            if root not in target.parents:
                raise UnsafeModelFormatError(f"{f.name} is a symlink leaving the model directory")
    names = {f.name for f in files}
    if "config.json" not in names:
        raise ModelLoadError(f"{root}: no config.json")
    cfg = _read_json(root / "config.json", Limits.max_config_bytes)
    _reject_remote_code("config.json", cfg)
    for key, bound in _CONFIG_BOUNDS.items():
        v = cfg.get(key)
        if v is not None and (not isinstance(v, int) or not 0 < v <= bound):
            raise UnsafeModelFormatError(f"config.json: {key}={v!r} is outside 1..{bound}")
    if "tokenizer_config.json" in names:
        _reject_remote_code(
            "tokenizer_config.json",
            _read_json(root / "tokenizer_config.json", Limits.max_config_bytes),
        )
    st = sorted(f for f in files if f.suffix == ".safetensors")
    if not st:
        pickles = sorted(f.name for f in files if f.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise UnsafeModelFormatError(
                f"{root}: only pickle weights ({', '.join(pickles)}); lineage loads safetensors "
                "only. Convert them on a trusted machine."
            )
        raise ModelLoadError(f"{root}: no *.safetensors weights")
    for f in st:
        _check_safetensors(f)
    tok = root / "tokenizer.json"
    if not tok.exists():
        raise ModelLoadError(f"{root}: no tokenizer.json")
    if tok.stat().st_size > Limits.max_tokenizer_bytes:
        raise UnsafeModelFormatError(
            f"tokenizer.json is {tok.stat().st_size} bytes; limit {Limits.max_tokenizer_bytes}"
        )
    return cfg
