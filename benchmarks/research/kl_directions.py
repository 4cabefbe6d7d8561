"""Both directions of the divergence to the teacher, on a linear and a log scale (session 6).

    PYTHONPATH=. python benchmarks/research/kl_directions.py ZOO HOME SUSPECT [SUSPECT ...]

Registers ZOO's teachers and references in HOME (skipped when already there), then for each
named suspect and each teacher T prints, against the references as the null (t prediction,
`stats.prediction_pvalue`):

- KL(G || T) per character on G's own samples: the scan's `agreement` part, from the inputs
  `Lineage.scan` (full access, no early stopping) hands to `verdict.teacher_test`;
- KL(T || G) per character on T's registered samples (temperature 1): what sequence-level KD
  minimises when the student's data are T's samples. References' scores of T's samples come
  from the store; the suspect scores them through its backend.

p_lin tests the divergence itself, p_log its logarithm (divergences vary by factors between
independent models, so the log scale is the natural one for their spread).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

import lineage.engine as E
from lineage import stats
from lineage import verdict as V
from lineage.backends import open_model


def main(zoo: Path, home: Path, suspects: list[str]) -> None:
    man = json.loads((zoo / "manifest.json").read_text())
    path = {m["name"]: zoo / m["path"] for m in man["models"]}
    eng = E.Lineage(home)
    have = {m.name for m in eng.list_models(limit=10_000)}
    for m in man["models"]:
        if m["role"] in ("teacher", "reference") and m["name"] not in have:
            eng.register(m["name"], str(path[m["name"]]), m["role"])
    recs = {r.name: r for r in eng.list_models(limit=10_000)}
    name = {r.id: n for n, r in recs.items()}
    refs = [r for r in recs.values() if r.role == "reference"]
    sc = eng.store.score_matrix()
    S = eng.suite

    captured: dict[int, tuple] = {}
    real = E.teacher_test

    def spy(t_id, t_dist, suspect, ref_obs, ref_exact):  # type: ignore[no-untyped-def]
        captured[t_id] = (suspect, ref_obs)
        return real(t_id, t_dist, suspect, ref_obs, ref_exact)

    E.teacher_test = spy
    for s in suspects:
        captured.clear()
        eng.scan(str(path[s]), early_stop=False)
        backend = open_model(str(path[s]))
        for t_id, (sus, ref_obs) in captured.items():
            rev = -V._agreement(sus, t_id, [])[0]
            rev_null = np.array([-V._agreement(ref_obs[j], t_id, [])[0] for j in sorted(ref_obs)])
            _, tsmp = eng.store.fingerprint(t_id)
            chars = sum(max(1, len(x)) for row in tsmp for x in row)
            own = sc[(t_id, t_id)].astype(np.float64)
            fwd_null = np.array([(sc[(r.id, t_id)] - own).sum() / chars for r in refs])
            prompts = [S.probes[i].prompt for i, row in enumerate(tsmp) for _ in row]
            ll = np.asarray(backend.score(prompts, [x for row in tsmp for x in row]), float)
            fwd = -(ll.sum() - own.sum()) / chars
            for label, x, null in (("KL(G||T)", rev, rev_null), ("KL(T||G)", fwd, -fwd_null)):
                p_lin = stats.prediction_pvalue(-x, -null)
                p_log = stats.prediction_pvalue(-np.log(x), -np.log(null))
                print(f"{s:14s} {name[t_id]:4s} {label} {x:.4f}  references "
                      + " ".join(f"{v:.3f}" for v in null)
                      + f"  p_lin {p_lin:.3g}  p_log {p_log:.3g}", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:])
