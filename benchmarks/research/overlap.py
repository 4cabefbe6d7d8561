"""Word-prefix overlap of each generator's samples with the teacher's (session 5).

    python benchmarks/research/overlap.py OUT.npz      # OUT.npz from crossscore.py, 8 samples

For each probe, the mean length (in words) of the common prefix between a generator's sample
(samples 0-3) and the teacher's samples (4-7), against the references' values. Finding on the
small zoo (session 5): t1's seq-KD student sits 3.8 sd (temperature 0.5) / 4.9 sd
(temperature 1) above the reference null for t1, but also 1.4 / 11.5 sd above it for t2, so
the statistic measures "writes short, generic, low-entropy text", not "learned from T".
"""
import json, sys, numpy as np
d = np.load(sys.argv[1]); names = list(d["names"]); roles=list(d["roles"])
S = json.load(open(sys.argv[1] + ".samples.json"))
def words(t): return t.split()
def pref(a, b):
    k = 0
    for x, y in zip(a, b):
        if x != y: break
        k += 1
    return k
def ov(g, t, ns=4):
    # mean over probes and suspect samples of max word-prefix match with any of t's samples
    tot = []
    for pg, pt in zip(S[g], S[t]):
        for a in pg[:ns]:
            wa = words(a)
            tot.append(np.mean([pref(wa, words(b)) for b in pt[4:]]))
    return float(np.mean(tot))
refs = [n for n, r in zip(names, roles) if r == "reference"]
for t in [n for n, r in zip(names, roles) if r == "teacher"]:
    null = [ov(r, t) for r in refs]
    m, s = np.mean(null), np.std(null, ddof=1)
    print(t, "null", " ".join(f"{x:.3f}" for x in null))
    for g in names:
        if g in refs or g == t: continue
        x = ov(g, t); print(f"   {g:14s} {x:.3f} z={(x-m)/s:+.2f}")
