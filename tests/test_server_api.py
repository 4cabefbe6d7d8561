"""The gRPC service against a real server on 127.0.0.1:0, with a fake engine (unit level)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from fake_engine import FakeEngine
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status
from serverutil import BackgroundServer

from lineage import errors as E
from lineage._proto.lineage.v1 import lineage_pb2 as pb
from lineage._proto.lineage.v1 import lineage_pb2_grpc as pb_grpc
from lineage.client import LineageClient, RemoteError

TOKEN = "s3cret-token"


@pytest.fixture()
def token_file(tmp_path: Path) -> Path:
    p = tmp_path / "tokens"
    p.write_text(f"# comment\n\nother-token admin\n{TOKEN}\n")
    return p


@pytest.fixture()
def srv(token_file: Path):
    eng = FakeEngine()
    with BackgroundServer(eng, token_file=str(token_file)) as s:
        s.engine = eng
        yield s


def stub(srv, token: str | None = TOKEN):
    ch = grpc.insecure_channel(srv.address)
    md = (("authorization", f"Bearer {token}"),) if token else ()
    return pb_grpc.LineageServiceStub(ch), md


def details(err: grpc.RpcError) -> dict:
    out = {}
    for d in rpc_status.from_call(err).details:
        for cls in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest):
            if d.Is(cls.DESCRIPTOR):
                m = cls()
                d.Unpack(m)
                out[cls.__name__] = m
    return out


@pytest.mark.parametrize("token", [None, "wrong", TOKEN + "x", ""])
def test_missing_or_wrong_token_is_unauthenticated(srv, token):
    s, md = stub(srv, token)
    with pytest.raises(grpc.RpcError) as e:
        s.ListModels(pb.ListModelsRequest(), metadata=md, timeout=10)
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_plain_and_role_lines_both_authenticate(srv):
    for tok in (TOKEN, "other-token"):
        s, md = stub(srv, tok)
        assert s.ListModels(pb.ListModelsRequest(), metadata=md, timeout=10).models == []


def test_health_needs_no_token_and_serves(srv):
    h = health_pb2_grpc.HealthStub(grpc.insecure_channel(srv.address))
    for service in ("", "lineage.v1.LineageService"):
        r = h.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert r.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_services(srv):
    st = reflection_pb2_grpc.ServerReflectionStub(grpc.insecure_channel(srv.address))
    md = (("authorization", f"Bearer {TOKEN}"),)
    resp = next(iter(st.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), metadata=md,
        timeout=10)))
    names = {s.name for s in resp.list_services_response.service}
    assert {"lineage.v1.LineageService", "google.longrunning.Operations",
            "grpc.health.v1.Health"} <= names


def test_reflection_without_token_is_refused(srv):
    st = reflection_pb2_grpc.ServerReflectionStub(grpc.insecure_channel(srv.address))
    with pytest.raises(grpc.RpcError) as e:
        list(st.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10))
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_unknown_model_is_not_found_with_error_info(srv):
    s, md = stub(srv)
    with pytest.raises(grpc.RpcError) as e:
        s.GetModel(pb.GetModelRequest(name="models/nope"), metadata=md, timeout=10)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    info = details(e.value)["ErrorInfo"]
    assert (info.reason, info.domain) == ("UNKNOWN_MODEL", "lineage")


def test_bad_argument_names_the_request_field(srv):
    s, md = stub(srv)
    s.CreateModel(pb.CreateModelRequest(model_id="t1", model=pb.Model(
        uri="/m/t1", role=pb.MODEL_ROLE_TEACHER)), metadata=md, timeout=10)
    with pytest.raises(grpc.RpcError) as e:
        s.CreateScan(pb.CreateScanRequest(suspect="/m/s", alpha=2.0), metadata=md, timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    d = details(e.value)
    assert [v.field for v in d["BadRequest"].field_violations] == ["alpha"]
    assert d["ErrorInfo"].reason == "INVALID_ARGUMENT"
    with pytest.raises(grpc.RpcError) as e:  # engine field "name" -> request field model_id
        s.CreateModel(pb.CreateModelRequest(model_id="bad name!", model=pb.Model(
            uri="/m/x", role=pb.MODEL_ROLE_TEACHER)), metadata=md, timeout=10)
    assert [v.field for v in details(e.value)["BadRequest"].field_violations] == ["model_id"]
    with pytest.raises(grpc.RpcError) as e:
        s.CreateModel(pb.CreateModelRequest(model_id="x", model=pb.Model(uri="/m/x")),
                      metadata=md, timeout=10)
    assert [v.field for v in details(e.value)["BadRequest"].field_violations] == ["model.role"]
    with pytest.raises(grpc.RpcError) as e:
        s.ListModels(pb.ListModelsRequest(page_token="garbage"), metadata=md, timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(e.value)["BadRequest"].field_violations[0].field == "page_token"


def test_already_exists_and_unexpected_errors(srv):
    s, md = stub(srv)
    req = pb.CreateModelRequest(model_id="t1", model=pb.Model(uri="/m",
                                                              role=pb.MODEL_ROLE_TEACHER))
    s.CreateModel(req, metadata=md, timeout=10)
    with pytest.raises(grpc.RpcError) as e:
        s.CreateModel(req, metadata=md, timeout=10)
    assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS

    def boom(*a, **k):
        raise RuntimeError("secret /etc/path in traceback")

    srv.engine.get_model = boom
    with pytest.raises(grpc.RpcError) as e:
        s.GetModel(pb.GetModelRequest(name="models/t1"), metadata=md, timeout=10)
    assert e.value.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in e.value.details() and "Traceback" not in e.value.details()


def test_batch_scan_needs_an_engine_with_a_home(srv):
    """The fake engine has no home or store, so batch scans are unavailable (see
    test_batch_api.py for the real thing)."""
    s, md = stub(srv)
    with pytest.raises(grpc.RpcError) as e:
        s.CreateBatchScan(pb.CreateBatchScanRequest(), metadata=md, timeout=10)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_client_pagination_and_round_trip(srv):
    with LineageClient(srv.address, token=TOKEN) as c:
        for i in range(7):
            c.register(f"m{i}", f"/models/m{i}", "teacher" if i % 2 == 0 else "reference")
        s, md = stub(srv)
        pages, token = [], ""
        while True:
            r = s.ListModels(pb.ListModelsRequest(page_size=3, page_token=token),
                             metadata=md, timeout=10)
            pages.append([m.name for m in r.models])
            token = r.next_page_token
            if not token:
                break
        assert pages == [["models/m0", "models/m1", "models/m2"],
                         ["models/m3", "models/m4", "models/m5"], ["models/m6"]]
        assert [m.name for m in c.list_models(page_size=2)] == [f"m{i}" for i in range(7)]
        assert [m.name for m in c.list_models(role="teacher", page_size=2)] == \
            ["m0", "m2", "m4", "m6"]
        assert c.get_model("m3") == srv.engine.models["m3"]
        scans = [c.scan(f"/suspects/s{i}") for i in range(5)]
        assert scans[0].to_json() == srv.engine.scans[0].to_json()
        assert [x.id for x in c.list_scans(page_size=2)] == [x.id for x in scans]
        assert c.get_scan(scans[3].id) == scans[3]
        cmp = c.compare("/suspects/s", "m2")
        assert [x.teacher for x in cmp.candidates] == ["m2"]
        hits = c.search(vector=[0.25, 0.25], k=2)
        assert [(h.teacher, h.score) for h in hits] == [("m0", 0.5), ("m2", -0.5)]
        c.delete_model("m6")
        with pytest.raises(E.UnknownModelError) as e:
            c.get_model("m6")
        assert e.value.field == "name"


def test_client_maps_errors_back_to_lineage_errors(srv):
    with LineageClient(srv.address, token=TOKEN) as c:
        with pytest.raises(E.InvalidArgumentError) as e:
            c.scan("/s", alpha=1.5)
        assert e.value.field == "alpha"
        with pytest.raises(E.UnknownModelError):
            c.get_scan("0" * 32)
    with LineageClient(srv.address, token="wrong") as c:
        with pytest.raises(RemoteError) as e:
            c.list_models()
        assert e.value.code == grpc.StatusCode.UNAUTHENTICATED


def test_same_request_id_creates_one_scan_even_concurrently(token_file):
    eng = FakeEngine(scan_delay=0.5)
    with BackgroundServer(eng, token_file=str(token_file)) as s:
        with LineageClient(s.address, token=TOKEN) as c:
            c.register("t1", "/m/t1", "teacher")
            with ThreadPoolExecutor(3) as pool:
                res = list(pool.map(lambda _: c.scan("/s", request_id="req-1"), range(3)))
            again = c.scan("/s", request_id="req-1")
    assert len({r.id for r in res + [again]}) == 1
    assert len(eng.scans) == 1 and eng.scan_calls == 2  # concurrent ones shared the first


def test_engine_work_runs_off_the_event_loop(token_file):
    eng = FakeEngine(scan_delay=0.3)
    with BackgroundServer(eng, token_file=str(token_file), workers=2) as s:
        with LineageClient(s.address, token=TOKEN) as c:
            c.register("t1", "/m/t1", "teacher")
            h = health_pb2_grpc.HealthStub(grpc.insecure_channel(s.address))
            with ThreadPoolExecutor(2) as pool:
                futs = [pool.submit(c.scan, f"/s{i}") for i in range(2)]
                # the loop still answers while both scans sleep in worker threads
                assert h.Check(health_pb2.HealthCheckRequest(), timeout=0.25).status == \
                    health_pb2.HealthCheckResponse.SERVING
                [f.result() for f in futs]
    assert eng.scan_threads and all(t.startswith("lineage-engine") for t in eng.scan_threads)


def test_engine_factory_is_called_once(token_file):
    made = []

    def factory():
        made.append(FakeEngine())
        return made[-1]

    with BackgroundServer(factory, token_file=str(token_file)) as s:
        with LineageClient(s.address, token=TOKEN) as c:
            c.register("t1", "/m/t1", "teacher")
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(lambda i: c.scan(f"/s{i}"), range(4)))
    assert len(made) == 1 and len(made[0].scans) == 4


def test_message_size_limit_is_enforced_on_both_ends(token_file):
    eng = FakeEngine()
    with BackgroundServer(eng, token_file=str(token_file), max_message_bytes=64 * 1024) as s:
        with LineageClient(s.address, token=TOKEN) as c:
            with pytest.raises(RemoteError) as e:  # request over the server's limit
                c.search(vector=[0.0] * 32_000, k=1)
            assert e.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        eng.register("t1", "/m", "teacher")
        eng.scan("/" + "x" * 100_000)  # a stored result larger than the client accepts
        with LineageClient(s.address, token=TOKEN, max_message_bytes=32 * 1024) as c:
            with pytest.raises(RemoteError) as e:
                c.list_scans()
            assert e.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_health_reports_not_serving_while_draining(token_file):
    eng = FakeEngine(scan_delay=1.5)
    s = BackgroundServer(eng, token_file=str(token_file), drain_delay=1.0)
    h = health_pb2_grpc.HealthStub(grpc.insecure_channel(s.address))
    with LineageClient(s.address, token=TOKEN) as c:
        c.register("t1", "/m", "teacher")
        with ThreadPoolExecutor(1) as pool:
            scan = pool.submit(c.scan, "/s")
            while not eng.scan_threads:
                threading.Event().wait(0.02)
            stopping = s.submit(s.server.stop(10.0))
            threading.Event().wait(0.3)
            r = h.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
            assert r.status == health_pb2.HealthCheckResponse.NOT_SERVING
            assert scan.result(10).candidates[0].teacher == "t1"  # drained, not cut
            stopping.result(10)
    s.stop()


def test_reflection_serves_the_proto_and_its_imports(srv):
    """What grpcurl needs to call the service without the .proto file."""
    from google.protobuf import descriptor_pb2

    st = reflection_pb2_grpc.ServerReflectionStub(grpc.insecure_channel(srv.address))
    md = (("authorization", f"Bearer {TOKEN}"),)
    reqs = [reflection_pb2.ServerReflectionRequest(
                file_containing_symbol="lineage.v1.LineageService"),
            reflection_pb2.ServerReflectionRequest(
                file_by_filename="google/longrunning/operations.proto")]
    files = {}
    for resp in st.ServerReflectionInfo(iter(reqs), metadata=md, timeout=10):
        for raw in resp.file_descriptor_response.file_descriptor_proto:
            f = descriptor_pb2.FileDescriptorProto.FromString(raw)
            files[f.name] = f
    assert "lineage/v1/lineage.proto" in files
    assert "google/longrunning/operations.proto" in files
    methods = {m.name for m in files["lineage/v1/lineage.proto"].service[0].method}
    assert {"CreateScan", "ListModels", "SearchSignatures"} <= methods


def test_cli_register_and_scan_with_server_print_engine_json(srv, token_file, capsys):
    import json

    from lineage.cli import main

    common = ["--server", srv.address, "--token-file", str(token_file), "--json"]
    assert main(["register", "t1", "/m/t1", "--role", "teacher", *common]) == 0
    assert json.loads(capsys.readouterr().out) == srv.engine.models["t1"].to_json()
    assert main(["scan", "/suspects/s", "--alpha", "0.05", *common]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and json.loads(out) == srv.engine.scans[-1].to_json()
    assert main(["scan", "/suspects/s", "--alpha", "2", *common]) == 2
    assert "alpha" in capsys.readouterr().err


def test_overlong_request_id_is_invalid(srv):
    with LineageClient(srv.address, token=TOKEN) as c:
        with pytest.raises(E.InvalidArgumentError) as e:
            c.scan("/s", request_id="x" * 129)
    assert e.value.field == "request_id"


def test_port_in_use_is_a_clear_error(srv):
    from server.app import LineageServer, ServerConfig

    other = LineageServer(FakeEngine(), ServerConfig(address=srv.address))
    with pytest.raises(E.InvalidArgumentError) as e:
        srv.run(other.start())
    assert e.value.field == "address"


@pytest.mark.parametrize("n", [1, 2])
def test_model_work_is_gated_but_reads_are_not(token_file, n):
    eng = FakeEngine(scan_delay=0.4)
    with BackgroundServer(eng, token_file=str(token_file), model_concurrency=n) as s, \
            LineageClient(s.address, token=TOKEN) as c:
        c.register("t1", "/m/t1", "teacher")
        with ThreadPoolExecutor(3) as pool:
            futs = [pool.submit(c.scan, f"/s{i}") for i in range(3)]
            while not eng.scan_threads:
                threading.Event().wait(0.01)
            assert [m.name for m in c.list_models()] == ["t1"]  # not stuck behind scans
            assert all(f.result(10).candidates for f in futs)
    assert eng.max_active == n


# -- packed signatures (Signature.float32_le) ----------------------------------------------

def _search(s, md, sig: pb.Signature, k: int = 2) -> pb.SearchSignaturesResponse:
    return s.SearchSignatures(pb.SearchSignaturesRequest(signature=sig, top_k=k),
                              metadata=md, timeout=10)


def _refused(s, md, sig: pb.Signature) -> str:
    """The refusal's code must be INVALID_ARGUMENT naming `signature`; returns its message."""
    with pytest.raises(grpc.RpcError) as e:
        _search(s, md, sig)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in details(e.value)["BadRequest"].field_violations] == ["signature"]
    return e.value.details()


def test_packed_signature_round_trips_like_repeated_values(srv):
    import numpy as np

    from server import convert

    srv.engine.register("t1", "/m/t1", "teacher")
    srv.engine.register("t2", "/m/t2", "teacher")
    s, md = stub(srv)
    v = np.array([0.125, -2.5, 1e-30, 3.4e38], dtype=np.float32)
    packed = convert.signature_to_pb(v)
    assert packed.float32_le == v.astype("<f4").tobytes() and not packed.values
    np.testing.assert_array_equal(convert.signature_from_pb(packed), v)
    np.testing.assert_array_equal(convert.signature_from_pb(pb.Signature(values=v.tolist())), v)
    a = _search(s, md, packed)
    b = _search(s, md, pb.Signature(values=v.tolist()))
    assert a == b and [h.teacher for h in a.hits] == ["models/t1", "models/t2"]
    assert a.hits[0].score == pytest.approx(float(np.sum(v)))  # the fake scores sum(vector)
    with LineageClient(srv.address, token=TOKEN) as c:  # the client sends the packed form
        assert [h.score for h in c.search(vector=v, k=1)] == [a.hits[0].score]


def test_malformed_packed_signatures_are_invalid_argument(srv):
    import numpy as np

    from server.convert import MAX_SIGNATURE_VALUES

    srv.engine.register("t1", "/m/t1", "teacher")
    s, md = stub(srv)
    ok = np.ones(4, dtype="<f4").tobytes()
    assert "multiple of 4" in _refused(s, md, pb.Signature(float32_le=ok[:-1]))
    assert "not both" in _refused(s, md, pb.Signature(float32_le=ok, values=[1.0] * 4))
    assert "empty" in _refused(s, md, pb.Signature())
    for bad in (np.nan, np.inf, -np.inf):
        v = np.ones(4, dtype="<f4")
        v[2] = bad
        assert "NaN or inf" in _refused(s, md, pb.Signature(float32_le=v.tobytes()))
        assert "NaN or inf" in _refused(s, md, pb.Signature(values=v.tolist()))
    big = bytes(4 * (MAX_SIGNATURE_VALUES + 1))  # 4 MiB: under the message limit
    assert "more than" in _refused(s, md, pb.Signature(float32_le=big))
    assert "more than" in _refused(s, md, pb.Signature(values=[0.0] * (MAX_SIGNATURE_VALUES + 1)))
    assert _search(s, md, pb.Signature(float32_le=ok)).hits  # the server still serves


def test_signature_length_is_checked_against_the_index(token_file):
    import types

    import numpy as np

    eng = FakeEngine()
    eng.index = types.SimpleNamespace(dim=4)  # the servicer reads the dimension at start
    eng.register("t1", "/m/t1", "teacher")
    with BackgroundServer(eng, token_file=str(token_file)) as srv:
        s, md = stub(srv)
        for n in (3, 5):
            msg = _refused(s, md, pb.Signature(float32_le=np.ones(n, "<f4").tobytes()))
            assert f"has {n} values, expected 4" in msg
            assert "expected 4" in _refused(s, md, pb.Signature(values=[1.0] * n))
        assert _search(s, md, pb.Signature(float32_le=np.ones(4, "<f4").tobytes())).hits
