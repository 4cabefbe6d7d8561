"""How far apart the zoo's students and negatives are on a signal no scan can exceed in its
kind: each suspect's bits per character on its teacher's *held-out* samples.

    python benchmarks/ceiling.py --zoo DIR [--zoo DIR2 ...] [--out FILE.json]

The zoo build scores every model on each teacher's held-out samples (`eval.by_teacher` in the
manifest: `eval_rows` rows of 128 teacher tokens, far more text than a scan reads, scored by
the suspect's own weights and tokenizer). For every (suspect, teacher) pair this script
standardises the suspect's bpc against the references' bpc on the same text (z = (reference
mean - suspect) / reference sd: higher = closer to the teacher), then reports, per recipe and
per teacher, the TPR at 1% FPR over all negative pairs with Clopper-Pearson intervals, the
AUC, and each positive's z beside the largest negative z's. Several zoos (built with other
seeds) are pooled: each pair is standardised against its own zoo's references.

It needs the suspect's likelihoods of text it did not write (`full` access), and it grades
with the manifest. It is not a detector; it measures whether the students carry their
teacher's signal at all, which bounds what likelihood statistics on a scan's few hundred
short samples can find. A second form subtracts each model's bpc on real held-out text first
(its capability), which separates sequence-KD students better and confuses students trained
on any teacher's text with students of this one. A third form subtracts the model's bpc on
T's held-out text from its mean bpc on the *other* teachers' held-out text: that cancels
both the model's capability and what training on any teacher's text teaches, and keeps what
is specific to T (session 10; the teacher_text statistic is its scan-time form).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from lineage import stats

def _minus_other_teachers(e: dict, t: str) -> float:
    """The model's bpc on the other teachers' held-out text (mean) minus on T's."""
    other = [v for u, v in e["by_teacher"].items() if u != t]
    return sum(other) / len(other) - e["by_teacher"][t]


FORMS = {
    "teacher_text_bpc": lambda e, t: -e["by_teacher"][t],
    "minus_real_bpc": lambda e, t: e["real_bpc"] - e["by_teacher"][t],
    "minus_other_teachers": _minus_other_teachers,
}


def ceiling(manifests: list[dict]) -> dict:
    first = manifests[0]["models"]
    teachers = [m["name"] for m in first if m["role"] == "teacher"]
    out: dict = {"teachers": teachers,
                 "n_references": sum(m["role"] == "reference" for m in first), "forms": {}}
    for form, f in FORMS.items():
        pairs = []  # (suspect, recipe, teacher, positive, z)
        for k, manifest in enumerate(manifests):
            models = manifest["models"]
            refs = [m for m in models if m["role"] == "reference"]
            tag = f"{k}:" if len(manifests) > 1 else ""
            for t in teachers:
                r = np.asarray([f(m["eval"], t) for m in refs])
                mu, sd = float(r.mean()), float(r.std(ddof=1))
                for m in models:
                    if m["role"] == "suspect":
                        pairs.append((tag + m["name"], m["recipe"], t, m.get("parent") == t,
                                      (f(m["eval"], t) - mu) / sd))
        neg = [z for (*_, p, z) in pairs if not p]

        def row(name: str, sel, pairs=pairs, neg=neg) -> dict:
            pos = [(s, t, z) for (s, rec, t, p, z) in pairs if p and sel(rec, t)]
            k, n = stats.tpr_at_fpr_count([z for *_, z in pos], neg, 0.01)
            return {"name": name, "positives": n, "tpr_at_fpr_0.01": k / n if n else None,
                    "tpr_at_fpr_0.01_ci": stats.clopper_pearson(k, n),
                    "auc": stats.auc([z for *_, z in pos], neg),
                    "z": {f"{s}/{t}": round(z, 2) for s, t, z in pos}}

        recipes = sorted({rec for (_, rec, _, p, _) in pairs if p})
        top = sorted(((z, s, t) for (s, _, t, p, z) in pairs if not p), reverse=True)[:3]
        out["forms"][form] = {
            "rows": [row(r, lambda x, _t, r=r: x == r) for r in recipes]
            + [row("all", lambda x, _t: True)],
            "by_teacher": [row(t, lambda _x, tt, t=t: tt == t) for t in teachers],
            "top_negatives": [{"pair": f"{s}/{t}", "z": round(z, 2)} for z, s, t in top],
            "negative_pairs": len(neg),
        }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--zoo", required=True, type=Path, action="append",
                    help="a built zoo; give several to pool them")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    res = ceiling([json.loads((z / "manifest.json").read_text()) for z in a.zoo])
    res["zoo"] = " + ".join(str(z) for z in a.zoo)
    for form, v in res["forms"].items():
        print(f"\n{form}: z against {res['n_references']} references, "
              f"{v['negative_pairs']} negative pairs; top negatives "
              + ", ".join(f"{x['pair']} {x['z']:.1f}" for x in v["top_negatives"]))
        print(f"{'':<13}{'n':>3}{'AUC':>7}{'TPR@1%FPR':>11} {'95% CI':<12} positives' z")
        for r in v["rows"] + v["by_teacher"]:
            ci = r["tpr_at_fpr_0.01_ci"]
            zs = " ".join(f"{k.split('/')[0]}:{z:.1f}" for k, z in r["z"].items()) \
                if r["positives"] <= 7 else ""  # per-positive z for the small rows
            print(f"{r['name']:<13}{r['positives']:>3}{r['auc']:>7.3f}"
                  f"{r['tpr_at_fpr_0.01']:>11.2f} [{ci[0]:.2f},{ci[1]:.2f}] {zs}")
    out = a.out or Path(__file__).parent / "results" / "ceiling.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
