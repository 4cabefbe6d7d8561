"""teacher_text on each teacher's most idiosyncratic samples (session 11).

    PYTHONPATH=. python benchmarks/research/own_text_select.py OWN.npz [FRACTIONS=1,0.5,0.25]

OWN.npz from `own_text.py sample`. A sample x of teacher T is idiosyncratic when the other
teachers find it much less likely than T does: w(x) = [ll_T(x) - mean_U ll_U(x)] / chars,
which uses the teachers only (no reference, so the references' null is not selected on).
The statistic keeps each teacher's top FRACTION of samples by w (its own and the control
teachers', each chosen the same way) and is otherwise teacher_text:
bpc_X(controls' kept text) - bpc_X(T's kept text), standardised on the references. Prints
TPR at 1% FPR per recipe. Grades with the manifest; not a detector.
"""
import sys

import numpy as np

from lineage import stats

d = dict(np.load(sys.argv[1]))
FR = [float(x) for x in (sys.argv[2] if len(sys.argv) > 2 else "1,0.5,0.25").split(",")]
names = list(d["names"]); roles = list(d["roles"]); gens = list(d["gens"])
parents = list(d["parents"]); recipes = list(d["recipes"])
LL, CH = d["LL"], d["chars"]  # LL[scorer, gen, P, n], CH[gen, P, n]
T = [i for i, r in enumerate(roles) if r == "teacher"]
R = [i for i, r in enumerate(roles) if r == "reference"]
X = [i for i, r in enumerate(roles) if r == "suspect"]
g_of = {i: gens.index(names[i]) for i in T + R}

for mode in ("global", "per_probe", "weighted"):
    for f in FR:
        keep = {}
        for t in T:
            g = g_of[t]
            w = (LL[t, g] - np.mean([LL[u, g] for u in T if u != t], axis=0)) / CH[g]
            if mode == "global":
                keep[t] = w >= np.quantile(w, 1 - f)
            elif mode == "per_probe":
                keep[t] = w >= np.quantile(w, 1 - f, axis=1, keepdims=True)
            else:  # weights: positive part of w, to the power 1/f - 1 (f=1: uniform)
                keep[t] = np.clip(w, 0, None) ** (1 / f - 1) if f < 1 else np.ones_like(w)

        def bpc(x, t):
            g = g_of[t]; m = keep[t].astype(float)
            return float(-(LL[x, g] * m).sum() / (CH[g] * m).sum())

        def value(x, t):
            return float(np.mean([bpc(x, u) for u in T if u not in (x, t)])) - bpc(x, t)

        pairs = []
        for t in T:
            null = [value(r, t) for r in R]
            mu, sd = np.mean(null), np.std(null, ddof=1)
            for x in X:
                pairs.append((names[x], recipes[x], parents[x] == names[t], (value(x, t) - mu) / sd, names[t]))
        neg = [z for *_, p, z, _ in pairs if not p]
        top = sorted(((z, f"{s}/{t}") for s, _, p, z, t in pairs if not p), reverse=True)[:3]
        out = []
        for rec in sorted({r for _, r, p, _, _ in pairs if p}) + ["all"]:
            pos = [z for _, r, p, z, _ in pairs if p and rec in (r, "all")]
            kk, nn = stats.tpr_at_fpr_count(pos, neg, 0.01)
            out.append(f"{rec}={kk}/{nn}")
        mix = " ".join(f"{s}:{z:.1f}" for s, r, p, z, _ in pairs if p and r in ("mix05", "seq_kd_xtok"))
        print(f"{mode:9s} f={f:<5} {' '.join(out)} | top neg "
              + ", ".join(f"{p} {z:.1f}" for z, p in top) + f" | {mix}")
