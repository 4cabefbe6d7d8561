"""10,012 generated requests against a real server process on loopback: no INTERNAL or
UNKNOWN status, no crash, and the server still answers its health check afterwards.

The server (`tests/hostile_grpc_server.py`) runs the real engine on a home holding synthetic
models (fingerprints without weights), with bearer tokens. Two generators, seeded:
- hypothesis strategies built from the request messages' descriptors (every field, nested
  messages, repeated fields, unknown enum numbers, NaN/inf floats, extreme integers), with
  strings drawn from arbitrary text and a pool of hostile values (NUL bytes, 5,000-char paths,
  /dev/zero, path traversal, forged page tokens, an unreachable endpoint URI);
- raw bytes: random payloads, truncations and bit flips of valid messages, per method.
Tokens vary too: admin, investigator, none, garbage.
"""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from google.longrunning import operations_pb2
from google.protobuf import message_factory
from google.protobuf.descriptor import FieldDescriptor as FD
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lineage._proto.lineage.v1 import lineage_pb2 as pb

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
N_STRUCTURED = int(os.environ.get("LINEAGE_FUZZ_STRUCTURED", 3000))
N_RAW = int(os.environ.get("LINEAGE_FUZZ_RAW", 6000))
BAD = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
ADMIN, INVESTIGATOR = "fuzz-admin-token", "fuzz-investigator-token"


def _tok(obj: object) -> str:
    raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


POOL = [
    "", "models/syn0", "models/syn1", "models/syn2", "models/", "models/../../etc/passwd",
    "models/syn0/extra", "scans/", "scans/0", "syn0", "/", "/etc/passwd", "/dev/zero",
    "/proc/self/fd/0", "/tmp", ".", "..", "~", "\x00", "a\x00b", "models/\x00", "x" * 5000,
    "/" + "a/" * 3000, "hf:org/name", "hf:../x", "hf:a/b@../../etc",
    "openai+http://127.0.0.1:1/v1?model=m&access=text&retries=0",
    "openai+http://127.0.0.1:1/v1?model=m&access=full", "openai+ftp://x/v1", "file:///etc",
    "http://x", "\u202e\ufeff", "🙂" * 100,
    _tok({"k": "models", "f": {"role": None}}), _tok({"k": "models", "a": 10**30,
                                                       "f": {"role": None}}),
    _tok({"k": "models", "a": -5, "f": {"role": None}}), _tok({"k": "models", "a": True,
                                                               "f": {"role": None}}),
    _tok({"k": "models", "a": "x", "f": {"role": None}}), _tok({"k": "scans", "a": 3, "f": {}}),
    _tok({"k": "scans", "a": "nope", "f": {}}), _tok({"k": "scans", "a": None, "f": {}}),
    _tok(b"[" * 100_000), _tok(b"\xff\xfe"), _tok([1, 2]), "!!!", "=" * 10,
]

_SVC = pb.DESCRIPTOR.services_by_name["LineageService"]
_OPS = operations_pb2.DESCRIPTOR.services_by_name["Operations"]
METHODS = [(f"/{_SVC.full_name}/{m.name}", m.input_type) for m in _SVC.methods] + \
    [(f"/{_OPS.full_name}/{m.name}", m.input_type) for m in _OPS.methods] + \
    [("/grpc.health.v1.Health/Check",
      health_pb2.DESCRIPTOR.message_types_by_name["HealthCheckRequest"])]

_INT = {FD.TYPE_INT32: (-2**31, 2**31 - 1), FD.TYPE_SINT32: (-2**31, 2**31 - 1),
        FD.TYPE_SFIXED32: (-2**31, 2**31 - 1), FD.TYPE_INT64: (-2**63, 2**63 - 1),
        FD.TYPE_SINT64: (-2**63, 2**63 - 1), FD.TYPE_SFIXED64: (-2**63, 2**63 - 1),
        FD.TYPE_UINT32: (0, 2**32 - 1), FD.TYPE_FIXED32: (0, 2**32 - 1),
        FD.TYPE_UINT64: (0, 2**64 - 1), FD.TYPE_FIXED64: (0, 2**64 - 1)}


def _ints(lo: int, hi: int) -> st.SearchStrategy[int]:
    edge = [lo, hi, 0, -1 if lo < 0 else 1, 1, 2**31 - 1]
    return st.one_of(st.integers(-3, 1100).filter(lambda x: lo <= x <= hi),
                     st.sampled_from([e for e in edge if lo <= e <= hi]), st.integers(lo, hi))


def _scalar(f: FD, depth: int) -> st.SearchStrategy[object]:
    t = f.type
    if t == FD.TYPE_STRING:
        return st.one_of(st.sampled_from(POOL), st.text(max_size=40))
    if t == FD.TYPE_BYTES:
        return st.binary(max_size=64)
    if t in _INT:
        return _ints(*_INT[t])
    if t == FD.TYPE_FLOAT:
        return st.floats(width=32)
    if t == FD.TYPE_DOUBLE:
        return st.one_of(st.floats(), st.sampled_from([0.0, 1.0, 0.01, 1e-300, -0.0]))
    if t == FD.TYPE_BOOL:
        return st.booleans()
    if t == FD.TYPE_ENUM:
        return st.one_of(st.sampled_from([v.number for v in f.enum_type.values]),
                         st.integers(-2, 50))
    if t == FD.TYPE_MESSAGE:
        return _message(f.message_type, depth + 1) if depth < 3 else st.none()
    raise AssertionError(f"unhandled field type {t}")


def _field(f: FD, depth: int) -> st.SearchStrategy[object]:
    if f.is_repeated:
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            k, v = f.message_type.fields_by_name["key"], f.message_type.fields_by_name["value"]
            return st.dictionaries(_scalar(k, depth), _scalar(v, depth), max_size=3)
        size = 2000 if f.type in (FD.TYPE_FLOAT, FD.TYPE_DOUBLE) else 5
        return st.lists(_scalar(f, depth), max_size=size)
    return _scalar(f, depth)


_CACHE: dict[tuple[str, int], st.SearchStrategy[object]] = {}


def _message(desc, depth: int = 0) -> st.SearchStrategy[object]:
    key = (desc.full_name, depth)
    if key not in _CACHE:
        cls = message_factory.GetMessageClass(desc)
        opt = {f.name: _field(f, depth) for f in desc.fields}

        def build(d: dict[str, object]) -> object:
            m = cls()
            for name, v in d.items():
                f = desc.fields_by_name[name]
                if v is None:
                    continue
                if f.is_repeated and isinstance(v, dict):
                    getattr(m, name).update(v)
                elif f.is_repeated and f.message_type is not None:
                    getattr(m, name).extend(x for x in v if x is not None)
                elif f.is_repeated:
                    getattr(m, name).extend(v)
                elif f.message_type is not None:
                    getattr(m, name).CopyFrom(v)
                else:
                    setattr(m, name, v)
            return m
        _CACHE[key] = st.fixed_dictionaries({}, optional=opt).map(build)
    return _CACHE[key]


class Fuzzer:
    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address, options=[
            ("grpc.max_send_message_length", 64 << 20),
            ("grpc.max_receive_message_length", 64 << 20)])
        self.codes: Counter[str] = Counter()
        self.bad: list[str] = []
        self.sent = 0

    def send(self, method: str, payload: bytes, token: str | None) -> None:
        md = (("authorization", f"Bearer {token}"),) if token else ()
        call = self.channel.unary_unary(method)
        try:
            call(payload, metadata=md, timeout=60)
            code = grpc.StatusCode.OK
            details = ""
        except grpc.RpcError as e:
            code, details = e.code(), e.details() or ""
        self.sent += 1
        self.codes[code.name] += 1
        if code in BAD or code == grpc.StatusCode.DEADLINE_EXCEEDED:
            self.bad.append(f"{method} {code.name} {details[:200]} payload={payload[:120]!r}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("fuzzhome")
    tokens = home / "tokens.txt"
    tokens.write_text(f"{ADMIN} admin\n{INVESTIGATOR} investigator\n")
    port_file = home / "port"
    log = open(home / "server.log", "wb")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "hostile_grpc_server.py"),
                             str(home), str(port_file), "--synthetic", "6",
                             "--token-file", str(tokens)],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while not port_file.exists():
        assert proc.poll() is None, (home / "server.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.1)
    address = f"127.0.0.1:{port_file.read_text()}"
    fz = Fuzzer(address)
    yield fz, proc, home
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    log.close()


def _tokens() -> st.SearchStrategy[str | None]:
    return st.sampled_from([ADMIN] * 6 + [INVESTIGATOR] * 2 + [None, "garbage"])


def test_structured_requests(server) -> None:
    fz, proc, home = server
    calls = st.sampled_from(METHODS).flatmap(
        lambda m: st.tuples(st.just(m[0]), _message(m[1]), _tokens()))

    @settings(max_examples=N_STRUCTURED, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(calls)
    def run(call: tuple[str, object, str | None]) -> None:
        method, msg, token = call
        fz.send(method, msg.SerializeToString(), token)  # type: ignore[attr-defined]

    t0 = time.monotonic()
    run()
    took = time.monotonic() - t0
    print(f"\nstructured: {fz.sent} requests in {took:.1f}s; codes {dict(fz.codes)}")
    assert proc.poll() is None, "server died"
    assert fz.bad == [], "\n".join(fz.bad[:20])


def _mutations(rng: random.Random) -> list[tuple[str, bytes]]:
    valid = [(m, message_factory.GetMessageClass(d)()) for m, d in METHODS]
    out = []
    for i in range(N_RAW):
        method, empty = valid[rng.randrange(len(valid))]
        kind = i % 4
        if kind == 0:
            payload = rng.randbytes(rng.randrange(0, 200))
        elif kind == 1:  # a plausible message, then flipped bits
            m = type(empty)()
            for f in m.DESCRIPTOR.fields:
                if f.type == FD.TYPE_STRING and not f.is_repeated:
                    setattr(m, f.name, rng.choice(POOL[:30]))
            b = bytearray(m.SerializeToString() or b"\x0a\x00")
            for _ in range(rng.randrange(1, 4)):
                j = rng.randrange(len(b))
                b[j] ^= 1 << rng.randrange(8)
            payload = bytes(b)
        elif kind == 2:  # field tags with wild wire types and lengths
            payload = bytes([rng.randrange(256)]) + rng.randbytes(rng.randrange(1, 12)) \
                + b"\xff" * rng.randrange(0, 12)
        else:  # a length prefix that lies
            payload = b"\x0a" + bytes([0xff, 0xff, 0xff, 0xff, 0x0f]) + rng.randbytes(8)
        out.append((method, payload))
    return out


def test_every_hostile_string_in_every_string_field(server) -> None:
    """A deterministic sweep: each POOL value in each top-level string field, admin token."""
    fz, proc, home = server
    before = fz.sent
    jobs = []
    for method, desc in METHODS:
        cls = message_factory.GetMessageClass(desc)
        for f in desc.fields:
            if f.type == FD.TYPE_STRING and not f.is_repeated:
                for v in POOL:
                    m = cls()
                    setattr(m, f.name, v)
                    jobs.append((method, m.SerializeToString()))
            elif f.type == FD.TYPE_STRING:
                for v in POOL:
                    m = cls()
                    getattr(m, f.name).append(v)
                    jobs.append((method, m.SerializeToString()))
    with ThreadPoolExecutor(4) as ex:
        list(ex.map(lambda j: fz.send(j[0], j[1], ADMIN), jobs))
    print(f"\nsweep: {fz.sent - before} requests")
    assert proc.poll() is None, "server died"
    assert fz.bad == [], "\n".join(fz.bad[:20])


def test_raw_bytes(server) -> None:
    fz, proc, home = server
    rng = random.Random(7)
    before = fz.sent
    jobs = _mutations(rng)
    toks = [ADMIN, ADMIN, INVESTIGATOR, None]
    t0 = time.monotonic()
    with ThreadPoolExecutor(8) as ex:
        list(ex.map(lambda j: fz.send(j[0], j[1], toks[hash(j[1]) % 4]), jobs))
    took = time.monotonic() - t0
    print(f"\nraw: {fz.sent - before} requests in {took:.1f}s; codes so far {dict(fz.codes)}")
    assert proc.poll() is None, "server died"
    assert fz.bad == [], "\n".join(fz.bad[:20])


def test_streaming_methods_refuse_garbage_cleanly(server) -> None:
    """Health Watch (server streaming) and reflection (bidirectional) get the same guard."""
    fz, proc, home = server
    md = (("authorization", f"Bearer {ADMIN}"),)
    watch = fz.channel.unary_stream("/grpc.health.v1.Health/Watch")
    refl = fz.channel.stream_stream(
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
    rng = random.Random(3)
    for _ in range(20):
        junk = b"\xff" + rng.randbytes(rng.randrange(1, 40))
        for call in (lambda: list(watch(junk, timeout=5)),
                     lambda: list(refl(iter([junk]), metadata=md, timeout=5))):
            with pytest.raises(grpc.RpcError) as ei:
                call()
            assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    first = next(health_pb2_grpc.HealthStub(fz.channel).Watch(
        health_pb2.HealthCheckRequest(service=""), timeout=5))
    assert first.status == health_pb2.HealthCheckResponse.SERVING


def test_still_healthy_and_nothing_internal_logged(server) -> None:
    fz, proc, home = server
    assert fz.sent >= N_STRUCTURED + N_RAW + 1000
    stub = health_pb2_grpc.HealthStub(fz.channel)
    r = stub.Check(health_pb2.HealthCheckRequest(service="lineage.v1.LineageService"),
                   timeout=10)
    assert r.status == health_pb2.HealthCheckResponse.SERVING
    assert proc.poll() is None
    log = (home / "server.log").read_text(errors="replace")
    assert "unexpected error" not in log and "Traceback" not in log, log[-3000:]
