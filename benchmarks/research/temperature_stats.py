import numpy as np, sys
from lineage import stats
d0 = np.load(sys.argv[2]); C = d0["chars"]; roles = list(d0["roles"]); names = list(d0["names"])
d = np.load(sys.argv[1]); sc = list(d["scorers"]); LL = d["LL"]
def Lm(sl): return LL[..., sl].sum((2,3)) / C[..., sl].sum((1,2))[None, :]
LR, LS = Lm(slice(0,4)), Lm(slice(4,5))
refs = [names.index(x) for x in sc if x.startswith("r")]
def L(s, g): return (LS if roles[g] == "suspect" else LR)[sc.index(names[s]), g]
for T in [names.index("t1"), names.index("t2")]:
    def clo(g, pool): return L(T, g) - np.mean([L(r, g) for r in pool])
    null = [clo(r, [q for q in refs if q != r]) for r in refs]
    out = []
    for g in range(len(names)):
        if roles[g] == "suspect":
            x = clo(g, refs); out.append(f"{names[g]} z={(x-np.mean(null))/np.std(null,ddof=1):+.1f} p={stats.prediction_pvalue(x, null):.3f}")
    print(names[T], np.round(null, 3), *out)
