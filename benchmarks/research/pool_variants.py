import numpy as np, sys
from lineage import stats
d = np.load(sys.argv[1]); names = list(d["names"]); roles=list(d["roles"]); LL = d["LL"]; C = d["chars"]
G=len(names); refs=[i for i in range(G) if roles[i]=="reference"]; tea=[i for i in range(G) if roles[i]=="teacher"]
reg=tea+refs
sr=slice(0,4); ss=slice(4,5)
def Lm(sl): return LL[..., sl].sum((2,3))/C[..., sl].sum((1,2))[None,:]
LR=Lm(sr); LS=Lm(ss)
def L(s,g): return (LS if roles[g]=="suspect" else LR)[s,g]
def a(s,g,scale=False):
    gens=[x for x in reg if x not in (s,g)]
    v=np.array([LR[s,x] for x in gens])
    return v.mean(), (v.std(ddof=1) if scale else 1.0)
def stat(kind,T,g,pool):
    if kind=="clo": return L(T,g)-np.mean([L(r,g) for r in pool])
    if kind in("dc","dcz"):
        sc=kind=="dcz"
        def res(s):
            m,sd=a(s,g,sc); return (L(s,g)-m)/sd
        return res(T)-np.mean([res(r) for r in pool])
    if kind=="med":
        return L(T,g)-np.median([L(r,g) for r in pool])
for kind in ["clo","dc","dcz","med"]:
  for T in tea:
    null=[stat(kind,T,r,[q for q in refs if q!=r]) for r in refs]
    out=[]
    for g in range(G):
        if roles[g]=="suspect":
            x=stat(kind,T,g,refs); z=(x-np.mean(null))/np.std(null,ddof=1)
            out.append(f"{names[g]}={z:+.1f}sd p={stats.prediction_pvalue(x,null):.3f}")
    print(kind,names[T],"null", np.round(null,3), *out)
