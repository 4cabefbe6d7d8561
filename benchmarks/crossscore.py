"""Cross-score matrix of a zoo: every model's samples scored by every model (research tool).

    python benchmarks/crossscore.py ZOO OUT.npz [N_SAMPLES=4] [THREADS=2] [TEMPERATURE=1.0]
    python benchmarks/crossscore_stats.py OUT.npz [N_SAMPLES=4]

Used to design the zoo's fair-null choices in the README's Results (references at the
suspects' budget; temperature-0.7 teacher text): it samples N per probe of the default suite
from every model, computes exact first-word distributions, and stores LL[scorer, generator,
probe, sample] (nats), characters per sample and the distributions, for offline analysis of
candidate statistics with `crossscore_stats.py`.
"""
import json, sys, time
from pathlib import Path
import numpy as np, torch
torch.set_num_threads(int(sys.argv[4]) if len(sys.argv) > 4 else 2)
from lineage.backends import open_model, view, AccessMode
from lineage.suites import default_suite
from lineage.signatures import exact_distribution

zoo = Path(sys.argv[1]); out = sys.argv[2]; n = int(sys.argv[3])
temp = float(sys.argv[5]) if len(sys.argv) > 5 else 1.0
man = json.loads((zoo / "manifest.json").read_text())["models"]
S = default_suite()
names = [m["name"] for m in man]
B = {m["name"]: open_model(str(zoo / m["path"])) for m in man}
samples, dists = {}, {}
t0 = time.time()
for i, nm in enumerate(names):
    v = view(B[nm], AccessMode.FULL)
    rows = v.sample(S.prompts, n=n, max_new_tokens=S.max_new_tokens, temperature=temp, seed=1000 + i, top_logprobs=1)
    samples[nm] = [[s.text for s in r] for r in rows]
    dists[nm] = exact_distribution(v.word_distribution(S.prompts, [S.buckets] * len(S.probes)))
print("sampled", time.time() - t0, file=sys.stderr)
G = len(names); P = len(S.probes)
LL = np.zeros((G, G, P, n))  # scorer, generator
for a, sc in enumerate(names):
    for g, gn in enumerate(names):
        prompts = [S.prompts[i] for i in range(P) for _ in range(n)]
        conts = [t for r in samples[gn] for t in r]
        LL[a, g] = np.asarray(B[sc].score(prompts, conts)).reshape(P, n)
    print("scored by", sc, time.time() - t0, file=sys.stderr)
chars = np.array([[[max(1, len(t)) for t in r] for r in samples[gn]] for gn in names], float)
np.savez(out, names=np.array(names), roles=np.array([m["role"] for m in man]),
         parents=np.array([m["parent"] or "" for m in man]), recipes=np.array([m["recipe"] for m in man]),
         LL=LL, chars=chars, dists=np.stack([dists[x] for x in names]))
json.dump(samples, open(out + ".samples.json", "w"))
