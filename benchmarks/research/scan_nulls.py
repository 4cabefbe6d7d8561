"""Each statistic's value, its sampling error and the references' null values, for every
(suspect, teacher) pair of a zoo at the scan's last look (session 9).

    PYTHONPATH=. python benchmarks/research/scan_nulls.py capture ZOO HOME ACCESS OUT.json [MAXQ]
    PYTHONPATH=. python benchmarks/research/scan_nulls.py report OUT.json
    PYTHONPATH=. python benchmarks/research/scan_nulls.py pool OUT1.json OUT2.json ...

`capture` scans every suspect without early stopping (HOME must hold the zoo's teachers and
references, e.g. from benchmarks/detection.py --home) and records what
`lineage.stats.prediction_pvalue` sees. `report` prints, per statistic and teacher, the null
values, their mean and sd, the range of the suspects' own sampling error (`se`), the
positives' standard scores beside the negatives' largest, and two combinations measured
against the scan's statistics alone (TPR at 1% FPR, AUC, null p-values at or below 0.01 and
0.05 before Holm):

- `stouffer`: the sum of the statistics' standard scores, tested against the references'
  sums (each reference's scores against the other references);
- `contrast`: a statistic's standard score against T minus its mean over the other
  teachers (the references' values formed the same way).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from scipy import stats as sps

from lineage import stats


def capture(zoo: Path, home: Path, access: str, out: Path, max_queries: int | None) -> None:
    import lineage.verdict as V
    from lineage.engine import Lineage

    seen: list[tuple[float, float, list[float], float]] = []
    orig = V.stats.prediction_pvalue

    def spy(x, null, *, floor_sd=0.0):
        p = orig(x, null, floor_sd=floor_sd)
        seen.append((float(x), float(floor_sd), [float(v) for v in null], p))
        return p

    V.stats.prediction_pvalue = spy
    models = json.loads((zoo / "manifest.json").read_text())["models"]
    eng = Lineage(home)
    rows = []
    for m in [m for m in models if m["role"] == "suspect"]:
        seen.clear()
        r = eng.scan(str(zoo / m["path"]), access=access, max_queries=max_queries,
                     early_stop=False)
        teachers = [c.teacher for c in sorted(r.candidates, key=lambda c: c.teacher)]
        names = list(r.candidates[0].p_parts)  # the order teacher_test computes them in
        last = seen[-len(teachers) * len(names):]
        # teacher_test runs per registered teacher in registration order; the zoo registers
        # them in manifest order, which the sorted names match (t1, t2, ...)
        for i, t in enumerate(teachers):
            for j, n in enumerate(names):
                x, se, null, p = last[i * len(names) + j]
                rows.append({"suspect": m["name"], "recipe": m["recipe"],
                             "parent": m.get("parent"), "teacher": t, "stat": n, "x": x,
                             "se": se, "null": null, "p": p})
        print(m["name"], file=sys.stderr, flush=True)
    out.write_text(json.dumps(rows))


def _tp(x: float, null: np.ndarray) -> float:
    n = null.size
    return float(sps.t.sf((x - null.mean()) / (null.std(ddof=1) * np.sqrt(1 + 1 / n)), n - 1))


def _summary(name: str, pos: list[float], neg: list[float], negp: list[float]) -> None:
    q = np.asarray(negp)
    print(f"  {name:<34} TPR@1%FPR {stats.tpr_at_fpr(pos, neg, 0.01):.2f}  "
          f"AUC {stats.auc(pos, neg):.3f}  null p<=0.01 {int((q <= 0.01).sum())}, "
          f"<=0.05 {int((q <= 0.05).sum())} of {q.size}")


def _index(d: list[dict]) -> tuple[dict, list[str], list[str], list[tuple], dict]:
    """(rows by (suspect, teacher, statistic), teachers, statistics, (suspect, parent) pairs,
    the references' null by (teacher, statistic)) of a capture."""
    key = {(r["suspect"], r["teacher"], r["stat"]): r for r in d}
    teachers = sorted({r["teacher"] for r in d})
    names = list(dict.fromkeys(r["stat"] for r in d))
    sus = sorted({(r["suspect"], r["parent"]) for r in d})
    null = {(t, s): np.asarray(key[(sus[0][0], t, s)]["null"]) for t in teachers for s in names}
    return key, teachers, names, sus, null


def report(path: Path) -> None:
    d = json.loads(path.read_text())
    key, teachers, names, sus, null = _index(d)
    for s in names:
        ses = [r["se"] for r in d if r["stat"] == s]
        print(f"\n{s}: suspects' sampling error {min(ses):.4f}-{max(ses):.4f}")
        for t in teachers:
            a = null[(t, s)]
            zs = sorted((((key[(n, t, s)]["x"] - a.mean()) / a.std(ddof=1)), n, p == t)
                        for n, p in sus)[::-1]
            print(f"  {t} null {np.round(a, 3).tolist()} mean {a.mean():.3f} sd "
                  f"{a.std(ddof=1):.3f}")
            print("     " + " ".join(f"{n}{'*' if p else ''}:{z:.1f}" for z, n, p in zs[:14]))
    print(f"\ncorrelation of the references' values between statistics ({', '.join(names)}):")
    for t in teachers:
        c = np.corrcoef([null[(t, s)] for s in names])
        print(f"  {t} " + "; ".join(f"{names[i]}~{names[j]} {c[i, j]:.2f}"
                                    for i in range(len(names)) for j in range(i + 1, len(names))))
    print("\nTPR at 1% FPR over all pairs (positives marked * above):")
    for label, (pos, neg, negp, _) in _scores(d).items():
        _summary(label, pos, neg, negp)


def _scores(d: list[dict]) -> dict[str, tuple[list, list, list, list]]:
    """{form: (positives' -log10 p, negatives' -log10 p, negatives' p, positives' recipes)}
    for each statistic alone and the two combinations."""
    key, teachers, names, sus, null = _index(d)
    recipe = {r["suspect"]: r["recipe"] for r in d}
    out: dict[str, tuple[list, list, list, list]] = {}
    for s in names:
        pos, neg, negp, rec = [], [], [], []
        for t in teachers:
            for n, p in sus:
                r = key[(n, t, s)]
                (pos if p == t else neg).append(-np.log10(max(r["p"], 1e-300)))
                if p != t:
                    negp.append(r["p"])
                else:
                    rec.append(recipe[n])
        out[s] = (pos, neg, negp, rec)
    for form in ("stouffer", "contrast"):
        for combo in ([names] if form == "stouffer" else [[s] for s in names]):
            pos, neg, negp, rec = [], [], [], []
            for t in teachers:
                m = len(null[(t, combo[0])])

                def val(get, t=t, combo=combo, form=form):
                    z = {u: sum((get(u, s) - null[(u, s)].mean()) / null[(u, s)].std(ddof=1)
                                for s in combo) for u in teachers}
                    return z[t] if form == "stouffer" \
                        else z[t] - np.mean([z[u] for u in teachers if u != t])

                if form == "stouffer":  # each reference against the other references
                    ref = np.asarray([sum(
                        (null[(t, s)][j] - np.delete(null[(t, s)], j).mean())
                        / np.delete(null[(t, s)], j).std(ddof=1) for s in combo)
                        for j in range(m)])
                else:
                    ref = np.asarray([val(lambda u, s, j=j: null[(u, s)][j]) for j in range(m)])
                for n, p in sus:
                    pv = _tp(val(lambda u, s, n=n: key[(n, u, s)]["x"]), ref)
                    (pos if p == t else neg).append(-np.log10(max(pv, 1e-300)))
                    if p != t:
                        negp.append(pv)
                    else:
                        rec.append(recipe[n])
            out[f"{form} of {'+'.join(combo)}"] = (pos, neg, negp, rec)
    return out


def pooled(paths: list[Path]) -> None:
    """Each form's pairs from several zoos' captures as one set: TPR at 1% FPR with its
    Clopper-Pearson interval, AUC, null p-values, and TPR per recipe at the pooled threshold."""
    per = [_scores(json.loads(p.read_text())) for p in paths]
    print(f"{len(paths)} captures pooled")
    for label in per[0]:
        pos = [x for s in per for x in s[label][0]]
        neg = [x for s in per for x in s[label][1]]
        negp = [x for s in per for x in s[label][2]]
        rec = [x for s in per for x in s[label][3]]
        k, n = stats.tpr_at_fpr_count(pos, neg, 0.01)
        lo, hi = stats.clopper_pearson(k, n)
        thr = sorted(neg)[::-1][int(np.floor(0.01 * len(neg)))]
        by = {}
        for x, r in zip(pos, rec):
            by.setdefault(r, []).append(x > thr)
        print(f"  {label:<34} TPR@1%FPR {k / n:.2f} [{lo:.2f}, {hi:.2f}]  "
              f"AUC {stats.auc(pos, neg):.3f}  null p<=0.01 {sum(q <= 0.01 for q in negp)} "
              f"of {len(negp)}  " + " ".join(f"{r}={np.mean(v):.2f}" for r, v in sorted(by.items())))


if __name__ == "__main__":
    if sys.argv[1] == "capture":
        capture(Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4], Path(sys.argv[5]),
                int(sys.argv[6]) if len(sys.argv) > 6 else None)
    elif sys.argv[1] == "pool":
        pooled([Path(x) for x in sys.argv[2:]])
    else:
        report(Path(sys.argv[2]))
