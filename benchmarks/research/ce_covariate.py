"""The text statistic with a capability covariate regressed out (session 13; it did worse).

    PYTHONPATH=. python benchmarks/research/ce_covariate.py KLT10.npz ZOO/manifest.json [SAMPLE=0]

KLT10.npz as for ce_noise.py. For each teacher T, cross_entropy (`mean_R log H(S; R_0.5) -
log H(S; T_0.5)`, 100 probes, one sample each) is regressed across the references on the
suspect's own `mean_R log H(S; R_0.5)` (how unlikely the references find its text, a
capability covariate); a suspect's residual is tested with the regression's t prediction
interval (n - 2 degrees of freedom). Prints TPR at 1% FPR and AUC over the zoo's pairs with
and without the covariate, and per-recipe raw p-values. Grades with the manifest.
"""
import json
import sys

import numpy as np
from scipy import stats as sps

from lineage import stats

d = np.load(sys.argv[1])
with open(sys.argv[2]) as f:
    man = {m["name"]: m for m in json.load(f)["models"]}
j = int(sys.argv[3]) if len(sys.argv) > 3 else 0
names, roles, sc = list(d["names"]), list(d["roles"]), list(d["teachers"])
k = list(d["taus"]).index(0.5)
C = -d["LL"][:, k, :, :100, j].sum(2) / d["chars"][:, :100, j].sum(1)  # [scorer, G] per char
refs = [names.index(x) for x in sc if roles[names.index(x)] == "reference"]
teach = [names.index(x) for x in sc if roles[names.index(x)] == "teacher"]
sus = [g for g, r in enumerate(roles) if r == "suspect"]


def cov(g):
    return np.mean([np.log(C[sc.index(names[r]), g]) for r in refs if r != g])


def stat(g, T):
    return cov(g) - np.log(C[sc.index(names[T]), g])


for mode in ("plain", "covariate"):
    pos, neg, rec = [], [], {}
    for T in teach:
        nx = np.array([cov(r) for r in refs])
        ny = np.array([stat(r, T) for r in refs])
        n = len(ny)
        if mode == "covariate":
            b = np.polyfit(nx, ny, 1)
            s = np.sqrt(((ny - np.polyval(b, nx)) ** 2).sum() / (n - 2))

            def pval(g, b=b, s=s, nx=nx, T=T, n=n):
                x = cov(g)
                se = s * np.sqrt(1 + 1 / n + (x - nx.mean()) ** 2 / ((nx - nx.mean()) ** 2).sum())
                return float(sps.t.sf((stat(g, T) - np.polyval(b, x)) / se, n - 2))
        else:
            def pval(g, ny=ny, T=T):
                return stats.prediction_pvalue(stat(g, T), ny)
        for g in sus:
            par, pv = man[names[g]]["parent"], pval(g)
            (pos if names[T] == par else neg).append(-np.log10(pv))
            if names[T] == par:
                rec.setdefault(man[names[g]]["recipe"], []).append(round(pv, 3))
    kk, nn = stats.tpr_at_fpr_count(pos, neg, 0.01)
    print(f"{mode:9s} TPR@1%FPR {kk}/{nn} AUC {stats.auc(pos, neg):.3f} "
          + " ".join(f"{r}={v}" for r, v in sorted(rec.items())))
