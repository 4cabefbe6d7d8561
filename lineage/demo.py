"""The demo: build the small zoo, register its teachers and references, scan a distilled
student and an independent model, and print both verdicts."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

__all__ = ["run_demo", "zoo_cache_dir", "ensure_zoo"]


def zoo_cache_dir(root: Path, size: str = "small") -> Path:
    """`root/zoo-SIZE-KEY`, KEY a hash of the zoo's code, so a code change rebuilds it."""
    import lineage.zoo as z

    h = hashlib.sha256()
    for f in sorted(Path(z.__file__).parent.glob("*.py")):
        h.update(f.read_bytes())
    return root / f"zoo-{size}-{h.hexdigest()[:12]}"


def ensure_zoo(out: Path, size: str = "small", log=None) -> Path:
    """Build the zoo at `out` unless a finished one is there; returns the manifest path."""
    from lineage.zoo.build import build_zoo

    manifest = out / "manifest.json"
    if manifest.exists():
        return manifest
    tmp = out.with_name(out.name + ".partial")
    build_zoo(tmp, size=size, seed=0, progress=log)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return manifest


def run_demo(home: Path, zoo: Path | None, *, as_json: bool = False) -> int:
    from lineage.engine import Lineage

    def log(msg: str) -> None:
        print(f"[demo] {msg}", file=sys.stderr, flush=True)

    t0 = time.monotonic()
    zoo = zoo or zoo_cache_dir(Path(".cache"))
    log(f"zoo: {zoo} (built on first run)")
    manifest = json.loads(ensure_zoo(zoo, log=lambda m: log(f"zoo: {m}")).read_text())
    models = manifest["models"]
    eng = Lineage(home)
    have = {m.name for m in eng.list_models(limit=10_000)}
    for m in models:
        if m["role"] in ("teacher", "reference") and m["name"] not in have:
            log(f"register {m['name']} as {m['role']}")
            eng.register(m["name"], str(zoo / m["path"]), m["role"])
    suspects = [m for m in models if m["role"] == "suspect"]
    student = next((m for m in suspects if m["recipe"] == "seq_kd"), None) or \
        next(m for m in suspects if m.get("parent"))
    indep = next(m for m in suspects if not m.get("parent"))
    results = []
    for m in (student, indep):
        log(f"scan {m['name']} ({m['recipe']}, parent={m.get('parent')})")
        r = eng.scan(str(zoo / m["path"]), access="full")
        results.append((m, r))
    if as_json:
        print(json.dumps({"scans": [dict(r.to_json(), zoo_name=m["name"], recipe=m["recipe"],
                                         parent=m.get("parent")) for m, r in results]}))
    else:
        for m, r in results:
            truth = f"distilled from {m['parent']}" if m.get("parent") else "independent"
            print(f"\n{m['name']}  (truth: {truth}; {r.queries} queries)")
            for c in r.candidates:
                print(f"  vs {c.teacher:<6} {c.verdict:<13} p={c.p_value:.2g}  "
                      f"similarity={c.similarity:+.3f}")
    log(f"done in {time.monotonic() - t0:.0f}s; home: {home}")
    return 0
