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

from benchmarks.research.own_text import grade, roles_of

d = dict(np.load(sys.argv[1]))
names, gens = list(d["names"]), list(d["gens"])
LL, CH = d["LL"], d["chars"]
T, R, X = roles_of(d)
g_of = {i: gens.index(names[i]) for i in T + R}


def bpc(x: int, g: int) -> float:
    return float(-LL[x, g_of[g]].sum() / CH[g_of[g]].sum())


def value(x: int, t: int, K: int, wt: float) -> float:
    a = np.mean([bpc(x, u) for u in T if u not in (x, t)])
    if K == 0:
        return a - bpc(x, t)
    near = sorted([r for r in R if r != x], key=lambda r: bpc(t, r))[:K]
    b = np.mean([bpc(x, r) for r in near])
    return (1 - wt) * a + wt * b - bpc(x, t) if wt < 1 else b - bpc(x, t)


for K, wt in [(0, 0.5)] + [(K, wt) for K in (1, 2, 3) for wt in (0.5, 1.0)]:
    pairs, rows, top = grade(d, T, R, X, lambda x, t, K=K, wt=wt: value(x, t, K, wt))
    mix = " ".join(f"{s}:{z:.1f}" for s, r, _, p, z in pairs if p and r in ("mix05", "seq_kd_xtok"))
    print(f"K={K} wt={wt} " + " ".join(f"{rec}={v[0]}/{v[1]}" for rec, v in rows.items())
          + " | top " + ", ".join(f"{p} {z:.1f}" for z, p in top) + f" | {mix}")
