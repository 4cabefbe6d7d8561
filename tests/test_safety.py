"""Untrusted model directories are refused before transformers parses them."""

import json
import os
import struct

import pytest

from lineage.backends.safety import check_model_dir
from lineage.errors import ModelLoadError, UnsafeModelFormatError


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    from tinymodels import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("good") / "m")


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_good_model_passes(good):
    assert check_model_dir(good)["model_type"] == "llama"


def test_pickle_only_refused(good, tmp_path):
    d = _copy(good, tmp_path / "m")
    (d / "model.safetensors").unlink()
    (d / "pytorch_model.bin").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(UnsafeModelFormatError, match="pickle"):
        check_model_dir(d)


def test_pickle_posing_as_safetensors_refused(good, tmp_path):
    d = _copy(good, tmp_path / "m")
    (d / "model.safetensors").write_bytes(b"PK\x03\x04" + b"\0" * 64)
    with pytest.raises(UnsafeModelFormatError, match="posing"):
        check_model_dir(d)


def test_remote_code_refused(good, tmp_path):
    d = _copy(good, tmp_path / "m")
    cfg = json.loads((d / "config.json").read_text())
    cfg["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.Evil"}
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UnsafeModelFormatError, match="remote code"):
        check_model_dir(d)


def test_huge_header_refused(good, tmp_path):
    d = _copy(good, tmp_path / "m")
    (d / "model.safetensors").write_bytes(struct.pack("<Q", 1 << 42) + b"{}")
    with pytest.raises(UnsafeModelFormatError, match="header claims"):
        check_model_dir(d)


def test_absurd_config_refused(good, tmp_path):
    d = _copy(good, tmp_path / "m")
    cfg = json.loads((d / "config.json").read_text())
    cfg["vocab_size"] = 10**9
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UnsafeModelFormatError, match="vocab_size"):
        check_model_dir(d)


def test_symlink_escape_refused(good, tmp_path):
    d = _copy(good, tmp_path / "m")
    (tmp_path / "outside.json").write_text("{}")
    os.symlink(tmp_path / "outside.json", d / "extra.json")
    with pytest.raises(UnsafeModelFormatError, match="symlink"):
        check_model_dir(d)


def test_missing_pieces_are_load_errors(good, tmp_path):
    with pytest.raises(ModelLoadError):
        check_model_dir(tmp_path / "nope")
    d = _copy(good, tmp_path / "m")
    (d / "tokenizer.json").unlink()
    with pytest.raises(ModelLoadError, match="tokenizer.json"):
        check_model_dir(d)


# -- issue 7: every hostile directory refused, fast and in bounded memory -----------------------

def _cfg(d, **kw):
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(kw)
    (d / "config.json").write_text(json.dumps(cfg))


def _st_header(d, header, pad=0):
    raw = json.dumps(header).encode()
    (d / "model.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * pad)


def _fifo(d):
    (d / "tokenizer.json").unlink()
    os.mkfifo(d / "tokenizer.json")


def _sparse_tokenizer(d):
    with open(d / "tokenizer.json", "r+b") as f:
        f.truncate(1 << 30)  # 1 GB, sparse: no disk written


def _loop(d):
    os.symlink(d / "b.json", d / "a.json")
    os.symlink(d / "a.json", d / "b.json")


def _escape_tok(d):
    (d.parent / "outside_tok.json").write_text((d / "tokenizer.json").read_text())
    (d / "tokenizer.json").unlink()
    os.symlink(d.parent / "outside_tok.json", d / "tokenizer.json")


HOSTILE = [  # (id, mutate(dir), exception, message)
    ("pickle_only", lambda d: ((d / "model.safetensors").unlink(),
                               (d / "pytorch_model.bin").write_bytes(b"\x80\x04K\x01."))[-1],
     UnsafeModelFormatError, "only pickle weights"),
    ("pickle_proto_as_safetensors", lambda d: (d / "model.safetensors").write_bytes(
        b"\x80\x04\x95" + b"\0" * 64), UnsafeModelFormatError, "posing as safetensors"),
    ("torch_zip_as_safetensors", lambda d: (d / "model.safetensors").write_bytes(
        b"PK\x03\x04" + b"\0" * 64), UnsafeModelFormatError, "posing as safetensors"),
    ("header_claims_terabytes", lambda d: (d / "model.safetensors").write_bytes(
        struct.pack("<Q", 1 << 42) + b"{}"), UnsafeModelFormatError, "header claims"),
    ("header_over_limit", lambda d: (d / "model.safetensors").write_bytes(
        struct.pack("<Q", 9 << 20) + b" " * (9 << 20)), UnsafeModelFormatError, "header claims"),
    ("offsets_past_eof", lambda d: _st_header(d, {"w": {
        "dtype": "F32", "shape": [1 << 38], "data_offsets": [0, 1 << 40]}}),
     UnsafeModelFormatError, "tensors claim"),
    ("shape_mismatch", lambda d: _st_header(d, {"w": {
        "dtype": "F32", "shape": [1000, 1000], "data_offsets": [0, 16]}}, pad=16),
     UnsafeModelFormatError, "claims 1000000 x F32 in 16 bytes"),
    ("unknown_dtype", lambda d: _st_header(d, {"w": {
        "dtype": "Q99", "shape": [4], "data_offsets": [0, 16]}}, pad=16),
     UnsafeModelFormatError, "unknown dtype"),
    ("vocab_1e9", lambda d: _cfg(d, vocab_size=10**9), UnsafeModelFormatError, "vocab_size"),
    ("layers_1e6", lambda d: _cfg(d, num_hidden_layers=10**6), UnsafeModelFormatError,
     "num_hidden_layers"),
    ("nested_text_config", lambda d: _cfg(d, text_config={"hidden_size": 10**7}),
     UnsafeModelFormatError, "text_config: hidden_size"),
    ("bool_as_int", lambda d: _cfg(d, num_hidden_layers=True), UnsafeModelFormatError,
     "num_hidden_layers"),
    ("config_implies_more_than_weights", lambda d: _cfg(d, hidden_size=8192,
                                                        num_hidden_layers=64),
     UnsafeModelFormatError, "implies at least"),
    ("auto_map", lambda d: _cfg(d, auto_map={"AutoModelForCausalLM": "evil.Evil"}),
     UnsafeModelFormatError, "remote code"),
    ("tokenizer_auto_map", lambda d: (d / "tokenizer_config.json").write_text(json.dumps(
        {"auto_map": {"AutoTokenizer": ["evil.Tok", None]}})), UnsafeModelFormatError,
     "remote code"),
    ("symlink_escape", lambda d: os.symlink("/etc/hostname", d / "extra.json"),
     UnsafeModelFormatError, "leaving the model directory"),
    ("symlinked_tokenizer_escape", _escape_tok, UnsafeModelFormatError, "leaving"),
    ("symlink_loop", _loop, UnsafeModelFormatError, "looping"),
    ("fifo_tokenizer", _fifo, UnsafeModelFormatError, "not a regular file"),
    ("tokenizer_1GB_sparse", _sparse_tokenizer, UnsafeModelFormatError,
     "tokenizer.json is 1073741824 bytes"),
    ("vocab_file_1GB_sparse", lambda d: os.truncate(
        (d / "vocab.json").write_text("{}") and d / "vocab.json", 1 << 30),
     UnsafeModelFormatError, "vocab.json is 1073741824 bytes"),
    ("index_points_outside", lambda d: (d / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"w": "../../other/model.safetensors"}})),
     UnsafeModelFormatError, "not a safetensors file in the directory"),
    ("index_points_at_pickle", lambda d: (d / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"w": "pytorch_model.bin"}})),
     UnsafeModelFormatError, "not a safetensors file"),
    ("config_deeply_nested", lambda d: (d / "config.json").write_text("[" * 100_000),
     ModelLoadError, "not valid JSON"),
]
BOUND_S = 1.0  # each refusal, in process
BOUND_RSS_MB = 150  # peak RSS of a process that refuses all of them (no torch imported)


def _hostile(good, root, case):
    d = _copy(good, root / case[0] / "m")
    case[1](d)
    return d


@pytest.mark.parametrize("case", HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_dir_refused_quickly(good, tmp_path, case):
    import time

    d = _hostile(good, tmp_path, case)
    t0 = time.monotonic()
    with pytest.raises(case[2], match=case[3]):
        check_model_dir(d)
    assert time.monotonic() - t0 < BOUND_S


# Peak RSS from /proc (VmHWM): ru_maxrss survives exec, so a child of a big pytest process
# would report the parent's peak.
_PEAK = """
def peak_mb():
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
"""
_MEASURE = """
import json, resource, sys, time""" + _PEAK + """
from lineage.backends.safety import check_model_dir
from lineage.errors import LineageError
out = {}
for d in sys.argv[1:]:
    t0 = time.monotonic()
    try:
        check_model_dir(d)
        out[d] = ("accepted", time.monotonic() - t0)
    except LineageError as e:
        out[d] = (type(e).__name__, time.monotonic() - t0)
out["__peak_rss_mb__"] = peak_mb()
print(json.dumps(out))
"""


def test_refusals_bounded_in_time_and_memory(good, tmp_path):
    """All hostile dirs in one fresh process: each refused within BOUND_S, peak RSS bounded."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    dirs = [str(_hostile(good, tmp_path, c)) for c in HOSTILE]
    p = subprocess.run([sys.executable, "-c", _MEASURE, *dirs], cwd=root, capture_output=True,
                       text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(root)})
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout)
    peak = out.pop("__peak_rss_mb__")
    for c, d in zip(HOSTILE, dirs):
        kind, took = out[d]
        assert kind == c[2].__name__, (c[0], kind)
        assert took < BOUND_S, (c[0], took)
    slowest = max(t for _, t in out.values())
    print(f"\npeak RSS {peak:.0f} MB; slowest refusal {slowest * 1000:.1f} ms")
    assert peak < BOUND_RSS_MB


_BACKEND = """
import json, resource, sys""" + _PEAK + """
import torch
torch.set_num_threads(1)
import transformers
def boom(*a, **k):
    print("from_pretrained was called", file=sys.stderr); sys.exit(99)
transformers.AutoModelForCausalLM.from_pretrained = boom
transformers.AutoTokenizer.from_pretrained = boom
from lineage.backends.local_hf import LocalHFBackend
from lineage.errors import UnsafeModelFormatError
before = peak_mb()
for d in sys.argv[1:]:
    try:
        LocalHFBackend(d, device="cpu")
        raise SystemExit(f"accepted {d}")
    except UnsafeModelFormatError:
        pass
print(json.dumps({"growth_mb": peak_mb() - before, "peak_mb": peak_mb()}))
"""


def test_local_backend_refuses_before_transformers_sees_it(good, tmp_path):
    """The loader itself: transformers is never called, memory does not grow."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    pick = {"vocab_1e9", "layers_1e6", "config_implies_more_than_weights", "auto_map",
            "header_claims_terabytes", "tokenizer_1GB_sparse", "torch_zip_as_safetensors"}
    dirs = [str(_hostile(good, tmp_path, c)) for c in HOSTILE if c[0] in pick]
    p = subprocess.run([sys.executable, "-c", _BACKEND, *dirs], cwd=root, capture_output=True,
                       text=True, timeout=180,
                       env={**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads(p.stdout.strip().splitlines()[-1])
    print(f"\nLocalHFBackend refusals: peak RSS {res['peak_mb']:.0f} MB (torch loaded), "
          f"growth {res['growth_mb']:.1f} MB")
    assert res["growth_mb"] < 20


@pytest.mark.parametrize("header_len", [128, 640])
def test_safetensors_whose_length_looks_like_a_pickle_is_accepted(tmp_path, header_len):
    """A real header length can start with 0x80 (128) or 0x80 0x02 (640): not a pickle."""
    import json
    import struct

    from lineage.backends.safety import _check_safetensors

    body = json.dumps({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}})
    head = body.encode().ljust(header_len, b" ")
    f = tmp_path / "model.safetensors"
    f.write_bytes(struct.pack("<Q", header_len) + head + b"\0" * 16)
    assert f.read_bytes()[:1] == b"\x80"
    assert _check_safetensors(f) == 4
    # the same opening bytes followed by something other than a JSON header are refused
    f.write_bytes(struct.pack("<Q", header_len) + b"\x95" + b"\0" * (header_len + 15))
    with pytest.raises(UnsafeModelFormatError,
                       match="posing" if header_len == 640 else "not JSON"):
        _check_safetensors(f)
