"""Ratio vs difference forms of the divergence statistic, per temperature (session 8).

    PYTHONPATH=. python benchmarks/research/divergence_forms.py KLT.npz [FIRST LAST]

KLT.npz from `kl_temperature.py` with every non-suspect as a scorer. FIRST..LAST picks the
samples per probe to use (a scan in full mode uses one). For each teacher prints the
references' leave-one-out null and each suspect's standard score and t-prediction p-value:
- ratio: mean_R log KL(G || R_tau) - log KL(G || T_tau) (the scan's `divergence`);
- diff:  mean_R KL(G || R_tau) - KL(G || T_tau) (the closeness form of the same quantity);
at the minimum over tau and at tau 0.5, 0.7 and 1.0.
"""
import numpy as np, sys
from lineage import stats
d = np.load(sys.argv[1])
names, roles = list(d["names"]), list(d["roles"]); sc = list(d["teachers"]); taus = list(d["taus"])
SL = slice(int(sys.argv[2]), int(sys.argv[3])) if len(sys.argv) > 3 else slice(None)
KL = (d["selfll"][None, None][..., SL] - d["LL"][..., SL]).sum((3, 4)) / d["chars"][..., SL].sum((1, 2))  # [scorer, tau, G]
KL = np.maximum(KL, 1e-4)
refs = [names.index(x) for x in sc if roles[names.index(x)] == "reference"]
teach = [names.index(x) for x in sc if roles[names.index(x)] == "teacher"]
sus = [g for g, r in enumerate(roles) if r == "suspect"]
def kl(s, g, mode):  # s scorer model index in names
    a = sc.index(names[s]); v = KL[a, :, g]
    if mode == "min": return v.min()
    return v[taus.index(mode)]
def ratio(g, T, pool, mode):
    return np.log(kl(T, g, mode)) - np.mean([np.log(kl(r, g, mode)) for r in pool])
def diff(g, T, pool, mode):
    return -(kl(T, g, mode) - np.mean([kl(r, g, mode) for r in pool]))
for stat in (ratio, diff):
  for mode in ["min", 0.5, 0.7, 1.0]:
    for T in teach:
        f = (lambda g, pool: -ratio(g, T, pool, mode)) if stat is ratio else (lambda g, pool: diff(g, T, pool, mode))
        null = np.array([f(r, [q for q in refs if q != r]) for r in refs])
        out = []
        for g in sus:
            x = f(g, refs)
            z = (x - null.mean()) / null.std(ddof=1)
            out.append(f"{names[g]} z={z:+.1f} p={stats.prediction_pvalue(x, null):.2g}")
        print(stat.__name__, mode, names[T], np.round(null, 2), " ".join(out))
