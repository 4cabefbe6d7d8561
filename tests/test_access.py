"""Access control and the audit log: hashed tokens with roles, refusals with the right status,
an audit entry for every mutating call, and `lineage audit verify` catching tampering."""

from __future__ import annotations

import json
import multiprocessing as mp
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from fake_engine import FakeEngine
from serverutil import BackgroundServer

from lineage._proto.lineage.v1 import lineage_pb2 as pb
from lineage._proto.lineage.v1 import lineage_pb2_grpc as pb_grpc
from lineage.audit import GENESIS, AuditLog, entry_hash
from lineage.tokens import TokenStore
from server.auth import load_tokens

ROOT = Path(__file__).resolve().parent.parent


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lineage.cli", "--home", str(home), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


# -- tokens ------------------------------------------------------------------------------------

def test_tokens_are_stored_hashed_and_printed_once(tmp_path: Path) -> None:
    p = cli(tmp_path, "tokens", "add", "alice", "--role", "admin", "--json")
    assert p.returncode == 0, p.stderr
    tok = json.loads(p.stdout)["token"]
    assert tok.startswith("lin_") and len(tok) >= 40
    raw = b"".join(f.read_bytes() for f in tmp_path.glob("tokens.db*"))
    assert tok.encode() not in raw  # only the digest is on disk
    import hashlib
    assert hashlib.sha256(tok.encode()).hexdigest().encode() in raw
    listed = cli(tmp_path, "tokens", "list", "--json")
    assert [t["name"] for t in json.loads(listed.stdout)["tokens"]] == ["alice"]
    assert tok not in listed.stdout
    assert cli(tmp_path, "tokens", "add", "bob", "--role", "root").returncode == 2  # argparse


def test_token_file_roles_and_hashed_lines(tmp_path: Path, caplog: pytest.LogCaptureFixture
                                            ) -> None:
    import hashlib

    f = tmp_path / "tokens"
    f.write_text("plain\ninv investigator\n"
                 f"sha256:{hashlib.sha256(b'hashed').hexdigest()} admin  # on-disk digest\n")
    creds = load_tokens(f)
    assert [(c.role, c.name) for c in creds] == [("admin", "token-file:1"),
                                                ("investigator", "token-file:2"),
                                                ("admin", "token-file:3")]
    assert creds[2].digest == hashlib.sha256(b"hashed").digest()
    # the role-less line still grants admin (files from before roles), with a warning
    assert [r.getMessage() for r in caplog.records if "name no role" in r.getMessage()] == [
        f"token file {f}: line(s) 1 name no role and grant 'admin'; write 'TOKEN investigator'"
        " for a token that should only scan and read"]
    caplog.clear()
    f.write_text("a admin\nb investigator\n")
    load_tokens(f)
    assert not [r for r in caplog.records if "name no role" in r.getMessage()]
    f.write_text("tok superuser\n")
    with pytest.raises(Exception, match="role must be one of"):
        load_tokens(f)


# -- the server: roles and audit ------------------------------------------------------------

@pytest.fixture()
def secured(tmp_path: Path):
    ts = TokenStore(tmp_path / "tokens.db")
    toks = {"admin": ts.add("ada", "admin"), "investigator": ts.add("ivan", "investigator"),
            "revoked": ts.add("rex", "admin")}
    ts.revoke("rex")
    eng = FakeEngine()
    with BackgroundServer(eng, tokens_db=str(ts.path), audit_log=str(tmp_path / "audit.db")) \
            as s:
        s.engine = eng
        yield s, toks, AuditLog(tmp_path / "audit.db")


def _call(s: BackgroundServer, method: str, req: object, token: str | None) -> grpc.StatusCode:
    stub = pb_grpc.LineageServiceStub(grpc.insecure_channel(s.address))
    md = (("authorization", f"Bearer {token}"),) if token else ()
    try:
        getattr(stub, method)(req, metadata=md, timeout=10)
        return grpc.StatusCode.OK
    except grpc.RpcError as e:
        return e.code()


def test_roles_are_enforced(secured) -> None:
    s, toks, _ = secured
    adm, inv = toks["admin"], toks["investigator"]
    create = pb.CreateModelRequest(model_id="t1", model=pb.Model(
        uri="/m/t1", role=pb.MODEL_ROLE_TEACHER))
    C = grpc.StatusCode
    assert _call(s, "CreateModel", create, inv) == C.PERMISSION_DENIED
    assert _call(s, "CreateModel", create, adm) == C.OK
    assert _call(s, "ListModels", pb.ListModelsRequest(), inv) == C.OK
    assert _call(s, "CreateScan", pb.CreateScanRequest(suspect="/m/x"), inv) == C.OK
    assert _call(s, "SearchSignatures", pb.SearchSignaturesRequest(suspect="/m/x"), inv) == C.OK
    assert _call(s, "DeleteModel", pb.DeleteModelRequest(name="models/t1"), inv) \
        == C.PERMISSION_DENIED
    assert _call(s, "CreateBatchScan", pb.CreateBatchScanRequest(), inv) == C.PERMISSION_DENIED
    assert _call(s, "CreateBatchScan", pb.CreateBatchScanRequest(), adm) == C.UNIMPLEMENTED
    for bad in (None, "nope", toks["revoked"]):
        assert _call(s, "ListModels", pb.ListModelsRequest(), bad) == C.UNAUTHENTICATED
        assert _call(s, "CreateModel", create, bad) == C.UNAUTHENTICATED
    assert _call(s, "DeleteModel", pb.DeleteModelRequest(name="models/t1"), adm) == C.OK
    assert "t1" not in s.engine.models


def test_new_and_revoked_tokens_apply_without_restart(secured, tmp_path: Path) -> None:
    s, toks, _ = secured
    ts = TokenStore(tmp_path / "tokens.db")
    new = ts.add("nina", "investigator")
    ts.revoke("ivan")
    time.sleep(2.2)  # the server re-reads the token table every 2 s
    assert _call(s, "ListModels", pb.ListModelsRequest(), new) == grpc.StatusCode.OK
    assert _call(s, "ListModels", pb.ListModelsRequest(), toks["investigator"]) \
        == grpc.StatusCode.UNAUTHENTICATED


def test_every_mutating_call_is_audited(secured) -> None:
    s, toks, log = secured
    adm, inv = toks["admin"], toks["investigator"]
    create = pb.CreateModelRequest(model_id="t9", model=pb.Model(uri="/m/t9",
                                                                 role=pb.MODEL_ROLE_TEACHER))
    _call(s, "CreateModel", create, adm)
    _call(s, "CreateModel", create, inv)
    _call(s, "CreateModel", create, None)
    _call(s, "CreateScan", pb.CreateScanRequest(suspect="/m/x", alpha=0.05), inv)
    _call(s, "CreateScan", pb.CreateScanRequest(suspect="", alpha=0.05), inv)
    _call(s, "ListModels", pb.ListModelsRequest(), inv)  # a read: not audited
    _call(s, "DeleteModel", pb.DeleteModelRequest(name="models/t9"), adm)
    deadline = time.monotonic() + 5  # an error's entry lands just after its status is sent
    while len(list(log.entries())) < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    got = [(e.actor, e.action, e.target, e.outcome) for e in log.entries()]
    assert got == [
        ("ada", "model.register", "t9", "STARTED"),
        ("ada", "model.register", "t9", "OK"),
        ("ivan", "model.register", "t9", "PERMISSION_DENIED"),  # refused: no STARTED
        ("unauthenticated", "model.register", "t9", "UNAUTHENTICATED"),
        ("ivan", "scan.create", "/m/x", "STARTED"),
        ("ivan", "scan.create", "/m/x", "OK"),
        ("ivan", "scan.create", "", "STARTED"),
        ("ivan", "scan.create", "", "INVALID_ARGUMENT"),
        ("ada", "model.delete", "models/t9", "STARTED"),
        ("ada", "model.delete", "models/t9", "OK"),
    ]
    first = next(log.entries())
    assert first.detail["request"]["model"] == {"uri": "/m/t9", "role": "MODEL_ROLE_TEACHER"}
    assert log.verify() == (10, None)
    for e in log.entries():
        assert adm not in json.dumps(e.to_json()) and inv not in json.dumps(e.to_json())


# -- the chain -------------------------------------------------------------------------------

def _fill(path: Path, n: int) -> AuditLog:
    log = AuditLog(path)
    for i in range(n):
        log.append(actor=f"u{i % 2}", action="model.register", target=f"m{i}",
                   detail={"i": i})
    return log


def _tamper(path: Path, sql: str) -> None:
    db = sqlite3.connect(path)  # an attacker with the file: drops the guard triggers first
    db.executescript("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;" + sql)
    db.commit()
    db.close()


def test_chain_is_well_formed(tmp_path: Path) -> None:
    log = _fill(tmp_path / "audit.db", 3)
    es = list(log.entries())
    assert [e.seq for e in es] == [1, 2, 3] and es[0].prev == GENESIS
    assert all(b.prev == a.hash for a, b in zip(es, es[1:]))
    assert all(entry_hash(e.body()) == e.hash for e in es)
    db = sqlite3.connect(tmp_path / "audit.db")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("UPDATE audit SET actor='x' WHERE seq=2")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("DELETE FROM audit WHERE seq=3")


@pytest.mark.parametrize("sql,bad,why", [
    ("UPDATE audit SET target='innocent' WHERE seq=4", 4, "edited"),
    ("UPDATE audit SET detail='{\"i\": 99}' WHERE seq=2", 2, "edited"),
    ("DELETE FROM audit WHERE seq=3", 3, "missing"),
    ("DELETE FROM audit WHERE seq=1", 1, "missing"),
])
def test_verify_names_the_bad_entry(tmp_path: Path, sql: str, bad: int, why: str) -> None:
    _fill(tmp_path / "audit.db", 6)
    ok = cli(tmp_path, "audit", "verify")
    assert ok.returncode == 0 and "6 entries" in ok.stdout, ok.stderr
    _tamper(tmp_path / "audit.db", sql)
    p = cli(tmp_path, "audit", "verify")
    assert p.returncode == 1
    assert f"audit entry {bad}: {why}" in p.stderr


def test_rehashed_edit_breaks_the_next_link(tmp_path: Path) -> None:
    """An attacker who edits entry 2 and recomputes its hash still breaks entry 3's prev."""
    log = _fill(tmp_path / "audit.db", 4)
    e = next(x for x in log.entries() if x.seq == 2)
    body = {**e.body(), "target": "innocent"}
    _tamper(tmp_path / "audit.db", f"UPDATE audit SET target='innocent', "
                                   f"hash='{entry_hash(body)}' WHERE seq=2")
    n, problem = log.verify()
    assert (n, problem.seq) == (2, 3) and "prev hash" in problem.why


def test_truncated_tail_is_caught_with_an_anchor(tmp_path: Path) -> None:
    log = _fill(tmp_path / "audit.db", 5)
    head = cli(tmp_path, "audit", "head").stdout.strip()
    assert head.startswith("5:")
    _tamper(tmp_path / "audit.db", "DELETE FROM audit WHERE seq=5")
    assert cli(tmp_path, "audit", "verify").returncode == 0  # a shorter chain is well formed
    p = cli(tmp_path, "audit", "verify", "--anchor", head)
    assert p.returncode == 1 and "audit entry 5: missing" in p.stderr
    assert log.verify((5, head.split(":")[1]))[1].seq == 5


def _writer(path: str, who: int, n: int) -> None:
    log = AuditLog(path)
    for i in range(n):
        log.append(actor=f"w{who}", action="scan.create", target=f"{who}-{i}")


def test_concurrent_writers_keep_one_chain(tmp_path: Path) -> None:
    path = str(tmp_path / "audit.db")
    AuditLog(path)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, w, 40)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    log = AuditLog(path)
    assert log.verify() == (160, None)
    assert sorted(e.target for e in log.entries()) == sorted(
        f"{w}-{i}" for w in range(4) for i in range(40))


def test_cli_mutations_are_audited(tmp_path: Path) -> None:
    cli(tmp_path, "models", "delete", "ghost")
    cli(tmp_path, "tokens", "add", "ada", "--role", "admin")
    cli(tmp_path, "tokens", "revoke", "ada")
    es = list(AuditLog.for_home(tmp_path).entries())
    assert [(e.action, e.target, e.outcome) for e in es] == [
        ("model.delete", "ghost", "started"), ("model.delete", "ghost", "error:UNKNOWN_MODEL"),
        ("token.add", "ada", "started"), ("token.add", "ada", "ok"),
        ("token.revoke", "ada", "started"), ("token.revoke", "ada", "ok")]
    assert all(e.actor.startswith("cli:") for e in es)


def test_lineage_serve_uses_the_home_tokens_and_audit_log(tmp_path: Path) -> None:
    """End to end through the CLI: tokens added to a home protect `lineage serve` on it."""
    import os
    import re
    import signal

    adm = cli(tmp_path, "tokens", "add", "ada", "--role", "admin").stdout.strip()
    inv = cli(tmp_path, "tokens", "add", "ivan", "--role", "investigator").stdout.strip()
    assert adm.startswith("lin_") and "\n" not in adm
    log = tmp_path / "serve.log"
    p = subprocess.Popen([sys.executable, "-m", "lineage.cli", "--home", str(tmp_path), "serve",
                          "--address", "127.0.0.1:0", "--grace", "1"], cwd=ROOT,
                         stderr=open(log, "wb"), env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 60
        while not (m := re.search(r"listening on ([\d.]+:\d+)", log.read_text())):
            assert p.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        stub = pb_grpc.LineageServiceStub(grpc.insecure_channel(m.group(1)))

        def code(method: str, req: object, tok: str | None) -> grpc.StatusCode:
            md = (("authorization", f"Bearer {tok}"),) if tok else ()
            try:
                getattr(stub, method)(req, metadata=md, timeout=30)
                return grpc.StatusCode.OK
            except grpc.RpcError as e:
                return e.code()
        assert code("ListModels", pb.ListModelsRequest(), None) == grpc.StatusCode.UNAUTHENTICATED
        assert code("ListModels", pb.ListModelsRequest(), inv) == grpc.StatusCode.OK
        gone = pb.DeleteModelRequest(name="models/ghost")
        assert code("DeleteModel", gone, inv) == grpc.StatusCode.PERMISSION_DENIED
        assert code("DeleteModel", gone, adm) == grpc.StatusCode.NOT_FOUND
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(30)
    got = [(e.actor, e.action, e.outcome) for e in AuditLog.for_home(tmp_path).entries()
           if e.action == "model.delete"]
    assert got == [("ivan", "model.delete", "PERMISSION_DENIED"),
                   ("ada", "model.delete", "STARTED"), ("ada", "model.delete", "NOT_FOUND")]
    assert cli(tmp_path, "audit", "verify").returncode == 0
