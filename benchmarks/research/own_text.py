"""Every zoo model's likelihood of the teachers' and references' text (session 10).

    PYTHONPATH=. python benchmarks/research/own_text.py sample ZOO OUT.npz [N=4] [TEMPERATURE=1.0] [MAX_NEW_TOKENS=suite's]
    PYTHONPATH=. python benchmarks/research/own_text.py report OUT.npz [PROBES=128] [N=4]

`sample` draws N completions per probe of the default suite from every teacher and reference,
and scores each under every model of the zoo (suspects included): LL[scorer, generator, probe,
sample] in nats, with characters per sample. `report` grades statistics of the form

    s(X, T) = bpc_X(controls' text) - bpc_X(T's text)

(X's preference for T's text over control text, higher = closer to T) against the references'
leave-one-out values, per recipe, with TPR at 1% FPR over all negative pairs. Controls are the
references (leave out the scorer), the other teachers, or both; the plain form (no control,
X compared with the references' own bpc of T's text) is the baseline. It grades with the
manifest and is not a detector.
"""
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lineage import stats


def sample(zoo: Path, out: str, n: int, temp: float, mnt: int = 0) -> None:
    from lineage.backends import AccessMode, open_model, view
    from lineage.suites import default_suite
    torch.set_num_threads(2)
    man = json.loads((zoo / "manifest.json").read_text())["models"]
    S = default_suite(); P = len(S.probes)
    names = [m["name"] for m in man]
    gens = [m["name"] for m in man if m["role"] != "suspect"]
    t0 = time.time()
    samples = {}
    for i, nm in enumerate(gens):
        v = view(open_model(str(zoo / nm)), AccessMode.FULL)
        rows = v.sample(S.prompts, n=n, max_new_tokens=mnt or S.max_new_tokens, temperature=temp,
                        seed=9000 + i, top_logprobs=1)
        samples[nm] = [s.text for r in rows for s in r]
    print("sampled", round(time.time() - t0), file=sys.stderr, flush=True)
    prompts = [S.prompts[i] for i in range(P) for _ in range(n)]
    LL = np.zeros((len(names), len(gens), P, n))
    for a, sc in enumerate(names):
        b = open_model(str(zoo / sc))
        for g, gn in enumerate(gens):
            LL[a, g] = np.asarray(b.score(prompts, samples[gn])).reshape(P, n)
        print("scored by", sc, round(time.time() - t0), file=sys.stderr, flush=True)
    chars = np.array([[max(1, len(t)) for t in samples[g]] for g in gens], float).reshape(len(gens), P, n)
    np.savez(out, names=np.array(names), roles=np.array([m["role"] for m in man]),
             parents=np.array([m.get("parent") or "" for m in man]),
             recipes=np.array([m["recipe"] for m in man]), gens=np.array(gens), LL=LL, chars=chars)


def _bpc(d, x: int, g: int, probes, k) -> float:
    ll = d["LL"][x, g][probes][:, :k].sum()
    return float(-ll / d["chars"][g][probes][:, :k].sum() / np.log(2))


FORMS = ("plain", "refs", "teachers", "both", "fit")


def roles_of(d: dict) -> tuple[list[int], list[int], list[int]]:
    """Indices of the teachers, references and suspects among `d["names"]`."""
    roles = list(d["roles"])
    return tuple([i for i, r in enumerate(roles) if r == role]  # type: ignore[return-value]
                 for role in ("teacher", "reference", "suspect"))


def grade(d: dict, T: list[int], R: list[int], X: list[int], value) -> tuple[list, dict, list]:
    """Each suspect-teacher pair's value(x, t) as a standard score against the references'
    own values (value(r, t), which leaves r out of its controls wherever value does). Returns
    (pairs [(suspect, recipe, teacher, positive, z)], rows {recipe or "all": (TPR count at 1%
    FPR, positives, AUC, "suspect:z ...")}, the top 3 negatives [(z, "suspect/teacher")])."""
    names, recipes, parents = list(d["names"]), list(d["recipes"]), list(d["parents"])
    pairs = []
    for t in T:
        null = [value(r, t) for r in R]
        mu, sd = np.mean(null), np.std(null, ddof=1)
        for x in X:
            pairs.append((names[x], recipes[x], names[t], parents[x] == names[t],
                          (value(x, t) - mu) / sd))
    neg = [z for *_, p, z in pairs if not p]
    rows = {}
    for rec in sorted({r for _, r, _, p, _ in pairs if p}) + ["all"]:
        pos = [z for _, r, _, p, z in pairs if p and rec in (r, "all")]
        kk, nn = stats.tpr_at_fpr_count(pos, neg, 0.01)
        rows[rec] = (kk, nn, round(stats.auc(pos, neg), 3),
                     " ".join(f"{s}:{z:.1f}" for s, r, _, p, z in pairs if p and r == rec))
    top = sorted(((z, f"{s}/{t}") for s, _, t, p, z in pairs if not p), reverse=True)[:3]
    return pairs, rows, top


def report(path: str, n_probes: int, k: int, quiet: bool = False) -> dict:
    d = dict(np.load(path))
    names, gens = list(d["names"]), list(d["gens"])
    probes = np.arange(d["LL"].shape[2])[:n_probes]
    T, R, X = roles_of(d)
    gi = {names[i]: gens.index(names[i]) for i in T + R}
    bpc = {(x, g): _bpc(d, x, gi[names[g]], probes, k) for x in range(len(names)) for g in T + R}

    def value(form: str, x: int, t: int) -> float:
        if form == "plain":
            return -bpc[x, t]
        ctrl = {"refs": R, "teachers": T, "both": R + T, "fit": R + T}[form]
        ctrl = [c for c in ctrl if c not in (x, t)]
        if form == "fit":  # scorer's bpc against the text's difficulty (mean over other refs)
            def diff(g):
                return float(np.mean([bpc[r, g] for r in R if r not in (x, g)]))
            b, a = np.polyfit([diff(c) for c in ctrl], [bpc[x, c] for c in ctrl], 1)
            return float(a + b * diff(t)) - bpc[x, t]
        return float(np.mean([bpc[x, c] for c in ctrl])) - bpc[x, t]

    out = {}
    for form in FORMS:
        pairs, rows, top = grade(d, T, R, X, lambda x, t, form=form: value(form, x, t))
        out[form] = {"rows": rows, "top": top}
        if not quiet:
            print(f"\n{form}  probes {len(probes)} x {k}; top negatives "
                  + ", ".join(f"{p} {z:.1f}" for z, p in top))
            for rec, (kk, nn, auc, zs) in rows.items():
                print(f"  {rec:<12} {kk}/{nn} tpr {kk / nn:.2f} auc {auc:.3f}  {zs if rec != 'all' else ''}")
    return out


if __name__ == "__main__":
    if sys.argv[1] == "sample":
        sample(Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 4,
               float(sys.argv[5]) if len(sys.argv) > 5 else 1.0,
               int(sys.argv[6]) if len(sys.argv) > 6 else 0)
    else:
        report(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 10**9,
               int(sys.argv[4]) if len(sys.argv) > 4 else 10**9)
