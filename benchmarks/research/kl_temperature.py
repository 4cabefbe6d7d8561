"""KL(G || T_tau) for a grid of teacher temperatures, and its minimum over tau (session 8).

    PYTHONPATH=. python benchmarks/research/kl_temperature.py ZOO OUT.npz [N=4]

Samples N completions per probe of the default suite from every model of ZOO at temperature 1
(SAMPLE_TAU, session 11),
keeps each sample's own log-likelihood (as full/logprobs access would reveal it), and scores
every sample under each teacher with its logits divided by tau. Prints, per teacher, for each
tau and for the minimum over tau, the references' values and each suspect's t-prediction
p-value (linear and log scale).
"""
import json, sys
from pathlib import Path
import numpy as np, torch
torch.set_num_threads(2)
from lineage import stats
from lineage.backends import open_model, view, AccessMode
from lineage.suites import default_suite

import os
TAUS = tuple(float(x) for x in os.environ.get("TAUS", "0.5,0.6,0.7,0.8,0.9,1.0,1.2").split(","))
SAMPLE_TAU = float(os.environ.get("SAMPLE_TAU", "1.0"))  # the generators' temperature (session 11)


class W(torch.nn.Module):
    def __init__(s, m):
        super().__init__(); s.m = m; s.tau = 1.0
    def forward(s, **kw):
        o = s.m(**kw); o.logits = o.logits / s.tau; return o
    def get_output_embeddings(s):
        return s.m.get_output_embeddings()


def main(zoo: Path, out: str, n: int) -> None:
    man = json.loads((zoo / "manifest.json").read_text())["models"]
    S = default_suite(); P = len(S.probes)
    names = [m["name"] for m in man]; roles = [m["role"] for m in man]
    teachers = [x for x, r in zip(names, roles) if r != "suspect"]  # every scorer
    prompts = [S.prompts[i] for i in range(P) for _ in range(n)]
    selfll = np.zeros((len(names), P, n)); chars = np.zeros((len(names), P, n))
    samples = {}
    for g, nm in enumerate(names):
        v = view(open_model(str(zoo / nm)), AccessMode.FULL)
        rows = v.sample(S.prompts, n=n, max_new_tokens=S.max_new_tokens, temperature=SAMPLE_TAU,
                        seed=7000 + g, top_logprobs=1)
        samples[nm] = [t for r in rows for t in (s.text for s in r)]
        selfll[g] = np.array([[sum(s.token_logprobs) for s in r] for r in rows])
        chars[g] = np.array([[max(1, len(s.text)) for s in r] for r in rows])
        print("sampled", nm, file=sys.stderr, flush=True)
    LL = np.zeros((len(teachers), len(TAUS), len(names), P, n))
    for a, t in enumerate(teachers):
        b = open_model(str(zoo / t)); w = W(b.model); b.model = w
        for k, tau in enumerate(TAUS):
            w.tau = tau
            for g, nm in enumerate(names):
                LL[a, k, g] = np.asarray(b.score(prompts, samples[nm])).reshape(P, n)
        print("scored by", t, file=sys.stderr, flush=True)
    np.savez(out, names=np.array(names), roles=np.array(roles), teachers=np.array(teachers),
             taus=np.array(TAUS), LL=LL, selfll=selfll, chars=chars)
    report(out)


def report(path: str) -> None:
    d = np.load(path)
    names, roles = list(d["names"]), list(d["roles"])
    KL = (d["selfll"][None, None] - d["LL"]).sum((3, 4)) / d["chars"].sum((1, 2))  # [T, tau, G]
    refs = [g for g, r in enumerate(roles) if r == "reference"]
    sus = [g for g, r in enumerate(roles) if r == "suspect"]
    for a, t in enumerate(d["teachers"]):
        rows = [(f"tau={tau}", KL[a, k]) for k, tau in enumerate(d["taus"])]
        rows.append(("min", KL[a].min(0)))
        for label, v in rows:
            null = v[refs]
            s = " ".join(f"{names[g]}={v[g]:.3f}(p{stats.prediction_pvalue(-v[g], -null):.2g}/"
                         f"{stats.prediction_pvalue(-np.log(v[g]), -np.log(null)):.2g})"
                         for g in sus)
            print(f"{t} {label:8s} refs {np.round(null, 3)}  {s}")


if __name__ == "__main__":
    if sys.argv[1] == "--report":
        report(sys.argv[2])
    else:
        main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 4)
