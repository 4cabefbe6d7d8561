"""Text-mode forms of the sharpened statistic on a whole zoo (session 8).

    PYTHONPATH=. python benchmarks/research/cross_entropy_forms.py KLT.npz ZOO/manifest.json FIRST LAST

KLT.npz from `kl_temperature.py` (every non-suspect as a scorer). Without the suspect's own
log-likelihoods only cross-entropies CE(G, M_tau) = -log P_M,tau(G's text) per character
are available. For each temperature prints, over the zoo's suspect-teacher pairs (Holm across
teachers, alpha 0.01), AUC, TPR at 1% FPR, `derived` counts and top-1 attribution for:
- diff:     mean_R CE(G, R_tau) - CE(G, T_tau) (at tau 1 this is the scan's closeness);
- logratio: mean_R log CE(G, R_tau) - log CE(G, T_tau) (the scan's cross_entropy).
"""
import json, sys
import numpy as np
from lineage import stats
d = np.load(sys.argv[1]); man = {m["name"]: m for m in json.load(open(sys.argv[2]))["models"]}
SL = slice(int(sys.argv[3]), int(sys.argv[4]))
names, roles = list(d["names"]), list(d["roles"]); sc = list(d["teachers"]); taus = list(d["taus"])
CE = -d["LL"][..., SL].sum((3, 4)) / d["chars"][..., SL].sum((1, 2))  # [scorer, tau, G] nats/char
refs = [names.index(x) for x in sc if roles[names.index(x)] == "reference"]
teach = [names.index(x) for x in sc if roles[names.index(x)] == "teacher"]
sus = [g for g, r in enumerate(roles) if r == "suspect"]
def ce(s, g, k): return CE[sc.index(names[s]), k, g]
forms = {
 "diff": lambda g, T, pool, k: np.mean([ce(r, g, k) for r in pool]) - ce(T, g, k),
 "logratio": lambda g, T, pool, k: np.mean([np.log(ce(r, g, k)) for r in pool]) - np.log(ce(T, g, k)),
}
for name, f in forms.items():
  for k, tau in enumerate(taus):
    P = {}
    for T in teach:
        null = np.array([f(r, T, [q for q in refs if q != r], k) for r in refs])
        for g in sus: P[(g, T)] = stats.prediction_pvalue(f(g, T, refs, k), null)
    pos, neg = [], []; tp = fp = top1 = 0; rec = {}
    for g in sus:
        raw = [P[(g, T)] for T in teach]; adj = stats.holm(raw); par = man[names[g]]["parent"]
        for T, p, q in zip(teach, raw, adj):
            if names[T] == par: pos.append(-np.log10(p)); tp += q <= 0.01; rec.setdefault(man[names[g]]["recipe"], []).append(round(p, 3))
            else: neg.append(-np.log10(p)); fp += q <= 0.01
        if par: top1 += names[teach[int(np.argmin(raw))]] == par
    print(f"{name:8s} tau={tau} AUC={stats.auc(pos, neg):.3f} TPR@1%={stats.tpr_at_fpr(pos, neg, 0.01):.2f} derived={tp}/{len(pos)} FP={fp}/{len(neg)} top1={top1}/{len(pos)}  seq_kd={rec['seq_kd']} xtok={rec.get('seq_kd_xtok')} lkd={rec.get('logit_kd')}")
