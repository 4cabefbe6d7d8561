"""Checks a model directory before any of it is parsed by transformers: suspects are untrusted.

Refused, each with a clear `UnsafeModelFormatError` or `ModelLoadError`:
- pickle-based weights (`*.bin`, `*.pt`, `*.pth`, `*.ckpt`, `*.pkl`) without safetensors, and
  files named `.safetensors` that are not (a pickle's zip or protocol header);
- `auto_map` or any remote-code hook in `config.json` / `tokenizer_config.json`;
- symlinks that point outside the model directory, and anything that is not a regular file
  (a FIFO named `tokenizer.json` would block the loader forever);
- oversized files and config values: a safetensors header claiming terabytes or tensors past
  the end of the file, tensor sizes that do not match their shapes, a 1 GB tokenizer file,
  `vocab_size` 10^9 or `num_hidden_layers` 10^6 (also inside nested sub-configs), and a config
  that implies far more parameters than the weights hold (transformers would allocate the
  missing ones);
- a sharded-weights index that points outside the directory or at non-safetensors files.

Everything is decided from `stat` and from reading at most `Limits.max_header_bytes` of each
weights file and `Limits.max_tokenizer_bytes` of a text file, before any model is built:
refusals take milliseconds and a few MB (`tests/test_safety.py` measures both).
"""

from __future__ import annotations

import json
import math
import os
import stat
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
    max_header_bytes = 8 << 20  # real headers are < 1 MB; json parsing 64 MB takes seconds
    max_tensors = 200_000
    max_index_bytes = 16 << 20
    #: the config may imply at most this many times the weights' elements (plus slack)
    param_slack = 2.0
    max_vocab = 1_000_000
    max_layers = 512
    max_hidden = 65_536
    max_positions = 1 << 20
    max_heads = 1024


_CONFIG_BOUNDS = {
    "vocab_size": Limits.max_vocab,
    "num_hidden_layers": Limits.max_layers,
    "n_layer": Limits.max_layers,
    "num_layers": Limits.max_layers,
    "hidden_size": Limits.max_hidden,
    "n_embd": Limits.max_hidden,
    "d_model": Limits.max_hidden,
    "intermediate_size": 4 * Limits.max_hidden,
    "n_inner": 4 * Limits.max_hidden,
    "num_attention_heads": Limits.max_heads,
    "n_head": Limits.max_heads,
    "num_key_value_heads": Limits.max_heads,
    "max_position_embeddings": Limits.max_positions,
    "n_positions": Limits.max_positions,
    "num_experts": Limits.max_heads,
    "num_local_experts": Limits.max_heads,
}
#: files transformers may read besides config.json and weights, with the size limit that applies
_TEXT_FILES = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
               "added_tokens.json", "vocab.json", "merges.txt", "vocab.txt", "tokenizer.model",
               "spiece.model", "sentencepiece.bpe.model", "generation_config.json",
               "chat_template.jinja", "chat_template.json", "preprocessor_config.json"}
_INDEX = "model.safetensors.index.json"
_DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1,
                "I16": 2, "U16": 2, "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4,
                "I64": 8, "U64": 8, "F64": 8, "C64": 8}


def _read_json(path: Path, limit: int) -> dict[str, Any]:
    size = path.stat().st_size
    if size > limit:
        raise UnsafeModelFormatError(f"{path.name} is {size} bytes; the limit is {limit}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ModelLoadError(f"{path.name} is not valid JSON: {str(e)[:200]}") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path.name} must hold a JSON object")
    return data


def _check_safetensors(path: Path) -> int:
    """Validate one safetensors file from its header alone; returns its number of elements."""
    size = path.stat().st_size
    if size > Limits.max_weights_bytes:
        raise UnsafeModelFormatError(f"{path.name}: {size} bytes exceeds the weight size limit")
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise UnsafeModelFormatError(f"{path.name} is too short to be safetensors")
        (n,) = struct.unpack("<Q", head)
        # a zip starts "PK\x03\x04" and a pickle 0x80 <protocol>; but a real header's length
        # can begin with those bytes too (0x80 = 128 is a valid length), so only a file whose
        # header does not open with '{' right after the length is called a pickle or zip
        if head[:4] == b"PK\x03\x04" or (head[:1] == b"\x80" and 2 <= head[1] <= 5):
            if f.read(1) != b"{":
                raise UnsafeModelFormatError(
                    f"{path.name} is a pickle/zip checkpoint posing as safetensors; refusing"
                )
            f.seek(8)
        if n > Limits.max_header_bytes or n + 8 > size:
            raise UnsafeModelFormatError(
                f"{path.name}: safetensors header claims {n} bytes (file has {size}, limit "
                f"{Limits.max_header_bytes}); refusing"
            )
        try:
            header = json.loads(f.read(n))
        except (ValueError, RecursionError):
            raise UnsafeModelFormatError(f"{path.name}: safetensors header is not JSON") from None
    if not isinstance(header, dict):
        raise UnsafeModelFormatError(f"{path.name}: safetensors header is not an object")
    if len(header) > Limits.max_tensors:
        raise UnsafeModelFormatError(f"{path.name}: {len(header)} tensors; the limit is "
                                     f"{Limits.max_tensors}")
    end, elems = 0, 0
    for k, v in header.items():
        if k == "__metadata__":
            continue
        try:
            lo, hi = (int(x) for x in v["data_offsets"])
            dtype, shape = v["dtype"], [int(d) for d in v["shape"]]
        except (KeyError, TypeError, ValueError):
            raise UnsafeModelFormatError(
                f"{path.name}: tensor {k!r} lacks dtype/shape/data_offsets") from None
        if not 0 <= lo <= hi or any(d < 0 for d in shape):
            raise UnsafeModelFormatError(f"{path.name}: tensor {k!r} has bad offsets or shape")
        if dtype not in _DTYPE_BYTES:
            raise UnsafeModelFormatError(f"{path.name}: tensor {k!r} has unknown dtype "
                                         f"{str(dtype)[:20]!r}")
        count = math.prod(shape)
        if count * _DTYPE_BYTES[dtype] != hi - lo:
            raise UnsafeModelFormatError(
                f"{path.name}: tensor {k!r} claims {count} x {dtype} in {hi - lo} bytes")
        end, elems = max(end, hi), elems + count
    if end + n + 8 > size:
        raise UnsafeModelFormatError(
            f"{path.name}: tensors claim {end} bytes but the file holds {size - n - 8}"
        )
    return elems


def _implied_params(cfg: dict[str, Any]) -> int:
    """A lower bound on the parameters a decoder config implies: the embedding plus one
    hidden x hidden matrix per layer (every attention block has at least its output one)."""
    def first(*keys: str) -> int:
        for k in keys:
            v = cfg.get(k)
            if isinstance(v, int) and not isinstance(v, bool) and v > 0:
                return v
        return 0
    V = first("vocab_size")
    H = first("hidden_size", "n_embd", "d_model")
    L = first("num_hidden_layers", "n_layer", "num_layers")
    return V * H + L * H * H


def _check_bounds(cfg: dict[str, Any], where: str, depth: int = 0) -> None:
    for key, bound in _CONFIG_BOUNDS.items():
        v = cfg.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool)
                              or not 0 < v <= bound):
            raise UnsafeModelFormatError(f"{where}: {key}={str(v)[:40]!r} is outside 1..{bound}")
    for k, v in cfg.items():  # multimodal configs nest: text_config, vision_config, ...
        if isinstance(v, dict) and depth < 3:
            _check_bounds(v, f"{where}: {k}", depth + 1)


def _check_index(root: Path, names: set[str]) -> None:
    idx = _read_json(root / _INDEX, Limits.max_index_bytes)
    wm = idx.get("weight_map")
    if not isinstance(wm, dict):
        raise UnsafeModelFormatError(f"{_INDEX}: no weight_map object")
    for shard in set(map(str, wm.values())):
        if "/" in shard or "\\" in shard or shard.startswith(".") or \
                not shard.endswith(".safetensors") or shard not in names:
            raise UnsafeModelFormatError(
                f"{_INDEX}: shard {shard[:80]!r} is not a safetensors file in the directory")


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
            try:
                target = f.resolve(strict=True)
            except (OSError, RuntimeError):  # dangling, or a loop
                raise UnsafeModelFormatError(f"{f.name} is a broken or looping symlink") \
                    from None
            if root not in target.parents:
                raise UnsafeModelFormatError(f"{f.name} is a symlink leaving the model directory")
        try:
            mode = os.stat(f).st_mode
        except OSError as e:
            raise ModelLoadError(f"{f.name}: {e.strerror}") from None
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise UnsafeModelFormatError(
                f"{f.name} is not a regular file (a FIFO, socket or device); refusing")
    names = {f.name for f in files}
    if "config.json" not in names:
        raise ModelLoadError(f"{root}: no config.json")
    cfg = _read_json(root / "config.json", Limits.max_config_bytes)
    _reject_remote_code("config.json", cfg)
    _check_bounds(cfg, "config.json")
    for name in sorted(names & _TEXT_FILES):
        size = (root / name).stat().st_size
        if size > Limits.max_tokenizer_bytes:
            raise UnsafeModelFormatError(
                f"{name} is {size} bytes; the limit is {Limits.max_tokenizer_bytes}")
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
    if _INDEX in names:
        _check_index(root, names)
    elems = sum(_check_safetensors(f) for f in st)
    implied = _implied_params(cfg)
    if implied > Limits.param_slack * elems + 1_000_000:
        raise UnsafeModelFormatError(
            f"config.json implies at least {implied} parameters but the weights hold {elems}; "
            "refusing to build a model that size")
    if "tokenizer.json" not in names:
        raise ModelLoadError(f"{root}: no tokenizer.json")
    return cfg
