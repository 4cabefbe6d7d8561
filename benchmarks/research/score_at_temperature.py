import json, sys, time
from pathlib import Path
import numpy as np, torch
torch.set_num_threads(1)
from lineage.backends import open_model
from lineage.suites import default_suite
zoo = Path(sys.argv[1]); samp = json.load(open(sys.argv[2])); out = sys.argv[3]; tau = float(sys.argv[4])
man = json.loads((zoo / "manifest.json").read_text())["models"]
S = default_suite(); names = [m["name"] for m in man]
scorers = [m["name"] for m in man if m["role"] != "suspect"]
n = len(samp[names[0]][0]); P = len(S.probes)
class W(torch.nn.Module):
    def __init__(s, m): super().__init__(); s.m = m
    def forward(s, **kw):
        o = s.m(**kw); o.logits = o.logits / tau; return o
LL = np.zeros((len(scorers), len(names), P, n))
for a, sc in enumerate(scorers):
    b = open_model(str(zoo / sc)); b.model = W(b.model)
    for g, gn in enumerate(names):
        prompts = [S.prompts[i] for i in range(P) for _ in range(n)]
        conts = [t for r in samp[gn] for t in r]
        LL[a, g] = np.asarray(b.score(prompts, conts)).reshape(P, n)
    print(sc, file=sys.stderr, flush=True)
np.savez(out, scorers=np.array(scorers), names=np.array(names), LL=LL)
