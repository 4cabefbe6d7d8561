"""A real `lineage serve` process for hostile-client tests (fuzzing, soak), on 127.0.0.1.

    python tests/hostile_grpc_server.py HOME PORT_FILE [--synthetic N] [--token-file F]

Runs the real engine (`lineage.engine.Lineage`) on HOME. With `--synthetic N` it first adds N
synthetic models (random fingerprints, no weights) straight into the store, so that calls
that read models, pages and the index do real work without loading any model. Writes the
bound port to PORT_FILE, serves until SIGTERM, and exits 0 after draining.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def add_synthetic(home: Path, n: int, seed: int = 0) -> None:
    import numpy as np

    from lineage.engine import Lineage

    eng = Lineage(home)
    rng = np.random.default_rng(seed)
    P, B = len(eng.suite.probes), len(eng.suite.buckets) + 1
    have = {r.name for r in eng.list_models(limit=10_000)}
    for i in range(n):
        name = f"syn{i}"
        if name in have:
            continue
        d = rng.dirichlet(np.ones(B), size=P)
        eng.store.add_model(name=name, role="teacher" if i % 2 == 0 else "reference",
                            uri=f"/synthetic/{name}", identity={"kind": "synthetic"},
                            suite_name=eng.suite.name, suite_hash=eng.suite.hash, dist=d,
                            samples=[["x"] * 2 for _ in range(P)], score_rows={})
    eng.close()
    Lineage(home).close()  # reconciles the index from the store


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("home")
    ap.add_argument("port_file")
    ap.add_argument("--synthetic", type=int, default=0)
    ap.add_argument("--token-file", default=None)
    ap.add_argument("--workers", type=int, default=4)
    a = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    home = Path(a.home)
    if a.synthetic:
        add_synthetic(home, a.synthetic)
    from server.app import ServerConfig, serve

    def started(port: int) -> None:
        tmp = Path(a.port_file + ".tmp")
        tmp.write_text(str(port))
        tmp.replace(a.port_file)

    cfg = ServerConfig(address="127.0.0.1:0", token_file=a.token_file, drain_delay=0.0,
                       grace=5.0, workers=a.workers)
    return asyncio.run(serve(home, cfg, on_started=started))


if __name__ == "__main__":
    sys.exit(main())
