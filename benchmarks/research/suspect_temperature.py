"""Text-access statistics on suspect text sampled at a lower temperature (session 11).

    PYTHONPATH=. python benchmarks/research/suspect_temperature.py KLT.npz ZOO/manifest.json PROBES FIRST LAST

KLT.npz from `SAMPLE_TAU=... TAUS=0.5,1.0 kl_temperature.py` (every model's text at the
generators' temperature, scored by every teacher and reference). With text access only
cross-entropies CE(G, M_tau) = -log P_M,tau(G's text) per character are visible. Prints,
over the zoo's suspect-teacher pairs (the first PROBES probes, samples FIRST:LAST), TPR at 1%
FPR and per-recipe raw p-values for log-ratio forms with the references, the other teachers,
or both as the pool. References are the null (leave-one-out), as in a scan. Grades with the
manifest; not a detector.
"""
import json
import sys

import numpy as np

from lineage import stats

d = np.load(sys.argv[1]); man = {m["name"]: m for m in json.load(open(sys.argv[2]))["models"]}
NP = int(sys.argv[3]); SL = slice(int(sys.argv[4]), int(sys.argv[5]))
names, roles = list(d["names"]), list(d["roles"]); sc = list(d["teachers"]); taus = list(d["taus"])
CE = -d["LL"][:, :, :, :NP, SL].sum((3, 4)) / d["chars"][:, :NP, SL].sum((1, 2))  # [scorer, tau, G]
refs = [names.index(x) for x in sc if roles[names.index(x)] == "reference"]
teach = [names.index(x) for x in sc if roles[names.index(x)] == "teacher"]
sus = [g for g, r in enumerate(roles) if r == "suspect"]


def ce(s, g, k):
    return CE[sc.index(names[s]), k, g]


def logratio(g, T, pool, k):
    return np.mean([np.log(ce(r, g, k)) for r in pool]) - np.log(ce(T, g, k))


POOLS = {
    "refs": lambda g, T: [q for q in refs if q != g],
    "teachers": lambda g, T: [q for q in teach if q not in (T, g)],
    "both": lambda g, T: [q for q in refs + teach if q not in (T, g)],
}
for pname, pool in POOLS.items():
    for k, tau in enumerate(taus):
        P = {}
        for T in teach:
            null = np.array([logratio(r, T, pool(r, T), k) for r in refs])
            for g in sus:
                P[(g, T)] = stats.prediction_pvalue(logratio(g, T, pool(g, T), k), null)
        pos, neg, rec, top1 = [], [], {}, 0
        for g in sus:
            par = man[names[g]]["parent"]
            raw = [P[(g, T)] for T in teach]
            for T, p in zip(teach, raw):
                (pos if names[T] == par else neg).append(-np.log10(p))
                if names[T] == par:
                    rec.setdefault(man[names[g]]["recipe"], []).append(round(p, 3))
            if par:
                top1 += names[teach[int(np.argmin(raw))]] == par
        kk, nn = stats.tpr_at_fpr_count(pos, neg, 0.01)
        print(f"{pname:8s} score_tau={tau} TPR@1%={kk}/{nn} AUC={stats.auc(pos, neg):.3f} "
              f"top1={top1}/{len(pos)} " + " ".join(f"{r}={v}" for r, v in sorted(rec.items())))
