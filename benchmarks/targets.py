"""Issue 4's targets table from saved detection runs (`benchmarks/detection.py` JSON).

    python benchmarks/targets.py RUN.json [RUN.json ...] [--out FILE.json]

Each target is checked on every run it applies to (its access mode and query budget), with a
95% Clopper-Pearson interval beside the figure, and marked `met` or `short` (by how much).
TPR is the TPR at 1% FPR over all negative pairs, ranked by the evidence p (see
detection.py); "TPR >= 0.90" for fine-tuned students is read at the same FPR. A figure from a
run with another budget than the target's is not printed against it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# (case, recipe row or None, metric, target, applies(run) -> bool)
TARGETS = [
    ("sequence-KD, other tokenizer, text, <= 100 queries", "seq_kd_xtok", "tpr", 0.95,
     lambda r: r["access"] == "text" and (r["max_queries"] or 10**9) <= 100),
    ("sequence-KD, other tokenizer, logprobs, <= 32 queries", "seq_kd_xtok", "tpr", 0.95,
     lambda r: r["access"] == "logprobs" and (r["max_queries"] or 10**9) <= 32),
    ("teacher text at 5% of the data", "mix05", "tpr", 0.80, lambda r: True),
    ("sequence-KD, then fine-tuned", "seq_kd_ft", "tpr", 0.90, lambda r: True),
    ("top-1 attribution, positives", "all", "top1", 0.98, lambda r: True),
    ("calibration: FPR at alpha <= alpha", None, "fpr", None, lambda r: True),
]


def _label(r: dict) -> str:
    q = r["max_queries"] or "default"
    stop = "" if r.get("early_stop", True) else ", no early stop"
    echo = "" if not r.get("echo") else (
        f" + echo {r['echo_texts']}" if r.get("echo_texts") else " + echo")
    c = r.get("contrast")
    contrast = "" if not c else ", contrast " + ("all" if c is True else "+".join(c))
    return f"{r['access']}{echo}, queries {q}, alpha {r['alpha']}{stop}{contrast}"


def check(runs: list[dict]) -> list[dict]:
    out = []
    for case, recipe, metric, target, applies in TARGETS:
        measured = False
        for r in runs:
            if not applies(r) or (recipe is not None
                                  and not any(x["recipe"] == recipe for x in r["rows"])):
                continue
            measured = True
            if metric == "fpr":
                k = round(r["fpr_at_alpha"] * r["negative_pairs"])
                value, ci, goal = r["fpr_at_alpha"], r["fpr_at_alpha_ci"], r["alpha"]
                met = value <= goal
                extra = f"{k}/{r['negative_pairs']} null pairs"
            else:
                row = next(x for x in r["rows"] if x["recipe"] == recipe)
                key = "tpr_at_fpr_0.01" if metric == "tpr" else "top1"
                value, ci, goal = row[key], row[f"{key}_ci"], target
                met = value >= goal
                extra = f"n={row['positives']}, {row['mean_queries']:.0f} queries"
            out.append({"case": case, "run": _label(r), "metric": metric, "value": value,
                        "ci": ci, "target": goal, "met": met,
                        "short_by": 0.0 if met else abs(goal - value), "detail": extra})
        if not measured:  # not met either: say so rather than leave the row out
            out.append({"case": case, "run": None, "metric": metric, "value": None,
                        "ci": None, "target": target, "met": False, "short_by": None,
                        "detail": "no run given measures this"})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    runs = [json.loads(p.read_text()) for p in a.runs]
    rows = check(runs)
    print(f"{'case':<54}{'run':<64}{'value':>6} {'95% CI':<12}{'target':>8}  status")
    for x in rows:
        if x["run"] is None:
            print(f"{x['case']:<54}{'-':<64}{'-':>6} {'':<12}{'':>8}  not measured")
            continue
        goal = f"<={x['target']}" if x["metric"] == "fpr" else f">={x['target']}"
        status = "met" if x["met"] else f"short by {x['short_by']:.2f}"
        print(f"{x['case']:<54}{x['run']:<64}{x['value']:>6.2f} "
              f"[{x['ci'][0]:.2f},{x['ci'][1]:.2f}]{goal:>8}  {status}  ({x['detail']})")
    if a.out:
        a.out.write_text(json.dumps({"runs": [str(p) for p in a.runs], "targets": rows},
                                    indent=1))
        print(f"\nwrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
