"""Closeness with other comparators than the mean reference pool (issue 8, session 4).

mean/median pool; the one reference whose per-sample scores track T's best on the generator's
own text ("nearest"); a convex combination of references fitted to T's per-sample scores
("synth", "synthw": synthetic control); and a fixed comparator, the teacher's sibling r1 (same
architecture and tokenizer), with the null over the other references. Four replicates (sample
k for references, k+4 for suspects). Input: `crossscore.py ZOO OUT.npz 8 1`.
"""
import numpy as np, sys
from lineage import stats
d=np.load(sys.argv[1]); names=list(d['names']); roles=list(d['roles']); LL=d['LL']; C=d['chars']
G=len(names); refs=[i for i in range(G) if roles[i]=='reference']; tea=[i for i in range(G) if roles[i]=='teacher']
sus=[i for i in range(G) if roles[i]=='suspect']
def stat(kind,T,g,pool,k):
    y=LL[T,g,:,k].ravel(); F=np.stack([LL[r,g,:,k].ravel() for r in pool],1); ch=C[g,:,k].ravel(); tot=ch.sum()
    if kind=='mean': return (y-F.mean(1)).sum()/tot
    if kind=='median': return (y-np.median(F,1)).sum()/tot
    if kind=='nearest':
        # per-char residual correlation
        yc=y/ch; Fc=F/ch[:,None]
        cors=[np.corrcoef(yc,Fc[:,i])[0,1] for i in range(F.shape[1])]
        i=int(np.argmax(cors)); return (y-F[:,i]).sum()/tot
    if kind=='nearest_var':
        v=[np.var((y-F[:,i])/ch) for i in range(F.shape[1])]
        i=int(np.argmin(v)); return (y-F[:,i]).sum()/tot
    if kind in('synth','synthw'):
        # weights sum 1 minimising residual variance per char (weighted by chars)
        yc=y/ch; Fc=F/ch[:,None]; wts=ch/ch.sum() if kind=='synthw' else np.ones_like(ch)/len(ch)
        ym=yc-(wts*yc).sum(); Fm=Fc-(wts[:,None]*Fc).sum(0)
        A=(Fm*wts[:,None]).T@Fm; A+=1e-6*np.trace(A)/len(A)*np.eye(len(A)); b=(Fm*wts[:,None]).T@ym
        Ai=np.linalg.inv(A); one=np.ones(len(A))
        lam=(1-one@Ai@b)/(one@Ai@one); w=Ai@b+lam*Ai@one
        return (y-F@w).sum()/tot
kinds=['mean','median','nearest','nearest_var','synth','synthw']
for kind in kinds:
  for T in tea[:1]:
    res={}
    for k in range(4):
        null=[stat(kind,T,r,[q for q in refs if q!=r],k) for r in refs]
        for g in sus:
            x=np.mean([stat(kind,T,g,[q for q in refs if q!=j],k+4) for j in refs])
            z=(x-np.mean(null))/np.std(null,ddof=1)
            res.setdefault(names[g],[]).append((z,stats.prediction_pvalue(x,null)))
    print(kind, names[T], '  '.join(f"{n}: z {np.mean([a for a,_ in v]):+.1f} ({' '.join(f'{a:.1f}' for a,_ in v)}) p~{np.median([b for _,b in v]):.3f}" for n,v in res.items()))
print('--- fixed comparator r1 (sibling), null = other refs')
T=tea[0]; r1=refs[0]
for k in range(4):
    f=lambda g,kk: (LL[T,g,:,kk]-LL[r1,g,:,kk]).sum()/C[g,:,kk].sum()
    null=[f(r,k) for r in refs if r!=r1]
    print(np.round(null,3), {names[g]: round((f(g,k+4)-np.mean(null))/np.std(null,ddof=1),1) for g in sus})
print('--- nearest null values')
for k in range(2):
    print([round(stat('nearest',T,r,[q for q in refs if q!=r],k),3) for r in refs])
