"""Compare two `benchmarks/detection.py` JSON files scan by scan (same zoo, two code versions).

    python benchmarks/compare_detection.py NEW.json OLD.json

Prints how many suspects keep their top-1 teacher and query count, how many
(suspect, teacher) verdicts agree, and the largest differences in raw p-value, similarity
and closeness. Used to check that a change to the signature computation leaves detection
as it was (session 7: the tree pass against the KV-cache path on one full zoo).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__)
        return 2
    a, b = (json.loads(Path(p).read_text()) for p in argv)
    ma = {s["suspect"]: s for s in a["scans"]}
    mb = {s["suspect"]: s for s in b["scans"]}
    common = sorted(set(ma) & set(mb))
    top = sum(ma[k]["top1"] == mb[k]["top1"] for k in common)
    queries = sum(ma[k]["queries"] == mb[k]["queries"] for k in common)
    pairs = same = 0
    dp = dsim = dclose = 0.0
    worst = None
    for k in common:
        ca = {c["teacher"]: c for c in ma[k]["candidates"]}
        cb = {c["teacher"]: c for c in mb[k]["candidates"]}
        for t in sorted(set(ca) & set(cb)):
            pairs += 1
            same += ca[t]["verdict"] == cb[t]["verdict"]
            d = abs(ca[t]["raw_p_value"] - cb[t]["raw_p_value"])
            if d >= dp:
                dp, worst = d, (k, t)
            dsim = max(dsim, abs(ca[t]["similarity"] - cb[t]["similarity"]))
            dclose = max(dclose, abs(ca[t]["closeness"] - cb[t]["closeness"]))
    print(f"suspects in both: {len(common)} (only in one: {len(set(ma) ^ set(mb))})")
    print(f"same top-1 teacher: {top}/{len(common)}; same queries: {queries}/{len(common)}")
    print(f"same verdict: {same}/{pairs} suspect-teacher pairs")
    print(f"max |raw p difference|: {dp:.3g} {worst or ''}")
    print(f"max |similarity difference|: {dsim:.3g}; max |closeness difference|: {dclose:.3g}")
    for key in ("core_auc_logit_and_seq_kd_vs_independents", "fpr_at_alpha"):
        print(f"{key}: {a.get(key)} vs {b.get(key)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
