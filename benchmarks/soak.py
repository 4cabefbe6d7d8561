"""Soak test: a real `lineage serve` on loopback under many concurrent clients for a while.

    python benchmarks/soak.py --zoo DIR [--minutes 30] [--clients 64] [--scan-share 0.1]
                              [--home DIR] [--out FILE.json]

Registers the zoo's teachers and references into a fresh home (or reuses `--home` if it already
has them), starts `lineage serve` on 127.0.0.1 with a token file, and runs `--clients` client
threads, each with its own channel, in a closed loop for `--minutes`. Each call is a scan of one
of the zoo's suspects (text access, 16 queries: the server's model cache keeps them loaded after
the first) with probability `--scan-share`, else a signature search (a random signature, top 5).

Reports: calls and errors by kind (any status but OK is an error), latency percentiles, and the
server's resident memory (VmRSS, sampled every 5 s): the growth from the end of warm-up (the
first 20% of the run, at least one minute when the run is long enough) to the end. Target:
0 errors and growth < 10%. Prints a table and writes JSON. Not part of CI.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TOKEN = "soak-" + os.urandom(8).hex()


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _register(home: Path, zoo: Path) -> None:
    import torch

    from lineage.engine import Lineage

    torch.set_num_threads(1)

    manifest = json.loads((zoo / "manifest.json").read_text())
    eng = Lineage(home)
    have = {r.name for r in eng.list_models(limit=10_000)}
    for m in manifest["models"]:
        if m["role"] in ("teacher", "reference") and m["name"] not in have:
            print(f"  registering {m['name']}", file=sys.stderr, flush=True)
            eng.register(m["name"], str(zoo / m["path"]), m["role"])
    eng.close()


def _start_server(home: Path, token_file: Path, log: Path) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
           "TOKENIZERS_PARALLELISM": "false"}
    p = subprocess.Popen([sys.executable, "-m", "lineage.cli", "--home", str(home), "serve",
                          "--address", "127.0.0.1:0", "--token-file", str(token_file),
                          "--grace", "10"], cwd=ROOT, env=env,
                         stdout=subprocess.DEVNULL, stderr=open(log, "wb"))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        m = re.search(r"listening on ([\d.]+:\d+)", log.read_text(errors="replace"))
        if m:
            return p, m.group(1)
        if p.poll() is not None:
            raise SystemExit(f"server exited: {log.read_text()[-2000:]}")
        time.sleep(0.2)
    raise SystemExit("server did not start")


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--zoo", required=True, type=Path)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--scan-share", type=float, default=0.1)
    ap.add_argument("--home", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    import grpc
    import numpy as np

    from lineage._proto.lineage.v1 import lineage_pb2 as pb
    from lineage._proto.lineage.v1 import lineage_pb2_grpc as pb_grpc

    work = Path(tempfile.mkdtemp(prefix="lineage-soak-"))
    home = a.home or work / "home"
    t0 = time.monotonic()
    _register(home, a.zoo)
    setup_s = time.monotonic() - t0
    manifest = json.loads((a.zoo / "manifest.json").read_text())
    suspects = [str(a.zoo / m["path"]) for m in manifest["models"] if m["role"] == "suspect"]
    token_file = work / "tokens"
    token_file.write_text(f"{TOKEN} admin\n")
    log = work / "server.log"
    proc, address = _start_server(home, token_file, log)
    print(f"server {address} pid {proc.pid}; setup {setup_s:.0f}s; {a.clients} clients for "
          f"{a.minutes:g} min", file=sys.stderr, flush=True)

    from lineage.engine import Lineage
    eng = Lineage(home)
    dim = eng.index.dim
    eng.close()

    stop = threading.Event()
    lock = threading.Lock()
    lat: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, list[str]] = defaultdict(list)
    md = (("authorization", f"Bearer {TOKEN}"),)

    def client(i: int) -> None:
        rng = random.Random(a.seed * 1000 + i)
        stub = pb_grpc.LineageServiceStub(grpc.insecure_channel(address))
        while not stop.is_set():
            kind = "scan" if rng.random() < a.scan_share else "search"
            s = time.monotonic()
            try:
                if kind == "scan":
                    stub.CreateScan(pb.CreateScanRequest(
                        suspect=rng.choice(suspects), access=pb.ACCESS_MODE_TEXT,
                        max_queries=16), metadata=md, timeout=900)
                else:
                    v = np.random.default_rng(rng.randrange(1 << 30)).standard_normal(dim)
                    stub.SearchSignatures(pb.SearchSignaturesRequest(
                        signature=pb.Signature(values=v.astype(np.float32).tolist()),
                        top_k=5), metadata=md, timeout=120)
                with lock:
                    lat[kind].append(time.monotonic() - s)
            except grpc.RpcError as e:
                with lock:
                    errors[kind].append(f"{e.code().name}: {(e.details() or '')[:120]}")

    rss: list[tuple[float, float]] = []
    threads = [threading.Thread(target=client, args=(i,), daemon=True)
               for i in range(a.clients)]
    start = time.monotonic()
    for t in threads:
        t.start()
    end = start + a.minutes * 60
    while time.monotonic() < end:
        rss.append((time.monotonic() - start, _rss_mb(proc.pid)))
        if proc.poll() is not None:
            break
        time.sleep(min(5.0, max(0.0, end - time.monotonic())))
    rss.append((time.monotonic() - start, _rss_mb(proc.pid)) if proc.poll() is None
               else (time.monotonic() - start, float("nan")))
    stop.set()
    for t in threads:
        t.join(timeout=900)
    wall = time.monotonic() - start
    alive = proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()

    warm = max(0.2 * wall, min(60.0, 0.5 * wall))
    after = [r for t, r in rss if t >= warm]
    base = after[0] if after else float("nan")
    last = rss[-1][1]
    growth = (last - base) / base if base == base and base > 0 else float("nan")
    n_err = sum(len(v) for v in errors.values())
    server_log = log.read_text(errors="replace")
    result = {
        "minutes": a.minutes, "clients": a.clients, "scan_share": a.scan_share,
        "wall_s": round(wall, 1), "setup_s": round(setup_s, 1), "server_alive": alive,
        "calls": {k: len(v) for k, v in lat.items()},
        "errors": {k: len(v) for k, v in errors.items()}, "error_samples":
            {k: v[:5] for k, v in errors.items()},
        "latency_s": {k: {"p50": _pct(v, 0.5), "p95": _pct(v, 0.95), "p99": _pct(v, 0.99),
                          "max": max(v)} for k, v in lat.items() if v},
        "rss_mb": {"warmup_end_s": round(warm, 1), "at_warmup_end": base, "end": last,
                   "peak": max(r for _, r in rss if r == r), "growth": growth},
        "rss_samples": rss,
        "server_log_tracebacks": server_log.count("Traceback"),
        "machine": {"cpus": os.cpu_count(), "load_avg_end": os.getloadavg()},
    }
    print(f"\nsoak: {a.clients} clients, {wall / 60:.1f} min on loopback "
          f"(load average at end {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    print(f"{'kind':<8} {'calls':>8} {'errors':>7} {'p50 s':>8} {'p95 s':>8} {'p99 s':>8}")
    for k in sorted(set(lat) | set(errors)):
        L = result["latency_s"].get(k, {})
        print(f"{k:<8} {len(lat[k]):>8} {len(errors[k]):>7} {L.get('p50', float('nan')):>8.3f} "
              f"{L.get('p95', float('nan')):>8.3f} {L.get('p99', float('nan')):>8.3f}")
    print(f"server RSS: {base:.0f} MB after warm-up ({warm:.0f} s) -> {last:.0f} MB at the end "
          f"({100 * growth:+.1f}%), peak {result['rss_mb']['peak']:.0f} MB; errors {n_err}; "
          f"server alive {alive}; tracebacks in server log {result['server_log_tracebacks']}")
    out = a.out or ROOT / "benchmarks" / "results" / f"soak-{a.minutes:g}min-{a.clients}c.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"JSON: {out}")
    ok = n_err == 0 and alive and growth < 0.10
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
