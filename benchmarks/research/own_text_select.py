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

from benchmarks.research.own_text import grade, roles_of

d = dict(np.load(sys.argv[1]))
FR = [float(x) for x in (sys.argv[2] if len(sys.argv) > 2 else "1,0.5,0.25").split(",")]
names, gens = list(d["names"]), list(d["gens"])
LL, CH = d["LL"], d["chars"]  # LL[scorer, gen, P, n], CH[gen, P, n]
T, R, X = roles_of(d)
g_of = {i: gens.index(names[i]) for i in T + R}


def kept(mode: str, f: float) -> dict[int, np.ndarray]:
    """Each teacher's sample mask (or weights) by idiosyncrasy w(x)."""
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
    return keep


def value(x: int, t: int, keep: dict[int, np.ndarray]) -> float:
    def bpc(u: int) -> float:
        g, m = g_of[u], keep[u].astype(float)
        return float(-(LL[x, g] * m).sum() / (CH[g] * m).sum())
    return float(np.mean([bpc(u) for u in T if u not in (x, t)])) - bpc(t)


for mode in ("global", "per_probe", "weighted"):
    for f in FR:
        keep = kept(mode, f)
        pairs, rows, top = grade(d, T, R, X, lambda x, t, keep=keep: value(x, t, keep))
        mix = " ".join(f"{s}:{z:.1f}" for s, r, _, p, z in pairs
                       if p and r in ("mix05", "seq_kd_xtok"))
        print(f"{mode:9s} f={f:<5} " + " ".join(f"{rec}={v[0]}/{v[1]}" for rec, v in rows.items())
              + " | top neg " + ", ".join(f"{p} {z:.1f}" for z, p in top) + f" | {mix}")
