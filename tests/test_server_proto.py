"""The proto's house rules (buf STANDARD, checked here), codegen drift, the error table, convert."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2

from lineage import errors as E
from lineage.types import Candidate, Evidence, ModelRecord, ScanResult, SearchHit
from server import codegen, convert
from server.errors import STATUS, to_rpc_status

PASCAL = re.compile(r"^[A-Z][A-Za-z0-9]*$")
LOWER_SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
UPPER_SNAKE = re.compile(r"^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$")


@pytest.fixture(scope="module")
def fds() -> descriptor_pb2.FileDescriptorProto:
    """The proto parsed by protoc, with comments (source info)."""
    from grpc_tools import protoc

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.pb"
        inc = codegen.include_paths(Path(tmp) / "shim")
        assert protoc.main(["protoc", *(f"-I{p}" for p in inc), "--include_source_info",
                            f"--descriptor_set_out={out}", codegen.PROTO]) == 0
        s = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    return s.file[0]


def _comments(f: descriptor_pb2.FileDescriptorProto) -> dict[tuple[int, ...], str]:
    return {tuple(loc.path): loc.leading_comments for loc in f.source_code_info.location}


def _snake_upper(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper()


def test_generated_code_has_not_drifted(tmp_path):
    codegen.generate(tmp_path)
    for name in codegen.GENERATED:
        new = (tmp_path / "lineage" / "v1" / name).read_text()
        old = (codegen.OUT_DIR / "lineage" / "v1" / name).read_text()
        assert new == old, f"{name} is stale: run `python -m server.codegen`"


def test_package_versioned_and_matches_path(fds):
    assert re.fullmatch(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*\.v\d+", fds.package)
    assert Path(fds.name).parent.as_posix() == fds.package.replace(".", "/")
    assert LOWER_SNAKE.match(Path(fds.name).stem) and fds.syntax == "proto3"


def test_enums(fds):
    c = _comments(fds)
    for i, en in enumerate(fds.enum_type):
        assert PASCAL.match(en.name) and c.get((5, i), "").strip(), en.name
        prefix = _snake_upper(en.name) + "_"
        assert en.value[0].number == 0 and en.value[0].name == prefix + "UNSPECIFIED"
        for j, v in enumerate(en.value):
            assert UPPER_SNAKE.match(v.name) and v.name.startswith(prefix), v.name
            assert c.get((5, i, 2, j), "").strip(), f"no comment on {v.name}"


def test_messages_and_fields(fds):
    c = _comments(fds)
    for i, m in enumerate(fds.message_type):
        assert PASCAL.match(m.name) and c.get((4, i), "").strip(), m.name
        for j, f in enumerate(m.field):
            assert LOWER_SNAKE.match(f.name), f"{m.name}.{f.name}"
            assert c.get((4, i, 2, j), "").strip(), f"no comment on {m.name}.{f.name}"
        for k, o in enumerate(m.oneof_decl):
            if not o.name.startswith("_"):  # proto3 `optional` makes synthetic oneofs
                assert LOWER_SNAKE.match(o.name) and c.get((4, i, 8, k), "").strip()
        for n in m.nested_type:
            assert n.options.map_entry, f"nested message {m.name}.{n.name}: keep messages flat"


def test_service_and_rpcs(fds):
    c = _comments(fds)
    seen: set[str] = set()
    assert len(fds.service) == 1
    svc = fds.service[0]
    assert svc.name.endswith("Service") and PASCAL.match(svc.name) and c.get((6, 0))
    for j, m in enumerate(svc.method):
        doc = c.get((6, 0, 2, j), "")
        assert PASCAL.match(m.name) and doc.strip(), m.name
        ignored = set(re.findall(r"buf:lint:ignore (\w+)", doc))
        assert m.input_type == f".{fds.package}.{m.name}Request"
        if "RPC_RESPONSE_STANDARD_NAME" not in ignored:
            assert m.output_type == f".{fds.package}.{m.name}Response", m.name
        if "RPC_REQUEST_RESPONSE_UNIQUE" not in ignored:
            assert not {m.input_type, m.output_type} & seen, m.name
            seen |= {m.input_type, m.output_type}
    # the only exception: AIP-151 long-running operations
    lro = [m.name for m in svc.method if m.output_type == ".google.longrunning.Operation"]
    assert lro == ["CreateBatchScan"]


def test_creates_are_idempotent_and_lists_paginated(fds):
    msgs = {m.name: {f.name for f in m.field} for m in fds.message_type}
    for m in fds.service[0].method:
        req = msgs[m.input_type.rsplit(".", 1)[1]]
        if m.name.startswith("Create"):
            assert "request_id" in req, m.name
        if m.name.startswith("List"):
            assert {"page_size", "page_token"} <= req, m.name
            assert "next_page_token" in msgs[m.output_type.rsplit(".", 1)[1]]


def test_every_lineage_error_has_one_row_and_never_internal():
    classes = {getattr(E, n) for n in E.__all__}
    assert classes == set(STATUS)
    assert grpc.StatusCode.INTERNAL not in STATUS.values()
    st = to_rpc_status(E.InvalidArgumentError("bad", field="name"), {"name": "model_id"})
    assert st.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and len(st.details) == 2
    assert STATUS[E.UnknownModelError] == grpc.StatusCode.NOT_FOUND


def test_convert_round_trips_exactly():
    rec = ModelRecord(7, "t1", "teacher", "/m/t1", {"kind": "local", "sha256": "ab"},
                      "default", "h", "2026-01-02T03:04:05+00:00")
    assert convert.model_from_pb(convert.model_to_pb(rec)) == rec
    assert convert.model_to_pb(rec).name == "models/t1"
    cand = Candidate("t1", 0.25, 1e-5, "derived", 2e-6, 4.5, 0.01, 0.1, 0.9, 6,
                     (Evidence("p3", "Hello", 0.5),))
    res = ScanResult("abc", "/s", "logprobs", 10, 100, 0.01, "default", "h",
                     (cand, Candidate("t2", -0.1, 1.0, "inconclusive")),
                     "2026-01-02T03:04:05+00:00", {"kind": "local"}, "rid", True, "9.9.9")
    back = convert.scan_from_pb(convert.scan_to_pb(res))
    assert back == res and back.to_json() == res.to_json()
    assert convert.hit_from_pb(convert.hit_to_pb(SearchHit("t1", 0.5))) == SearchHit("t1", 0.5)
    with pytest.raises(E.InvalidArgumentError) as e:
        convert.parse_name("scans/a/b", "scans")
    assert e.value.field == "name"
