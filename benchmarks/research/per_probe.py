import numpy as np, sys
from lineage import stats
d = np.load(sys.argv[1]); names = list(d["names"]); roles = list(d["roles"]); LL = d["LL"]; C = d["chars"]
G = len(names); refs = [i for i in range(G) if roles[i] == "reference"]
def pp(s, g):  # per-probe per-char LL [P]
    sl = slice(4, 5) if roles[g] == "suspect" else slice(0, 4)
    return LL[s, g][:, sl].sum(1) / C[g][:, sl].sum(1)
for T in [names.index("t1"), names.index("t2")]:
    def cvec(g, pool): return pp(T, g) - np.mean([pp(r, g) for r in pool], 0)
    for kind in ["mean", "zw", "trim"]:
        def stat(g, pool, nullvecs):
            v = cvec(g, pool)
            if kind == "mean": return v.mean()
            M = np.array(nullvecs); sd = M.std(0, ddof=1) + 1e-3
            if kind == "zw": return ((v - M.mean(0)) / sd).mean()
            if kind == "trim": return np.mean(np.sort(v)[len(v)//10: -len(v)//10])
        null = []
        for r in refs:
            others = [q for q in refs if q != r]
            nv = [cvec(q, [x for x in others if x != q]) for q in others]  # LOO-of-LOO null vecs
            null.append(stat(r, others, nv))
        nvall = [cvec(q, [x for x in refs if x != q]) for q in refs]
        out = []
        for g in range(G):
            if roles[g] == "suspect":
                x = stat(g, refs, nvall); out.append(f"{names[g]} z={(x-np.mean(null))/np.std(null,ddof=1):+.1f} p={stats.prediction_pvalue(x, null):.3f}")
        print(names[T], kind, np.round(null, 3), *out)
