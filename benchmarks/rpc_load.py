"""RPC load: SearchSignatures against a real `lineage serve` on loopback, 1e5 signatures indexed.

    python benchmarks/rpc_load.py                          # n=1e5, 32 callers, 20 s
    python benchmarks/rpc_load.py --n 20000 --duration 5   # a quick look

1. Builds a home for the benchmark only: `bulk_home` writes n model rows straight into the
   store (teachers, plus 8 references; no fingerprints, which a search does not read) and n
   seeded synthetic signatures (`benchmarks/synth.py`) into `index.faiss` under the same ids,
   so the engine's start-up check (index ids == store ids) passes without registering models.
2. Starts `lineage serve --address 127.0.0.1:0 --token-file F` in a subprocess (bearer auth
   on, as in production) and waits for its port.
3. Runs the load in a separate process: one grpc.aio channel, `--clients` concurrent callers,
   each sending SearchSignatures(signature, top_k=10) from a pool of 64 prebuilt requests
   (half near stored signatures, half unrelated) back to back, for `--warmup` s (discarded)
   then `--duration` s. Every call has a 5 s deadline; any non-OK status is an error.

Prints the table and writes `benchmarks/results/rpc_load.json`. Client and server share the
machine's cores (2 here), so the client's own CPU use is in the figure.

Profile (py-spy on the server under this load, before the change): every call listed all
1e5 teachers from SQLite (ModelRecord + json.loads per row) and asked faiss for k + n hits;
about 1 s per call. After: teacher names are cached by the engine, the search asks for
k + #references hits, vector searches skip the model gate, and the index is the compact one.
What remains per call is gRPC's own work (HTTP/2, the auth interceptor, deserialising 6,272
floats), the executor hop, and the search (projection of the query, IVF-SQ8 over nprobe lists).
Measured split (server CPU seconds / calls, same machine and load): with 50 signatures (a
near-free exact search) the server spends 0.59 ms of CPU per call and the load process 0.27
ms; with 1e5, 1.15 ms, so the search is about half of the server's work and Python gRPC the
other half.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = Path(__file__).resolve().parent / "results"
TOKEN = "bench-token-0123456789"


def bulk_home(home: Path, n: int, seed: int = 0, refs: int = 8) -> None:
    """A home whose store lists n models (ids 1..n) and whose index holds their signatures."""
    import sqlalchemy as sa

    from benchmarks.synth import Synth
    from lineage.index import SignatureIndex
    from lineage.store import Store, models, utcnow

    store = Store(home / "lineage.db")
    now = utcnow()
    rows = [{"id": i, "name": f"m{i}", "role": "reference" if i <= refs else "teacher",
             "uri": f"/bench/m{i}", "identity": "{}", "suite_name": "default",
             "suite_hash": "bench", "created_at": now} for i in range(1, n + 1)]
    with store.engine.begin() as c:
        c.execute(sa.insert(models), rows)
    store.close()
    syn = Synth(n, seed=seed)
    idx = SignatureIndex(syn.dim, home / "index.faiss")
    for ids, X in syn.chunks():
        idx.upsert(ids + 1, X)
    idx.save()


async def _load(address: str, clients: int, warmup: float, duration: float, n: int,
                seed: int) -> dict:
    import grpc

    from benchmarks.synth import Synth
    from lineage._proto.lineage.v1 import lineage_pb2 as pb
    from lineage._proto.lineage.v1 import lineage_pb2_grpc as pb_grpc

    Q, _ = Synth(n, seed=seed).queries(64)
    reqs = []
    for q in Q:
        r = pb.SearchSignaturesRequest(top_k=10)
        r.signature.values.extend(q.tolist())
        reqs.append(r)
    md = (("authorization", f"Bearer {TOKEN}"),)
    mb = 64 * 1024 * 1024
    opts = [("grpc.max_send_message_length", mb), ("grpc.max_receive_message_length", mb)]
    lat: list[float] = []
    errors: dict[str, int] = {}
    hits_seen = [0]
    async with grpc.aio.insecure_channel(address, options=opts) as ch:
        stub = pb_grpc.LineageServiceStub(ch)
        await stub.SearchSignatures(reqs[0], metadata=md, timeout=30)  # first call: connect
        t0 = time.perf_counter()
        start, end = t0 + warmup, t0 + warmup + duration

        async def caller(c: int) -> None:
            j = c
            while True:
                t = time.perf_counter()
                if t >= end:
                    return
                try:
                    resp = await stub.SearchSignatures(reqs[j % len(reqs)], metadata=md,
                                                       timeout=5)
                    ok = len(resp.hits) == 10
                    if not ok:
                        errors["short_response"] = errors.get("short_response", 0) + 1
                except grpc.aio.AioRpcError as e:
                    ok = False
                    errors[e.code().name] = errors.get(e.code().name, 0) + 1
                done = time.perf_counter()
                if t >= start and done <= end:
                    lat.append(done - t)
                    hits_seen[0] += ok
                j += clients

        await asyncio.gather(*(caller(c) for c in range(clients)))
    a = np.asarray(lat)
    return {"calls": int(a.size), "ok": hits_seen[0], "errors": errors,
            "rps": a.size / duration, "p50_ms": float(np.percentile(a, 50) * 1e3),
            "p90_ms": float(np.percentile(a, 90) * 1e3),
            "p99_ms": float(np.percentile(a, 99) * 1e3),
            "max_ms": float(a.max() * 1e3), "client_cpu_s": time.process_time()}


def start_server(home: Path, token_file: Path, workers: int) -> tuple[subprocess.Popen, int]:
    cmd = [sys.executable, "-c", "from lineage.cli import main; raise SystemExit(main())",
           "serve", "--home", str(home), "--address", "127.0.0.1:0",
           "--token-file", str(token_file), "--workers", str(workers), "--grace", "1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    assert proc.stderr is not None
    deadline = time.time() + 300
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        m = re.search(r"listening on .*:(\d+)", line)
        if m:
            return proc, int(m.group(1))
    proc.kill()
    raise SystemExit(f"server did not start: {proc.stderr.read()}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--workers", type=int, default=4, help="server engine threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--home", type=Path, default=None, help="reuse a bulk-loaded home")
    ap.add_argument("--out", type=Path, default=RESULTS / "rpc_load.json")
    ap.add_argument("--profile", type=Path, default=None,
                    help="also record the server with py-spy (collapsed stacks) to this file")
    ap.add_argument("--client", default=None, help=argparse.SUPPRESS)  # internal: load process
    a = ap.parse_args(argv)
    if a.client:
        res = asyncio.run(_load(a.client, a.clients, a.warmup, a.duration, a.n, a.seed))
        print(json.dumps(res))
        return 0
    tmp = None
    home = a.home
    if home is None or not (home / "index.faiss").exists():
        tmp = Path(tempfile.mkdtemp(prefix="lineage-rpc-bench-"))
        home = home or tmp / "home"
        home.mkdir(parents=True, exist_ok=True)
        t = time.time()
        bulk_home(home, a.n, a.seed)
        print(f"bulk-loaded {a.n:,} signatures in {time.time() - t:.1f} s", flush=True)
    token_file = home / "tokens"
    token_file.write_text(TOKEN + "\n")
    t = time.time()
    proc, port = start_server(home, token_file, a.workers)
    print(f"server pid {proc.pid} on 127.0.0.1:{port} (started in {time.time() - t:.1f} s)",
          flush=True)
    try:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--client", f"127.0.0.1:{port}",
               "--clients", str(a.clients), "--duration", str(a.duration), "--warmup",
               str(a.warmup), "--n", str(a.n), "--seed", str(a.seed)]
        cpu0 = _cpu(proc.pid)
        spy = None
        if a.profile:
            spy = subprocess.Popen([shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(proc.pid), "--format", "raw",
                                    "--rate", "250", "--nonblocking", "--duration",
                                    str(int(a.warmup + a.duration)), "--output", str(a.profile)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if spy is not None:
            spy.wait(60)
        server_cpu = _cpu(proc.pid) - cpu0
        if out.returncode != 0:
            raise SystemExit(f"load process failed: {out.stderr}")
        res = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    err = sum(res["errors"].values())
    res.update({"benchmark": "rpc_load", "n": a.n, "clients": a.clients,
                "duration_s": a.duration, "warmup_s": a.warmup, "server_workers": a.workers,
                "server_cpu_s": server_cpu, "error_count": err,
                "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                            "load_avg_start": os.getloadavg()},
                "targets": {"rps": 1000, "p99_ms": 50, "errors": 0}})
    print(f"\nSearchSignatures load: n={a.n:,} signatures, {a.clients} callers, "
          f"{a.duration:.0f} s (+{a.warmup:.0f} s warm-up), server + client on "
          f"{os.cpu_count()} cores")
    print("| metric | value | target |\n| --- | --- | --- |")
    for k, tgt in (("rps", ">= 1000"), ("p50_ms", ""), ("p99_ms", "<= 50"), ("max_ms", ""),
                   ("error_count", "0"), ("calls", ""), ("server_cpu_s", ""),
                   ("client_cpu_s", "")):
        v = res[k]
        print(f"| {k} | {v:.4g} | {tgt} |" if isinstance(v, float) else f"| {k} | {v} | {tgt} |")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1))
    print(f"\nwrote {a.out}")
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _cpu(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError):
        return float("nan")


if __name__ == "__main__":
    raise SystemExit(main())
