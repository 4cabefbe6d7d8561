"""How often a 64-query scan's verdicts change with the scan's sampling seed (session 13).

    PYTHONPATH=. python benchmarks/research/seed_verdicts.py ZOO HOME [SEEDS=20]

`tests/test_remote_e2e.py::test_http_verdicts_match_local` compares a local scan with one over
HTTP, whose samples are seeded from the URI (its loopback port differs run to run). This scans
the test's two suspects (the first logit-KD student and the first independent of the small
zoo ZOO) in logprobs and text access at 64 queries under SEEDS scan seeds (the seed's name
salted, as another URI would) and counts the distinct verdict sets. HOME is registered with
ZOO's teachers and references if it has none.
"""
import collections
import json
import sys
from pathlib import Path

import lineage.engine as E
from lineage.engine import Lineage

zoo, home = Path(sys.argv[1]), Path(sys.argv[2])
seeds = int(sys.argv[3]) if len(sys.argv) > 3 else 20
man = json.loads((zoo / "manifest.json").read_text())["models"]
eng = Lineage(home)
if not eng.list_models():
    for m in man:
        if m["role"] in ("teacher", "reference"):
            eng.register(m["name"], str(zoo / m["path"]), m["role"])
orig, salt = E._seed_for, {"v": ""}
E._seed_for = lambda name, seed: orig(name + salt["v"] if name.startswith("scan:") else name,
                                      seed)
for recipe in ("logit_kd", "independent"):
    m = next(x for x in man if x["role"] == "suspect"
             and (x["recipe"] == recipe or (recipe == "independent" and not x.get("parent"))))
    for access in ("logprobs", "text"):
        c: collections.Counter = collections.Counter()
        for s in range(seeds):
            salt["v"] = f":{s}" if s else ""
            r = eng.scan(str(zoo / m["path"]), access=access, max_queries=64)
            c[tuple(sorted((x.teacher, x.verdict) for x in r.candidates))] += 1
        print(m["name"], access, dict(c), flush=True)
