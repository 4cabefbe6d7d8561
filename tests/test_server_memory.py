"""server.memory: the glibc arena cap and trim the server applies (see its docstring)."""

from __future__ import annotations

import platform

import pytest

from server import memory


def test_zero_leaves_the_arena_count_alone():
    assert memory.limit_arenas(0) is False


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_arena_cap_and_trim_apply_under_glibc():
    assert memory.limit_arenas(4) is True
    blocks = [bytearray(256 * 1024) for _ in range(64)]  # 16 MB, then freed
    del blocks
    assert isinstance(memory.trim(), bool)
