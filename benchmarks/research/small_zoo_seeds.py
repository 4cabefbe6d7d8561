"""How stable are the small zoo's verdicts across sampling seeds? (session 8)

    PYTHONPATH=. python benchmarks/research/small_zoo_seeds.py ZOO HOME SEEDS [--register-seed S]

Registers ZOO's teachers and references in HOME (skipped when already there; registration
samples with seed S, default 0), then scans every suspect of ZOO once per scan seed
0..SEEDS-1 (`Settings.seed`: it changes the suspect's samples, as another run on another
machine would), full access with the default early stopping, as `lineage scan` does, and
prints each verdict and p-value, then the count of `derived` verdicts per suspect.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from lineage.engine import Lineage, Settings


def main(zoo: Path, home: Path, seeds: int, reg_seed: int) -> None:
    man = json.loads((zoo / "manifest.json").read_text())["models"]
    eng = Lineage(home, settings=Settings(seed=reg_seed))
    have = {m.name for m in eng.list_models(limit=10_000)}
    for m in man:
        if m["role"] in ("teacher", "reference") and m["name"] not in have:
            eng.register(m["name"], str(zoo / m["path"]), m["role"])
    eng.close()
    counts: dict[str, int] = {}
    for s in range(seeds):
        e = Lineage(home, settings=Settings(seed=s))
        for m in (x for x in man if x["role"] == "suspect"):
            r = e.scan(str(zoo / m["path"]), access="full")
            top = r.candidates[0]
            derived = [c.teacher for c in r.candidates if c.verdict == "derived"]
            counts[m["name"]] = counts.get(m["name"], 0) + (m.get("parent") in derived)
            print(f"seed {s} {m['name']:12s} parent={m.get('parent')} top={top.teacher} "
                  f"{top.verdict} p={top.p_value:.3g} raw={top.raw_p_value:.3g} "
                  f"queries={r.queries} derived={derived}", flush=True)
        e.close()
    print("derived for the true parent:", counts)


if __name__ == "__main__":
    rs = int(sys.argv[sys.argv.index("--register-seed") + 1]) if "--register-seed" in sys.argv \
        else 0
    main(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), rs)
