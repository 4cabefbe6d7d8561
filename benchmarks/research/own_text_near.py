"""teacher_text with the references nearest the teacher as extra controls (session 11).

    PYTHONPATH=. python benchmarks/research/own_text_near.py OWN.npz

OWN.npz from `own_text.py sample`. The independents that come closest to a teacher on
teacher_text are its siblings (same data, architecture and tokenizer, another seed): they
prefer T's text because it looks like their own corpus. This adds the K references whose text
T finds likeliest (never the model being graded) to the controls, with weight WT against the
other teachers (WT=1: the near references alone; K=0: teacher_text as it is), so that "trained
on T's corpus" cancels too. Prints TPR at 1% FPR per recipe. Grades with the manifest; not a
detector.
"""
import sys

import numpy as np

from lineage import stats

d = dict(np.load(sys.argv[1]))
names = list(d["names"]); roles = list(d["roles"]); gens = list(d["gens"])
parents = list(d["parents"]); recipes = list(d["recipes"])
LL, CH = d["LL"], d["chars"]
T = [i for i, r in enumerate(roles) if r == "teacher"]
R = [i for i, r in enumerate(roles) if r == "reference"]
X = [i for i, r in enumerate(roles) if r == "suspect"]
g_of = {i: gens.index(names[i]) for i in T + R}
def bpc(x, g): return float(-LL[x, g_of[g]].sum() / CH[g_of[g]].sum())
for K in (0, 1, 2, 3):
  for wt in (0.5, 1.0):
    def value(x, t):
        near = sorted([r for r in R if r != x], key=lambda r: bpc(t, r))[:K]
        a = np.mean([bpc(x, u) for u in T if u not in (x, t)])
        if K == 0: return a - bpc(x, t)
        b = np.mean([bpc(x, r) for r in near])
        return (1 - wt) * a + wt * b - bpc(x, t) if wt < 1 else b - bpc(x, t)
    pairs = []
    for t in T:
        null = [value(r, t) for r in R]; mu, sd = np.mean(null), np.std(null, ddof=1)
        for x in X: pairs.append((names[x], recipes[x], parents[x] == names[t], (value(x, t) - mu) / sd, names[t]))
    neg = [z for *_, p, z, _ in pairs if not p]
    top = sorted(((z, f"{s}/{t}") for s, _, p, z, t in pairs if not p), reverse=True)[:3]
    out = []
    for rec in sorted({r for _, r, p, _, _ in pairs if p}) + ["all"]:
        pos = [z for _, r, p, z, _ in pairs if p and rec in (r, "all")]
        kk, nn = stats.tpr_at_fpr_count(pos, neg, 0.01); out.append(f"{rec}={kk}/{nn}")
    mix = " ".join(f"{s}:{z:.1f}" for s, r, p, z, _ in pairs if p and r in ("mix05", "seq_kd_xtok"))
    print(f"K={K} wt={wt} {' '.join(out)} | top " + ", ".join(f"{p} {z:.1f}" for z, p in top) + f" | {mix}")
    if K == 0: break
