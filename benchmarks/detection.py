"""Detection benchmark: register a zoo's teachers and references, scan every suspect, and
measure how well lineage separates distilled students from everything else.

    python benchmarks/detection.py --zoo DIR [--access full|logprobs|text] [--max-queries N]
                                   [--alpha 0.01] [--echo [--echo-texts K]] [--home DIR]
                                   [--out FILE.json]

`--echo` (logprobs access): every suspect also scores the teachers' sharpened text, one query
per text, as through an endpoint's echo prompt logprobs (`Lineage.scan(echo=True)`; the local
weights emulate the endpoint); `--echo-texts K` caps the texts per probe per teacher (default:
all stored, as full access scores).

Pairs: every (suspect, teacher). A pair is positive when the zoo's manifest names the teacher as
the suspect's parent; all other pairs are negatives (independents, and students of *other*
teachers: the hard negatives). The full zoo also has 14 cheap independents (recipe
`independent_small`: smaller models, fewer tokens) so that calibration rests on >= 100 null
pairs; they are easy nulls, so their false positives are reported apart, "TPR@1%FPR (hard)"
leaves them out, and the core AUC compares against the full-budget independents only. The
manifest is read here, to grade; the scan never sees it. Run once per alpha to check
calibration at each (`--alpha 0.05`): early stopping depends on alpha.

Printed per recipe and overall, each with a Clopper-Pearson 95% interval where it is a rate:
AUC (positives of the recipe vs all negative pairs, scored by the evidence p below), TPR at FPR 0.01,
empirical FPR at alpha over negative pairs (verdict "derived" on a negative), top-1 attribution
(the teacher with the smallest p is the parent) and mean queries. Also "distillation took":
each student's bits per character on held-out teacher samples and on real text.

The ranking score (AUC, TPR at 1% FPR) is -log10 of the *evidence p*: the teacher's combined
p-value at the scan's last look (`lineage.verdict.combine` of its statistics' p-values), before
the look's alpha-spending weight. The reported p (`raw_p_value`) divides by that weight, so a
scan that stopped for futility at its first look reports p = 1, and such pairs would tie; the
AUC on the reported p stays in the JSON as `auc_reported_p`. Verdicts, TPR at alpha and the
FPR at alpha use the reported, corrected p-values.

`python benchmarks/targets.py RUN.json ...` prints issue 4's targets table from these files.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from lineage import stats
from lineage.engine import Lineage, Settings
from lineage.suites import default_suite, load_suite
from lineage.verdict import CONTRAST_OF, combine

#: --contrast choices ("on"/"off" as the first runs with the option named them)
CONTRASTS = {"none": (), "divergence": ("divergence",), "all": tuple(CONTRAST_OF),
             "on": tuple(CONTRAST_OF), "off": ()}


def _evidence_p(c: dict) -> float:
    """The combined p at the scan's last look, before the look weight (module docstring)."""
    return combine(c["p_parts"]) if c.get("p_parts") else c["raw_p_value"]


def _neglog10(p: float, c: dict) -> float:
    """-log10 p, ties broken by the candidate's statistic."""
    return -math.log10(max(p, 1e-300)) + 1e-9 * c["statistic"]


def _score(c: dict) -> float:
    return _neglog10(_evidence_p(c), c)


def _reported(c: dict) -> float:
    return _neglog10(c["raw_p_value"], c)


def run(zoo: Path, access: str, max_queries: int | None, alpha: float, home: Path,
        early_stop: bool | None = None, echo: bool = False,
        echo_texts: int | None = None, suite: Path | None = None,
        contrast: tuple[str, ...] | None = None) -> dict:
    if early_stop is None:  # the engine's default: sequential for remote access modes only
        early_stop = access != "full"
    manifest = json.loads((zoo / "manifest.json").read_text())
    models = manifest["models"]
    S = load_suite(suite) if suite else default_suite()
    eng = Lineage(home, suite=S, settings=None if contrast is None
                  else Settings(contrast=contrast))
    have = {m.name for m in eng.list_models(limit=10_000)}
    t0 = time.monotonic()
    for m in models:
        if m["role"] in ("teacher", "reference") and m["name"] not in have:
            print(f"register {m['name']} ({m['role']})", file=sys.stderr, flush=True)
            eng.register(m["name"], str(zoo / m["path"]), m["role"])
    t_reg = time.monotonic() - t0
    scans = []
    t0 = time.monotonic()
    for m in [m for m in models if m["role"] == "suspect"]:
        r = eng.scan(str(zoo / m["path"]), access=access, max_queries=max_queries, alpha=alpha,
                     early_stop=early_stop, echo=echo, echo_texts=echo_texts)
        d = r.to_json()
        best = d["candidates"][0]["teacher"]
        scans.append({"suspect": m["name"], "recipe": m["recipe"], "parent": m.get("parent"),
                      "queries": d["queries"], "top1": best,
                      "stopped_early": d["stopped_early"],
                      "candidates": [{k: c[k] for k in ("teacher", "p_value", "raw_p_value",
                                                        "statistic", "similarity", "closeness",
                                                        "verdict", "p_parts")}
                                     for c in d["candidates"]]})
        print(f"scan {m['name']:<22} {m['recipe']:<18} parent={m.get('parent')!s:<6} "
              + " ".join(f"{c['teacher']}:{c['verdict'][:3]}:{c['raw_p_value']:.1e}"
                         for c in d["candidates"]), file=sys.stderr, flush=True)
    t_scan = time.monotonic() - t0
    took = [{"name": m["name"], "recipe": m["recipe"], "parent": m.get("parent"),
             **(m.get("eval") or {})} for m in models]
    return grade({
        "zoo": str(zoo), "access": access, "max_queries": max_queries, "alpha": alpha,
        "early_stop": early_stop, "echo": echo, "echo_texts": echo_texts,
        "suite": {"name": S.name, "hash": S.hash}, "contrast": list(eng.settings.contrast),
        "teachers": [m["name"] for m in models if m["role"] == "teacher"],
        "n_references": sum(m["role"] == "reference" for m in models),
        "register_seconds": t_reg, "scan_seconds": t_scan,
        "scans": scans, "distillation": took,
    })


SETTINGS = ("access", "max_queries", "alpha", "early_stop", "teachers", "echo", "echo_texts",
            "suite", "contrast")


def _setting(run: dict, k: str) -> object:
    """A run's setting `k`; runs from before --echo, --suite and --contrast existed did not
    echo, used the default suite and no teacher contrast (a run of the first --contrast
    recorded on/off: on was every statistic's contrast)."""
    if k == "suite" and "suite" not in run:
        S = default_suite()
        return {"name": S.name, "hash": S.hash}
    if k == "contrast":
        c = run.get(k, [])
        return sorted(CONTRAST_OF) if c is True else [] if c is False else sorted(c)
    return run.get(k, False if k == "echo" else None)


def pool(runs: list[dict]) -> dict:
    """Several saved runs with the same settings (e.g. on zoos built with other seeds) as one
    run: their scans side by side, suspect names prefixed by the run's index when there are
    several."""
    first = runs[0]
    for r in runs[1:]:
        diff = [k for k in SETTINGS if _setting(r, k) != _setting(first, k)]
        if diff:
            raise SystemExit(f"cannot pool runs that differ in {', '.join(diff)}")
    if len(runs) == 1:
        return first
    return {**first, "zoo": " + ".join(r["zoo"] for r in runs),
            "register_seconds": sum(r["register_seconds"] for r in runs),
            "scan_seconds": sum(r["scan_seconds"] for r in runs),
            "scans": [{**x, "suspect": f"{i}:{x['suspect']}"}
                      for i, r in enumerate(runs) for x in r["scans"]],
            "distillation": [{**m, "name": f"{i}:{m['name']}"}
                             for i, r in enumerate(runs) for m in r["distillation"]]}


def grade(res: dict) -> dict:
    """The figures of a run from its scans (`res` holds what `run` measured); `--regrade`
    recomputes them from a saved run without scanning again."""
    scans = res["scans"]
    pairs = [(x["suspect"], x["recipe"], c["teacher"], c["teacher"] == x["parent"], c)
             for x in scans for c in x["candidates"]]  # (suspect, recipe, teacher, +, cand)
    neg = [c for (_, _, _, pos, c) in pairs if not pos]
    neg_scores = [_score(c) for c in neg]
    # "hard" negatives: every negative pair but the cheap calibration nulls (independent_small)
    hard_scores = [_score(c) for (_, rec, _, pos, c) in pairs
                   if not pos and _kind(rec) != "independent_small"]
    indep_neg = [_score(c) for (s, rec, _, pos, c) in pairs
                 if not pos and _kind(rec) == "independent"]

    def row(name: str, sel) -> dict:
        pos = [c for (s, rec, t, p, c) in pairs if p and sel(rec, t)]
        sus = [x for x in scans if x["parent"] and sel(x["recipe"], x["parent"])]
        k_tp = sum(c["verdict"] == "derived" for c in pos)
        top1 = sum(x["top1"] == x["parent"] for x in sus)
        ps = [_score(c) for c in pos]
        k_all, n = stats.tpr_at_fpr_count(ps, neg_scores, 0.01)
        k_hard, _ = stats.tpr_at_fpr_count(ps, hard_scores, 0.01)
        return {
            "recipe": name, "positives": len(pos),
            "auc": stats.auc(ps, neg_scores),
            "auc_ci": stats.auc_interval(ps, neg_scores),
            "auc_reported_p": stats.auc([_reported(c) for c in pos],
                                        [_reported(c) for c in neg]),
            "tpr_at_fpr_0.01": k_all / n if n else float("nan"),
            "tpr_at_fpr_0.01_ci": stats.clopper_pearson(k_all, n),
            "tpr_at_fpr_0.01_hard": k_hard / n if n else float("nan"),
            "tpr_at_fpr_0.01_hard_ci": stats.clopper_pearson(k_hard, n),
            "tpr_at_alpha": k_tp / len(pos) if pos else float("nan"),
            "tpr_at_alpha_ci": stats.clopper_pearson(k_tp, len(pos)),
            "top1": top1 / len(sus) if sus else float("nan"),
            "top1_ci": stats.clopper_pearson(top1, len(sus)),
            "mean_queries": float(np.mean([x["queries"] for x in sus])) if sus else float("nan"),
        }

    recipes = sorted({rec for (_, rec, _, p, _) in pairs if p})
    rows = [row(r, lambda x, _t, r=r: x == r) for r in recipes] \
        + [row("all", lambda x, _t: True)]
    # the same figures per teacher: a teacher whose students sit close to the references
    # shows here, not in the recipe rows
    by_teacher = [row(t, lambda _x, p, t=t: p == t) for t in res["teachers"]
                  if any(x["parent"] == t for x in scans)]
    core = [c for (s, rec, t, p, c) in pairs if p and rec in ("logit_kd", "seq_kd")]
    k_fp = sum(c["verdict"] == "derived" for c in neg)
    fp_by_kind = defaultdict(lambda: [0, 0])
    for (s, rec, t, p, c) in pairs:
        if not p:
            kind = _kind(rec)
            fp_by_kind[kind][0] += c["verdict"] == "derived"
            fp_by_kind[kind][1] += 1
    # Each statistic alone against the combination, in the same run. `similarity` alone is the
    # baseline: the first-word signature of DESIGN.md that the core issue started from.
    parts = sorted({k for (*_, c) in pairs for k in c.get("p_parts", {})})
    indep_pairs = [c for (s, rec, t, p, c) in pairs if not p and _kind(rec) == "independent"]
    all_pos = [c for (s, rec, t, p, c) in pairs if p]

    def sc(c: dict, k: str | None) -> float:
        p = _evidence_p(c) if k is None else c.get("p_parts", {}).get(k, 1.0)
        return -math.log10(max(p, 1e-300))

    by_statistic = {
        (k or "combined"): {
            "core_auc_vs_independents": stats.auc([sc(c, k) for c in core],
                                                  [sc(c, k) for c in indep_pairs]),
            "auc_all": stats.auc([sc(c, k) for c in all_pos], [sc(c, k) for c in neg]),
            "tpr_at_fpr_0.01_all": stats.tpr_at_fpr([sc(c, k) for c in all_pos],
                                                    [sc(c, k) for c in neg], 0.01),
        } for k in [None, *parts]}
    return {
        **res,
        "mean_queries_all_suspects": float(np.mean([x["queries"] for x in scans])),
        "rows": rows,
        "by_teacher": by_teacher,
        "core_auc_logit_and_seq_kd_vs_independents": stats.auc([_score(c) for c in core],
                                                                 indep_neg),
        "fpr_at_alpha": k_fp / len(neg) if neg else float("nan"),
        "fpr_at_alpha_ci": stats.clopper_pearson(k_fp, len(neg)),
        "negative_pairs": len(neg),
        "fpr_by_kind": {k: {"fp": a, "n": b, "rate": a / b, "ci": stats.clopper_pearson(a, b)}
                        for k, (a, b) in fp_by_kind.items()},
        "by_statistic": by_statistic,
    }


def _kind(recipe: str) -> str:
    """What sort of negative a suspect of this recipe is."""
    if recipe == "independent_small":
        return "independent_small"  # cheap calibration nulls: smaller, fewer tokens
    return "independent" if recipe.startswith("independent") else "other_teacher_student"


def _ci(ci) -> str:
    return f"[{ci[0]:.2f},{ci[1]:.2f}]"


def _print_row(r: dict) -> None:
    print(f"{r['recipe']:<13}{r['positives']:>3}"
          f"{r['auc']:>6.3f} {_ci(r['auc_ci']):>12}"
          f"{r['tpr_at_fpr_0.01']:>5.2f} {_ci(r['tpr_at_fpr_0.01_ci']):>12}"
          f"{r['tpr_at_fpr_0.01_hard']:>5.2f} {_ci(r['tpr_at_fpr_0.01_hard_ci']):>12}"
          f"{r['tpr_at_alpha']:>5.2f} {_ci(r['tpr_at_alpha_ci']):>12}"
          f"{r['top1']:>5.2f} {_ci(r['top1_ci']):>12}{r['mean_queries']:>8.0f}")


def _print_threshold(res: dict, k: int = 5) -> None:
    """Where TPR at 1% FPR is decided (as `stats.tpr_at_fpr_count` decides it): the largest
    negatives by score, the threshold past the 1% allowed above it, and the positives at or
    below it, each with its evidence p."""
    pairs = [(_score(c), _evidence_p(c), f"{x['suspect']}/{c['teacher']}", x["recipe"],
              c["teacher"] == x["parent"]) for x in res["scans"] for c in x["candidates"]]
    neg = sorted((q for q in pairs if not q[4]), reverse=True)
    if not neg:
        return
    allowed = math.floor(0.01 * len(neg))
    thr = neg[allowed] if allowed < len(neg) else None
    print(f"\nLargest negatives, evidence p ({allowed} of {len(neg)} may sit above the 1% FPR "
          "threshold): " + ", ".join(f"{n} {p:.4f}" for _, p, n, _, _ in neg[:k]))
    missed = sorted((q for q in pairs if q[4] and thr is not None and q[0] <= thr[0]),
                    reverse=True)
    print(f"Positives at or below the threshold ({thr[1] if thr else 0:.4f}): "
          + (", ".join(f"{n} ({r}) {p:.4f}" for _, p, n, r, _ in missed) or "none"))


def print_report(res: dict) -> None:
    cs = _setting(res, "contrast")
    assert isinstance(cs, list)
    echo = (" + echo" + (f" ({res['echo_texts']} text/probe)" if res.get("echo_texts") else "")
            if res.get("echo") else "")
    print(f"\nDetection on {res['zoo']}  access={res['access']}{echo}  "
          f"max_queries={res['max_queries']}"
          f"  alpha={res['alpha']}  teachers={len(res['teachers'])}  "
          f"references={res['n_references']}"
          + (f"  contrast={'+'.join(cs)}" if cs else ""))
    print("95% intervals in brackets: bootstrap for AUC, Clopper-Pearson for the rates")
    print(f"{'recipe':<13}{'n':>3}{'AUC':>19}{'TPR@1%FPR':>18}{'(hard)':>18}{'TPR@alpha':>18}"
          f"{'top-1':>18}{'queries':>8}")
    for r in res["rows"]:
        _print_row(r)
    print("\nBy teacher (its students only):")
    for r in res.get("by_teacher", []):
        _print_row(r)
    print(f"\nAUC over all pairs on the reported p (futility stops tie at p = 1): "
          f"{res['rows'][-1]['auc_reported_p']:.3f}")
    print(f"AUC logit_kd + seq_kd vs independents: "
          f"{res['core_auc_logit_and_seq_kd_vs_independents']:.3f}")
    print(f"Empirical FPR at alpha over {res['negative_pairs']} negative pairs: "
          f"{res['fpr_at_alpha']:.3f} {_ci(res['fpr_at_alpha_ci'])}")
    for k, v in res["fpr_by_kind"].items():
        print(f"  {k:<24} {v['fp']}/{v['n']} = {v['rate']:.3f} {_ci(v['ci'])}")
    _print_threshold(res)
    print("\nEach statistic alone (p-value as the score; 'similarity' is the baseline; "
          "'combined' is the evidence p):")
    print(f"{'statistic':<14}{'core AUC':>10}{'AUC all':>9}{'TPR@1%FPR':>11}")
    for k, v in res.get("by_statistic", {}).items():
        print(f"{k:<14}{v['core_auc_vs_independents']:>10.3f}{v['auc_all']:>9.3f}"
              f"{v['tpr_at_fpr_0.01_all']:>11.2f}")
    print("\nDistillation took (bits per character; lower = learned more):")
    print(f"{'model':<24}{'recipe':<20}{'parent':<8}{'teacher bpc':>12}{'real bpc':>10}")
    for m in res["distillation"]:
        tb, rb = m.get("teacher_bpc"), m.get("real_bpc")
        print(f"{m['name']:<24}{m['recipe']:<20}{m['parent'] or '-':<8}"
              f"{'-' if tb is None else f'{tb:.3f}':>12}{'-' if rb is None else f'{rb:.3f}':>10}")
    print(f"\nmean queries over all suspects: {res['mean_queries_all_suspects']:.1f} "
          f"(early stop {'on' if res['early_stop'] else 'off'})")
    print(f"register {res['register_seconds']:.0f}s, scans {res['scan_seconds']:.0f}s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--zoo", type=Path, help="the zoo to register and scan")
    ap.add_argument("--regrade", type=Path, nargs="+", default=None, metavar="RUN.json",
                    help="recompute the figures of saved runs from their scans (no scanning); "
                         "several runs (zoos built with other seeds) are graded as one")
    ap.add_argument("--access", default="full", choices=["full", "logprobs", "text"])
    ap.add_argument("--max-queries", type=int, default=None)
    ap.add_argument("--alpha", type=float, default=0.01)
    stop = ap.add_mutually_exclusive_group()
    stop.add_argument("--no-early-stop", action="store_true",
                      help="spend the whole budget on every suspect (the fixed-budget baseline)")
    stop.add_argument("--early-stop", action="store_true",
                      help="stop early in full access too (the default only for text and "
                           "logprobs; the full-*-seq runs)")
    ap.add_argument("--echo", action="store_true",
                    help="logprobs access: the suspect also scores teacher text (one query each)")
    ap.add_argument("--echo-texts", type=int, default=None, metavar="K",
                    help="with --echo: at most K texts per probe per teacher (default all)")
    ap.add_argument("--home", type=Path, default=None,
                    help="lineage home to register into (default: a fresh temp dir)")
    ap.add_argument("--suite", type=Path, default=None, metavar="SUITE.json",
                    help="probe suite (default: the built-in one); a home is registered "
                         "with one suite, so give another suite another --home")
    ap.add_argument("--contrast", choices=sorted(CONTRASTS), default=None,
                    help="the statistics tested as a contrast across teachers "
                         "(lineage.verdict.contrast): none, divergence (the engine's default) "
                         "or all (divergence and cross_entropy); on/off: all/none")
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON output (default benchmarks/results/detection-ACCESS.json)")
    a = ap.parse_args()
    if a.regrade is not None:
        res = grade(pool([json.loads(p.read_text()) for p in a.regrade]))
        if len(a.regrade) > 1 and a.out is None:
            ap.error("--out is required when pooling several runs")
        out = a.out or a.regrade[0]
    elif a.zoo is None:
        ap.error("--zoo is required (or --regrade RUN.json)")
    else:
        home = a.home or Path(tempfile.mkdtemp(prefix="lineage-bench-"))
        if a.echo and a.access != "logprobs":
            ap.error("--echo needs --access logprobs")
        if a.echo_texts is not None and not a.echo:
            ap.error("--echo-texts needs --echo")
        res = run(a.zoo, a.access, a.max_queries, a.alpha, home,
                  early_stop=False if a.no_early_stop else True if a.early_stop else None,
                  echo=a.echo, echo_texts=a.echo_texts, suite=a.suite,
                  contrast=None if a.contrast is None else CONTRASTS[a.contrast])
        out = a.out or Path(__file__).parent / "results" / f"detection-{a.access}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    print_report(res)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
