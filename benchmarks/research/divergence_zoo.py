"""The divergence statistic alone on a whole zoo: power, calibration and attribution (session 8).

    PYTHONPATH=. python benchmarks/research/divergence_zoo.py KLT.npz ZOO/manifest.json FIRST LAST

KLT.npz from `kl_temperature.py ZOO KLT.npz 2` (every non-suspect scores every model's
samples at each temperature). For each temperature: AUC (-log10 p, positives = suspect and its
parent teacher), TPR at 1% FPR, `derived` counts after Holm across teachers at alpha 0.01 for
positives and negatives, and top-1 attribution; then each recipe's raw / Holm p-values and
standard scores against the references' leave-one-out null.
"""
import json, sys
import numpy as np
from lineage import stats
d = np.load(sys.argv[1]); man = {m["name"]: m for m in json.load(open(sys.argv[2]))["models"]}
SL = slice(int(sys.argv[3]), int(sys.argv[4])) if len(sys.argv) > 4 else slice(None)
names, roles = list(d["names"]), list(d["roles"]); sc = list(d["teachers"]); taus = list(d["taus"])
KL = (d["selfll"][None, None][..., SL] - d["LL"][..., SL]).sum((3, 4)) / d["chars"][..., SL].sum((1, 2))
KL = np.maximum(KL, 1e-3)
refs = [names.index(x) for x in sc if roles[names.index(x)] == "reference"]
teach = [names.index(x) for x in sc if roles[names.index(x)] == "teacher"]
sus = [g for g, r in enumerate(roles) if r == "suspect"]
def kl(s, g, k): return KL[sc.index(names[s]), k, g]
def ratio(g, T, pool, k): return -(np.log(kl(T, g, k)) - np.mean([np.log(kl(r, g, k)) for r in pool]))
for k, tau in enumerate(taus):
    P, Z = {}, {}
    for T in teach:
        null = np.array([ratio(r, T, [q for q in refs if q != r], k) for r in refs])
        for g in sus:
            x = ratio(g, T, refs, k)
            P[(g, T)] = stats.prediction_pvalue(x, null)
            Z[(g, T)] = (x - null.mean()) / null.std(ddof=1)
    pos, neg, rows = [], [], {}
    fp = tp = top1 = 0; fpl = []
    for g in sus:
        raw = [P[(g, T)] for T in teach]
        adj = stats.holm(raw)
        par = man[names[g]]["parent"]
        for T, p, q in zip(teach, raw, adj):
            if names[T] == par:
                pos.append(-np.log10(p)); tp += q <= 0.01
                rows.setdefault(man[names[g]]["recipe"], []).append((p, q, Z[(g, T)]))
            else:
                neg.append(-np.log10(p)); fp += q <= 0.01
                if q <= 0.05: fpl.append((names[g], names[T], round(q, 4)))
        if par:
            top1 += names[teach[int(np.argmin(raw))]] == par
    print(f"tau={tau} AUC={stats.auc(pos, neg):.3f} TPR@1%={stats.tpr_at_fpr(pos, neg, 0.01):.2f} "
          f"derived(pos)={tp}/{len(pos)} FP@.01={fp}/{len(neg)} top1={top1}/{len(pos)} negs q<=.05: {fpl}")
    for rec, v in sorted(rows.items()):
        print("   ", rec, " ".join(f"{p:.2g}/{q:.2g} (z {z:.1f})" for p, q, z in v))
