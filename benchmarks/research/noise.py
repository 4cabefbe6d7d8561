import numpy as np, sys
from lineage import stats
d = np.load(sys.argv[1]); names = list(d["names"]); roles=list(d["roles"]); LL = d["LL"]; C = d["chars"]
G=len(names); refs=[i for i in range(G) if roles[i]=="reference"]; T=names.index("t1")
def L(s,g,sl): return LL[s,g][:,sl].sum()/C[g][:,sl].sum()
def clo(g,pool,sl): return L(T,g,sl)-np.mean([L(r,g,sl) for r in pool])
for sl in [slice(0,4),slice(4,8),slice(0,1),slice(4,5),slice(0,8)]:
    null=[clo(r,[q for q in refs if q!=r],sl) for r in refs]
    out=[]
    for g in range(G):
        if roles[g]=="suspect":
            x=clo(g,refs,slice(4,5)); out.append(f"{names[g]}={x:+.3f} p={stats.prediction_pvalue(x,null):.3f}")
    print(sl, "null", np.round(null,3), "sd %.3f"%np.std(null,ddof=1), *out)
