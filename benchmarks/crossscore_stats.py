"""Candidate statistics on a cross-score matrix (see `crossscore.py`), each with its t prediction
p-value against the references' leave-one-out values, per teacher.

clo: teacher log-likelihood of the generator's text minus the references' mean (per char);
z: clo over the references' spread; max: teacher minus the best reference; agr: -KL(G||T);
ragr: agreement relative to the references' (lower = closer); psr: share of samples where the
teacher beats the references' mean.
"""
import numpy as np, sys
from lineage import stats
d = np.load(sys.argv[1]); names = list(d["names"]); roles = list(d["roles"]); LL = d["LL"]; C = d["chars"]
ns = int(sys.argv[2]) if len(sys.argv) > 2 else 4
LL = LL[..., :ns]; C = C[..., :ns]
G = len(names); refs = [i for i in range(G) if roles[i] == "reference"]; teachers = [i for i in range(G) if roles[i] == "teacher"]
L = LL.sum((2, 3)) / C.sum((1, 2))[None, :]  # [scorer, gen] per-char
def stat(kind, t, g, pool):
    if kind == "clo": return L[t, g] - L[pool, g].mean()
    if kind == "z": return (L[t, g] - L[pool, g].mean()) / L[pool, g].std(ddof=1)
    if kind == "max": return L[t, g] - L[pool, g].max()
    if kind == "agr": return L[t, g] - L[g, g]
    if kind == "ragr":  # agreement relative to pool agreement: how much closer to T than refs are, in KL units
        return (L[t, g] - L[g, g]) / (L[pool, g] - L[g, g]).mean()
    if kind == "psr":  # per-sample win rate of T over mean ref, sign-based
        x = (LL[t, g] - LL[pool, g].mean(0)) / C[g]
        return float((x > 0).mean())
for kind in ["clo", "z", "max", "agr", "ragr", "psr"]:
    print("==", kind)
    for t in teachers:
        null = [stat(kind, t, r, [q for q in refs if q != r]) for r in refs]
        line = []
        for g in range(G):
            if roles[g] == "reference" or g == t: continue
            x = stat(kind, t, g, refs)
            line.append(f"{names[g]}={x:+.3f}(p={stats.prediction_pvalue(x, null):.2g})")
        print(f" {names[t]} null=[{' '.join(f'{v:+.3f}' for v in null)}]", " ".join(line))
