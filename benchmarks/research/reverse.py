"""Reverse statistic: the suspect's likelihood of the teacher's text against its likelihood of
the references' text, plain and with each text's difficulty (column mean over the pool) removed
(issue 8, session 4). Input: `crossscore.py ZOO OUT.npz 8 1`.
"""
import numpy as np, sys
from lineage import stats
d=np.load(sys.argv[1]); names=list(d['names']); roles=list(d['roles']); LL=d['LL']; C=d['chars']
G=len(names); refs=[i for i in range(G) if roles[i]=='reference']; tea=[i for i in range(G) if roles[i]=='teacher']; sus=[i for i in range(G) if roles[i]=='suspect']
def M(s,g,ks): return LL[s,g,:,ks].sum()/C[g,:,ks].sum()
K=slice(0,4)
def rev(g,T,pool,cc):
    def v(text):
        x=M(g,text,K)
        if cc: x-=np.mean([M(S,text,K) for S in pool if S!=text])
        return x
    return v(T)-np.mean([v(R) for R in pool])
for cc in (False,True):
  for T in tea:
    null=[rev(r,T,[q for q in refs if q!=r],cc) for r in refs]
    out={}
    for g in sus:
        x=np.mean([rev(g,T,[q for q in refs if q!=j],cc) for j in refs])
        out[names[g]]=f"{x:.3f} z{(x-np.mean(null))/np.std(null,ddof=1):+.1f} p{stats.prediction_pvalue(x,null):.4f}"
    print('colcentre' if cc else 'plain', names[T], np.round(null,3), out)
