"""SIGTERM: health goes NOT_SERVING, the scan in flight finishes, and the process exits 0."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lineage.client import LineageClient

HERE = Path(__file__).resolve().parent


def test_sigterm_drains_a_scan_in_flight_and_exits_zero(tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("tok admin\n")  # a role, so the first stderr line is the listening one
    p = subprocess.Popen([sys.executable, str(HERE / "fake_server.py"), "2.0", str(tokens)],
                         stderr=subprocess.PIPE, text=True, cwd=HERE.parent)
    try:
        line = p.stderr.readline()
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        assert m, line
        addr = f"127.0.0.1:{m.group(1)}"
        health = health_pb2_grpc.HealthStub(grpc.insecure_channel(addr))
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == \
            health_pb2.HealthCheckResponse.SERVING
        with LineageClient(addr, token="tok", timeout=30) as c, ThreadPoolExecutor(1) as pool:
            scan = pool.submit(c.scan, "/suspect")
            time.sleep(0.7)  # the scan is now sleeping inside the engine
            p.send_signal(signal.SIGTERM)
            time.sleep(0.2)  # within drain_delay: still answering, but NOT_SERVING
            assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == \
                health_pb2.HealthCheckResponse.NOT_SERVING
            res = scan.result(30)
        assert [c.teacher for c in res.candidates] == ["t1"]
        assert p.wait(30) == 0
        assert "shutting down" in p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
