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
