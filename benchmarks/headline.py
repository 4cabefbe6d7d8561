"""One markdown row per saved detection run: the figures the README's results tables quote.

    python benchmarks/headline.py RUN.json [RUN.json ...]

Columns: the run's setting (access, budget, stopping, echo, teacher contrast), mean queries,
TPR at 1% FPR over all pairs with its Clopper-Pearson 95% interval, AUC, the TPR of the
cross-tokenizer, 5% and fine-tuned students, top-1 attribution, and the null pairs called
`derived` at the run's alpha. Pooled runs (`detection.py --regrade A.json B.json --out`)
count every zoo's pairs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RECIPES = ("seq_kd_xtok", "mix05", "seq_kd_ft")


def _setting(r: dict) -> str:
    q = r.get("max_queries")
    parts = [r["access"] + (" + echo" if r.get("echo") else "")]
    if q:
        parts.append(f"≤ {q} queries")
    if not r.get("early_stop", True):
        parts.append("fixed")
    c = r.get("contrast")
    if c:
        parts.append("contrast " + ("all" if c is True else "+".join(c)))
    return ", ".join(parts)


def row(path: Path) -> str:
    r = json.loads(path.read_text())
    rows = {x["recipe"]: x for x in r["rows"]}
    a = rows["all"]
    lo, hi = a["tpr_at_fpr_0.01_ci"]
    rec = " | ".join(f"{rows[k]['tpr_at_fpr_0.01']:.2f}" if k in rows else "-" for k in RECIPES)
    nulls = round(r["fpr_at_alpha"] * r["negative_pairs"])
    return (f"| {_setting(r)} | {a['mean_queries']:.0f} | {a['tpr_at_fpr_0.01']:.2f} "
            f"[{lo:.2f}, {hi:.2f}] | {a['auc']:.3f} | {rec} | {a['top1']:.2f} | "
            f"{nulls}/{r['negative_pairs']} at α = {r['alpha']} |")


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    print("| scan | mean queries | TPR at 1% FPR | AUC | cross-tokenizer | 5% text | "
          "fine-tuned | top-1 | null pairs derived |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for p in argv:
        print(row(Path(p)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
