"""Shared fixtures. The small zoo is built once per test run and cached on disk by code hash."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session", autouse=True)
def _threads() -> None:
    # One torch job at a time on 2 cores; pytest runs serially, so use both.
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def small_zoo() -> Path:
    """The small zoo (manifest.json + model dirs), built once and reused across runs."""
    from lineage.demo import ensure_zoo, zoo_cache_dir

    out = zoo_cache_dir(Path(os.environ.get("LINEAGE_TEST_CACHE", ROOT / ".cache")))
    ensure_zoo(out, log=lambda m: print(f"[zoo] {m}", file=sys.stderr))
    return out


@pytest.fixture(scope="session")
def zoo_manifest(small_zoo: Path) -> dict:
    import json

    return json.loads((small_zoo / "manifest.json").read_text())


@pytest.fixture(scope="session")
def registered_home(small_zoo: Path, zoo_manifest: dict, tmp_path_factory) -> Path:
    """A home with the small zoo's teachers and references registered (read-only for tests)."""
    from lineage.engine import Lineage

    home = tmp_path_factory.mktemp("home")
    eng = Lineage(home)
    for m in zoo_manifest["models"]:
        if m["role"] in ("teacher", "reference"):
            eng.register(m["name"], str(small_zoo / m["path"]), m["role"])
    eng.close()
    return home


@pytest.fixture()
def home_copy(registered_home: Path, tmp_path: Path) -> Path:
    """A private copy of the registered home that a test may change."""
    dst = tmp_path / "home"
    shutil.copytree(registered_home, dst)
    return dst
