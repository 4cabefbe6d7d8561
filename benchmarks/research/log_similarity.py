"""First-word similarity on per-probe centred log-probabilities (temperature-invariant:
sampling at temperature tau scales log p by 1/tau up to a per-probe constant) against the
sqrt-probability signature in use, with and without the pool projection (issue 8, session 4).
"""
import numpy as np, sys
from lineage import stats
from lineage.verdict import _span, _residual
d=np.load(sys.argv[1]); names=list(d['names']); roles=list(d['roles']); D=d['dists']
G=len(names); refs=[i for i in range(G) if roles[i]=='reference']; tea=[i for i in range(G) if roles[i]=='teacher']; sus=[i for i in range(G) if roles[i]=='suspect']
def feat(dist, kind):
    if kind=='sqrt': return np.sqrt(dist)
    eps=float(kind.split(':')[1])
    L=np.log(dist+eps); return L-L.mean(1,keepdims=True)
def sim(g, T, pool, kind, project=True, unit=False):
    U=np.stack([feat(D[p],kind).ravel() for p in pool]); mu=U.mean(0)
    x=feat(D[g],kind).ravel()-mu; y=feat(D[T],kind).ravel()-mu
    if project:
        B=_span(U-mu); x=_residual(x,B); y=_residual(y,B)
    return float(x@y/np.linalg.norm(x)/np.linalg.norm(y))
for kind in ['sqrt','log:1e-4','log:1e-3','log:1e-2']:
  for proj in (True, False):
    for T in tea:
        null=[sim(r,T,[q for q in refs if q!=r],kind,proj) for r in refs]
        out={}
        for g in sus:
            x=np.mean([sim(g,T,[q for q in refs if q!=j],kind,proj) for j in refs])
            out[names[g]]=f"{x:.3f} z{(x-np.mean(null))/np.std(null,ddof=1):+.1f} p{stats.prediction_pvalue(x,null):.4f}"
        print(kind, 'proj' if proj else 'noproj', names[T],'null',np.round(null,3),out)
