import numpy as np, sys
from scipy import stats as st
d = np.load(sys.argv[1]); names = list(d["names"]); roles=list(d["roles"]); LL = d["LL"]; C = d["chars"]
G=len(names); refs=[i for i in range(G) if roles[i]=="reference"]; tea=[i for i in range(G) if roles[i]=="teacher"]
reg=tea+refs
def Lm(sl): return LL[..., sl].sum((2,3))/C[..., sl].sum((1,2))[None,:]
LR=Lm(slice(0,4)); LS=Lm(slice(4,5))
def L(s,g): return (LS if roles[g]=="suspect" else LR)[s,g]
agg = np.median if len(sys.argv)>2 and sys.argv[2]=="med" else np.mean
def c(s,g,excl=()):
    pool=[r for r in refs if r not in (s,g)+tuple(excl)]
    return L(s,g)-agg([L(r,g) for r in pool])
# rows: each scorer s over registered generators g != s (refs only as generators, and other teachers)
rows={}
for s in reg:
    gens=[g for g in refs if g!=s]
    rows[s]=np.array([c(s,g) for g in gens])
ss=sum(((v-v.mean())**2).sum() for v in rows.values()); df=sum(len(v)-1 for v in rows.values())
sig=np.sqrt(ss/df)
print("pooled sd %.3f df %d"%(sig,df), {names[s]:round(float(v.std(ddof=1)),3) for s,v in rows.items()})
for T in tea:
    nullrow=np.array([c(T,g) for g in refs]); n=len(nullrow)
    out=[]
    for g in range(G):
        if roles[g]=="suspect":
            x=c(T,g); t=(x-nullrow.mean())/(sig*np.sqrt(1+1/n)); p=st.t.sf(t,df)
            out.append(f"{names[g]}={t:+.1f} p={p:.4f}")
    # calibration: each reference as suspect against T, its row value vs LOO
    cal=[]
    for j in refs:
        rest=[c(T,g,(j,)) for g in refs if g!=j]
        x=c(T,j); t=(x-np.mean(rest))/(sig*np.sqrt(1+1/len(rest))); cal.append(round(float(st.t.sf(t,df)),3))
    print(names[T], *out, "LOO-ref p:", cal)
