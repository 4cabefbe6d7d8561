"""Batch scans over gRPC (AIP-151) against a real server on 127.0.0.1:0, and /metrics."""

from __future__ import annotations

import os
import urllib.request

import grpc
import pytest
from google.longrunning import operations_pb2, operations_pb2_grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2
from grpc_status import rpc_status
from serverutil import BackgroundServer

from lineage._proto.lineage.v1 import lineage_pb2 as pb
from lineage._proto.lineage.v1 import lineage_pb2_grpc as pb_grpc
from lineage.batch import job_store
from lineage.engine import Lineage


class Spawns(list):
    def __call__(self, home, job_id):
        self.append(job_id)
        return object()  # "alive": no poll()


@pytest.fixture()
def srv(tmp_path):
    eng = Lineage(tmp_path / "home")
    spawns = Spawns()
    s = BackgroundServer.__new__(BackgroundServer)
    _start(s, eng, spawns, metrics_port=0)
    s.spawns, s.home = spawns, tmp_path / "home"
    yield s
    s.stop()
    eng.close()


def _start(s, eng, spawns, **config):
    """BackgroundServer with a batch spawner (its __init__ takes config only)."""
    import asyncio
    import threading

    from server.app import LineageServer, ServerConfig

    s.loop = asyncio.new_event_loop()
    s.thread = threading.Thread(target=s.loop.run_forever, daemon=True)
    s.thread.start()
    s.server = LineageServer(eng, ServerConfig(address="127.0.0.1:0", drain_delay=0.0,
                                               **config), batch_spawn=spawns)
    s.port = s.run(s.server.start())
    s.address = f"127.0.0.1:{s.port}"


def stubs(srv):
    ch = grpc.insecure_channel(srv.address)
    return pb_grpc.LineageServiceStub(ch), operations_pb2_grpc.OperationsStub(ch)


def req(rid, *paths, **kw):
    return pb.CreateBatchScanRequest(
        request_id=rid, suspects=[pb.BatchSuspect(suspect=p, access=pb.ACCESS_MODE_TEXT,
                                                  max_queries=16) for p in paths], **kw)


def meta(op):
    m = pb.BatchScanMetadata()
    assert op.metadata.Unpack(m)
    return m


def test_create_is_idempotent_then_get_list_cancel(srv):
    s, ops = stubs(srv)
    a = s.CreateBatchScan(req("nightly-1", "/tmp", "/usr"), timeout=10)
    b = s.CreateBatchScan(req("nightly-1", "/tmp", "/usr"), timeout=10)
    assert a.name == b.name and a.name.startswith("operations/b") and not a.done
    assert srv.spawns == [a.name.split("/")[1]]  # one runner, not two
    m = meta(a)
    assert (m.state, m.total, m.done) == (pb.BATCH_SCAN_STATE_PENDING, 2, 0)
    assert len(job_store(srv.home).list_jobs()) == 1
    c = s.CreateBatchScan(req("nightly-2", "/tmp"), timeout=10)
    got = ops.GetOperation(operations_pb2.GetOperationRequest(name=a.name), timeout=10)
    assert got.name == a.name and meta(got).total == 2
    page1 = ops.ListOperations(operations_pb2.ListOperationsRequest(page_size=1), timeout=10)
    page2 = ops.ListOperations(operations_pb2.ListOperationsRequest(
        page_size=1, page_token=page1.next_page_token), timeout=10)
    assert [o.name for o in [*page1.operations, *page2.operations]] == [a.name, c.name]
    assert page1.next_page_token and not page2.next_page_token
    ops.CancelOperation(operations_pb2.CancelOperationRequest(name=c.name), timeout=10)
    done = ops.GetOperation(operations_pb2.GetOperationRequest(name=c.name), timeout=10)
    assert done.done and done.error.code == code_pb2.CANCELLED
    assert meta(done).state == pb.BATCH_SCAN_STATE_CANCELLED
    w = ops.WaitOperation(operations_pb2.WaitOperationRequest(
        name=a.name, timeout=duration_pb2.Duration(seconds=1)), timeout=10)
    assert not w.done  # nobody runs it in this test: the wait times out, reporting progress


def test_batch_errors_name_the_field(srv):
    s, ops = stubs(srv)
    with pytest.raises(grpc.RpcError) as e:
        s.CreateBatchScan(req("", "/tmp"), timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as e:
        s.CreateBatchScan(req("x", "/tmp", "/no/such/model"), timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    br = error_details_pb2.BadRequest()
    assert any(d.Unpack(br) for d in rpc_status.from_call(e.value).details
               if d.Is(br.DESCRIPTOR))
    assert br.field_violations[0].field == "suspects[1].model"
    with pytest.raises(grpc.RpcError) as e:
        ops.GetOperation(operations_pb2.GetOperationRequest(name="operations/nope"),
                         timeout=10)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert srv.spawns == [] and job_store(srv.home).list_jobs() == []


def test_metrics_endpoint_serves_counters(srv):
    s, ops = stubs(srv)
    op = s.CreateBatchScan(req("m1", "/tmp"), timeout=10)
    ops.CancelOperation(operations_pb2.CancelOperationRequest(name=op.name), timeout=10)
    for _ in range(3):
        ops.GetOperation(operations_pb2.GetOperationRequest(name=op.name), timeout=10)
    with pytest.raises(grpc.RpcError):
        ops.GetOperation(operations_pb2.GetOperationRequest(name="operations/x"), timeout=10)
    port = srv.server.metrics.port
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    lines = set(text.splitlines())
    assert 'lineage_rpc_requests_total{code="OK",method="GetOperation"} 3.0' in lines
    assert 'lineage_rpc_requests_total{code="NOT_FOUND",method="GetOperation"} 1.0' in lines
    assert 'lineage_rpc_requests_total{code="OK",method="CreateBatchScan"} 1.0' in lines
    assert 'lineage_rpc_latency_seconds_count{method="GetOperation"} 4.0' in lines
    assert 'lineage_batch_jobs{state="cancelled"} 1.0' in lines
    assert 'lineage_batch_items{state="pending"} 1.0' in lines
    assert "# TYPE lineage_scans_total counter" in lines


@pytest.mark.slow
def test_api_batch_runs_in_a_runner_process(home_copy, small_zoo, zoo_manifest):
    """The real thing: the server spawns `lineage batch run --job`, which scans and stores."""
    from server.batch import spawn_runner

    os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the runner (2 shared cores)
    eng = Lineage(home_copy)
    srvr = BackgroundServer.__new__(BackgroundServer)
    _start(srvr, eng, spawn_runner)
    try:
        s, ops = stubs(srvr)
        sus = next(m for m in zoo_manifest["models"] if m["role"] == "suspect")
        op = s.CreateBatchScan(req("api-1", str(small_zoo / sus["path"])), timeout=10)
        for _ in range(60):
            op = ops.WaitOperation(operations_pb2.WaitOperationRequest(
                name=op.name, timeout=duration_pb2.Duration(seconds=5)), timeout=30)
            if op.done:
                break
        assert op.done and not op.HasField("error"), op
        res = pb.BatchScanResult()
        assert op.response.Unpack(res) and len(res.scans) == 1 and not res.failures
        scan = s.GetScan(pb.GetScanRequest(name=res.scans[0]), timeout=10).scan
        assert scan.queries <= 16 and len(scan.candidates) == 2
        again = s.CreateBatchScan(req("api-1", str(small_zoo / sus["path"])), timeout=10)
        assert again.name == op.name and again.done  # idempotent, nothing re-run
        assert meta(again).done == 1
    finally:
        srvr.stop()
        eng.close()
