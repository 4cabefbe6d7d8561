"""Canary mining: closeness on the K probes where the teacher stands out most from the pool
(by its advantage on its own registered text, "self", or by its first-word distance from the
pool mean, "js"), chosen leave-one-out so the null draws see the same selection rule
(issue 8, session 4).
"""
import numpy as np, sys
from lineage import stats
d=np.load(sys.argv[1]); names=list(d['names']); roles=list(d['roles']); LL=d['LL']; C=d['chars']; D=d['dists']
G=len(names); refs=[i for i in range(G) if roles[i]=='reference']; tea=[i for i in range(G) if roles[i]=='teacher']; sus=[i for i in range(G) if roles[i]=='suspect']
P=LL.shape[2]
def sel(T,pool,K,how):
    if K>=P: return np.arange(P)
    if how=='self':  # T's advantage on its own text (samples 0-3)
        adv=(LL[T,T,:,:4]-np.mean([LL[r,T,:,:4] for r in pool],0)).sum(1)/C[T,:,:4].sum(1)
    elif how=='js':
        m=np.mean([D[r] for r in pool],0); adv=np.abs(np.sqrt(D[T])-np.sqrt(m)).sum(1)
    return np.argsort(-adv)[:K]
def clo(T,g,pool,k,idx):
    y=LL[T,g,idx,k]; F=np.mean([LL[r,g,idx,k] for r in pool],0)
    return (y-F).sum()/C[g,idx,k].sum()
for how in ['self','js']:
  for K in [16,32,64,128]:
    T=tea[0]; res={}
    for k in range(4):
        null=[clo(T,r,[q for q in refs if q!=r],k,sel(T,[q for q in refs if q!=r],K,how)) for r in refs]
        for g in sus:
            x=np.mean([clo(T,g,[q for q in refs if q!=j],k+4,sel(T,[q for q in refs if q!=j],K,how)) for j in refs])
            res.setdefault(names[g],[]).append((x-np.mean(null))/np.std(null,ddof=1))
    print(how,K,{n:(round(np.mean(v),1),[round(a,1) for a in v]) for n,v in res.items()})
