"""Where the text-access statistic's null spread comes from (session 13).

    PYTHONPATH=. python benchmarks/research/ce_noise.py KLT.npz [PROBES=100]

KLT.npz from `TAUS=0.5,1.0 kl_temperature.py ZOO KLT.npz 2` (two samples per probe of every
model, scored by every teacher and reference). For each teacher T, the cross_entropy statistic
(`mean_R log H(S; R_0.5) - log H(S; T_0.5)`, per character, the first PROBES probes, one
sample a probe: a text scan of PROBES queries) is computed for every reference as if it were
the suspect, once on each of the two independent samples. Prints the references' spread
across models (the null's standard deviation a scan sees) and the sampling error of one
scan's value (the two replicates' difference / sqrt 2).

If sampling error were a large share of the null's spread, longer samples or more samples per
probe would sharpen the test. It is not: across the references the two replicates correlate
at 0.96-1.00, and the sampling error is 0.004-0.008 against a spread of 0.036-0.040 (seed-1
and seed-2 zoos): 1-5% of the null's variance. The rest is model-to-model variation, which no
amount of sampling removes. Longer continuations were therefore not run as a scan.
"""
import sys

import numpy as np

d = np.load(sys.argv[1])
NP = int(sys.argv[2]) if len(sys.argv) > 2 else 100
names, roles, sc = list(d["names"]), list(d["roles"]), list(d["teachers"])
k = list(d["taus"]).index(0.5)
refs = [names.index(x) for x in sc if roles[names.index(x)] == "reference"]
teach = [names.index(x) for x in sc if roles[names.index(x)] == "teacher"]


def ce(j):  # [scorer, G]: cross-entropy per character on sample j of the first NP probes
    return -d["LL"][:, k, :, :NP, j].sum(2) / d["chars"][:, :NP, j].sum(1)


def statistic(C, g, T):
    pool = [r for r in refs if r != g]
    return (np.mean([np.log(C[sc.index(names[r]), g]) for r in pool])
            - np.log(C[sc.index(names[T]), g]))


A, B = ce(0), ce(1)
print(f"{'teacher':8s} {'null sd':>8s} {'sampling sd':>12s} {'corr':>5s} {'sampling share of var':>22s}")
for T in teach:
    a = np.array([statistic(A, g, T) for g in refs])
    b = np.array([statistic(B, g, T) for g in refs])
    total = np.std(a, ddof=1)
    noise = np.std(a - b, ddof=1) / np.sqrt(2)
    print(f"{names[T]:8s} {total:8.4f} {noise:12.4f} {np.corrcoef(a, b)[0, 1]:5.2f} "
          f"{(noise / total) ** 2:22.1%}")
