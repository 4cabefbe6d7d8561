"""Text access, probing with the teacher's own text as context (session 11).

    PYTHONPATH=. python benchmarks/research/teacher_prefix.py sample ZOO OUT.npz [TAU=1.0]
    PYTHONPATH=. python benchmarks/research/teacher_prefix.py report OUT.npz ZOO/manifest.json [PROBES=128]

`sample`: each teacher T writes one sharpened (temperature 0.5) continuation of every probe;
its first half (by words) is appended to the probe, giving T's prefixed prompts. Every model
of the zoo then writes one continuation (temperature TAU) of every teacher's prefixed
prompts, as a text-access suspect would, and every teacher and reference scores them at
temperatures 0.5 and 1. A student has seen its teacher's text in training, so on the
teacher's own context its continuations may follow the teacher more closely than on the
plain probes. `report` grades the cross_entropy log ratio on T's prefixed prompts against
the references (leave-one-out), per recipe, TPR at 1% FPR over all negative pairs. Grades
with the manifest; not a detector.
"""
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lineage import stats


def sample(zoo: Path, out: str, tau: float) -> None:
    from lineage.backends import AccessMode, open_model, view
    from lineage.suites import default_suite
    torch.set_num_threads(2)
    man = json.loads((zoo / "manifest.json").read_text())["models"]
    S = default_suite(); P = len(S.probes)
    names = [m["name"] for m in man]; roles = [m["role"] for m in man]
    teachers = [n for n, r in zip(names, roles) if r == "teacher"]
    scorers = [n for n, r in zip(names, roles) if r != "suspect"]
    t0 = time.time()
    prompts = {}
    for i, t in enumerate(teachers):
        v = view(open_model(str(zoo / t)), AccessMode.FULL)
        rows = v.sample(S.prompts, n=1, max_new_tokens=S.max_new_tokens, temperature=0.5,
                        seed=5000 + i, top_logprobs=0)
        prompts[t] = []
        for p, r in zip(S.prompts, rows):
            words = r[0].text.split(" ")
            prompts[t].append(p + " ".join(words[: max(1, len(words) // 2)]))
    conts = {}
    for g, nm in enumerate(names):
        v = view(open_model(str(zoo / nm)), AccessMode.FULL)
        for a, t in enumerate(teachers):
            rows = v.sample(prompts[t], n=1, max_new_tokens=S.max_new_tokens, temperature=tau,
                            seed=6000 + 7 * g + a, top_logprobs=0)
            conts[nm, t] = [r[0].text for r in rows]
        print("sampled", nm, round(time.time() - t0), file=sys.stderr, flush=True)
    LL = np.zeros((len(scorers), len(teachers), len(names), P, 2))
    for s, sc in enumerate(scorers):
        b = open_model(str(zoo / sc))
        for a, t in enumerate(teachers):
            for g, nm in enumerate(names):
                LL[s, a, g] = np.asarray(b.score_tempered(prompts[t], conts[nm, t], (0.5, 1.0)))
        print("scored by", sc, round(time.time() - t0), file=sys.stderr, flush=True)
    chars = np.array([[[max(1, len(x)) for x in conts[nm, t]] for nm in names] for t in teachers],
                     float)
    np.savez(out, names=np.array(names), roles=np.array(roles), scorers=np.array(scorers),
             teachers=np.array(teachers), LL=LL, chars=chars)


def report(path: str, manifest: str, n_probes: int) -> None:
    d = np.load(path); man = {m["name"]: m for m in json.load(open(manifest))["models"]}
    names, roles = list(d["names"]), list(d["roles"]); sc = list(d["scorers"])
    teachers = list(d["teachers"])
    # CE[scorer, prefix teacher, generator, temperature] nats per character
    CE = -d["LL"][:, :, :, :n_probes].sum(3) / d["chars"][None, :, :, :n_probes].sum(3)[..., None]
    refs = [names.index(x) for x in sc if roles[names.index(x)] == "reference"]
    sus = [g for g, r in enumerate(roles) if r == "suspect"]
    for label, k in (("tau0.5", 0), ("tau1", 1)):
        for form in ("own", "contrast"):
            def stat(g, a, pool):
                T = sc.index(teachers[a])
                def lr(b):
                    return np.mean([np.log(CE[sc.index(names[r]), b, g, k]) for r in pool]) \
                        - np.log(CE[T, b, g, k])
                if form == "own":
                    return lr(a)
                return lr(a) - np.mean([lr(b) for b in range(len(teachers)) if b != a])
            pos, neg, rec = [], [], {}
            for a, t in enumerate(teachers):
                null = np.array([stat(r, a, [q for q in refs if q != r]) for r in refs])
                for g in sus:
                    p = stats.prediction_pvalue(stat(g, a, refs), null)
                    par = man[names[g]]["parent"]
                    (pos if par == t else neg).append(-np.log10(p))
                    if par == t:
                        rec.setdefault(man[names[g]]["recipe"], []).append(round(p, 3))
            kk, nn = stats.tpr_at_fpr_count(pos, neg, 0.01)
            print(f"{label} {form:8s} TPR@1%={kk}/{nn} AUC={stats.auc(pos, neg):.3f} "
                  + " ".join(f"{r}={v}" for r, v in sorted(rec.items())))


if __name__ == "__main__":
    if sys.argv[1] == "sample":
        sample(Path(sys.argv[2]), sys.argv[3], float(sys.argv[4]) if len(sys.argv) > 4 else 1.0)
    else:
        report(sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 10**9)
