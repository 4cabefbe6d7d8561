"""The teacher contrast with two teachers, on the small zoo (session 14).

    PYTHONPATH=. python benchmarks/research/contrast_small_zoo.py SMALLZOO HOME

Registers the small zoo's two teachers and seven references into HOME (if not yet there) and
scans each suspect in full and logprobs access with the divergence plain and as a teacher
contrast. The engine contrasts only with three teachers or more
(`lineage.verdict.CONTRAST_MIN_TEACHERS`); this script lowers that to two, which is how the
default first ran. It printed the figures behind that limit: the students' divergence p
0.0006 -> 0.0051 (logit_kd, which fell from `derived` to `inconclusive`) and
0.0007 -> 0.0035 (seq_kd).
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import lineage.engine as E
from lineage import verdict as V
from lineage.engine import Lineage, Settings


def main(zoo: Path, home: Path) -> None:
    E.CONTRAST_MIN_TEACHERS = 2
    E.contrast = functools.partial(V.contrast, min_teachers=2)  # type: ignore[assignment]
    models = json.loads((zoo / "manifest.json").read_text())["models"]
    e = Lineage(home)
    have = {r.name for r in e.list_models(limit=1000)}
    for m in models:
        if m["role"] in ("teacher", "reference") and m["name"] not in have:
            e.register(m["name"], str(zoo / m["path"]), m["role"])
    e.close()
    for c in [(), ("divergence",)]:
        e = Lineage(home, settings=Settings(contrast=c))
        for m in [m for m in models if m["role"] == "suspect"]:
            for access in ("full", "logprobs"):
                r = e.scan(str(zoo / m["path"]), access=access)
                print(f"contrast={'+'.join(c) or 'none'} {m['name']} {access} q={r.queries} "
                      + " ".join(f"{k.teacher}:{k.verdict}:p={k.p_value:.4f}:"
                                 + ",".join(f"{a}={b:.4f}" for a, b in k.p_parts.items())
                                 for k in r.candidates), flush=True)
        e.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
