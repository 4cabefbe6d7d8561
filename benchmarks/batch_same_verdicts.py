"""Same verdicts: a batch of a zoo's suspects through Ray against scanning them one by one.

    python benchmarks/batch_same_verdicts.py --zoo DIR --home HOME --single RESULTS.json
        [--ray local] [--ray-cpus 2]

HOME already has the zoo's teachers and references registered (e.g. by
`benchmarks/detection.py --home HOME`), and RESULTS.json is that benchmark's output in full
access (its `scans` are the one-by-one verdicts). This writes a manifest of every suspect at
the same paths (scans are seeded by the model URI, so the same suspect is asked the same
questions), runs `lineage batch run MANIFEST --ray ...` in a copy of HOME, and compares every
(suspect, teacher) verdict and p-value. Prints a table, writes JSON, exits 1 on a mismatch.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--zoo", required=True, type=Path)
    ap.add_argument("--home", required=True, type=Path)
    ap.add_argument("--single", required=True, type=Path)
    ap.add_argument("--ray", default="local")
    ap.add_argument("--ray-cpus", type=int, default=2)
    ap.add_argument("--out", type=Path,
                    default=Path(__file__).parent / "results" / "batch-same-verdicts.json")
    a = ap.parse_args()
    single = json.loads(a.single.read_text())
    if single["access"] != "full" or single.get("max_queries") is not None:
        raise SystemExit("--single must be a full-access run with the default budget")
    models = json.loads((a.zoo / "manifest.json").read_text())["models"]
    sus = [m for m in models if m["role"] == "suspect"]
    work = Path(tempfile.mkdtemp(prefix="lineage-batch-check-"))
    home = work / "home"
    home.mkdir()
    for f in a.home.iterdir():  # a consistent copy: SQLite's backup API for the database
        if f.name == "lineage.db":
            src, dst = sqlite3.connect(f), sqlite3.connect(home / "lineage.db")
            src.backup(dst)
            src.close()
            dst.close()
        elif f.is_file() and not f.name.startswith("lineage.db-"):
            shutil.copy2(f, home / f.name)
    manifest = work / "batch.json"
    manifest.write_text(json.dumps({"alpha": single["alpha"], "defaults": {"access": "full"},
                                    "suspects": [{"name": m["name"],
                                                  "model": str(a.zoo / m["path"])}
                                                 for m in sus]}))
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "lineage.cli", "--home", str(home), "batch", "run",
                        str(manifest), "--ray", a.ray, "--ray-cpus", str(a.ray_cpus), "--json"],
                       capture_output=True, text=True, env=dict(os.environ))
    took = time.monotonic() - t0
    if p.returncode != 0:
        print(p.stderr[-3000:], file=sys.stderr)
        return 1
    job = json.loads(p.stdout)
    one = {(s["suspect"], c["teacher"]): c for s in single["scans"] for c in s["candidates"]}
    rows, mismatch = [], 0
    for item in job["items"]:
        for c in item.get("candidates", []):  # p_value: Holm-adjusted, as the scan reports
            ref = one[(item["name"], c["teacher"])]
            same = c["verdict"] == ref["verdict"] and \
                abs(c["p_value"] - ref["p_value"]) <= 1e-6 * max(1e-3, ref["p_value"])
            mismatch += not same
            rows.append({"suspect": item["name"], "teacher": c["teacher"],
                         "batch": c["verdict"], "single": ref["verdict"],
                         "batch_p": c["p_value"], "single_p": ref["p_value"], "same": same})
    res = {"zoo": str(a.zoo), "suspects": len(sus), "pairs": len(rows),
           "mismatches": mismatch, "ray": a.ray, "seconds": took, "rows": rows}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1))
    print(f"{'suspect':<22}{'teacher':<8}{'batch':<14}{'single':<14}{'same':>5}")
    for r in rows:
        print(f"{r['suspect']:<22}{r['teacher']:<8}{r['batch']:<14}{r['single']:<14}"
              f"{'yes' if r['same'] else 'NO':>5}")
    print(f"\n{len(rows)} pairs over {len(sus)} suspects through Ray ({a.ray}) in {took:.0f}s: "
          f"{mismatch} mismatches\nwrote {a.out}")
    return 0 if mismatch == 0 and len(rows) == 3 * len(sus) else 1


if __name__ == "__main__":
    sys.exit(main())
