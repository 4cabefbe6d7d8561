"""Evidence reports: one scan, or every scan of a batch job, as JSON and self-contained HTML.

    lineage report SCAN_OR_JOB [--html FILE] [--json]

The JSON carries the scan results and their provenance: the probe suite's name and hash; the
suspect's weight sha256 (local models) or its endpoint and model name (APIs); the teachers'
weight hashes; queries used; timestamps; and the version of lineage that wrote the report
(each scan also carries `lineage_version`, the version that ran it; "" for scans stored before
session 9). The HTML adds three things per scan, drawn
with matplotlib (Agg) and embedded as base64 PNG data URIs, so the file stands alone:

1. per teacher, the suspect's statistic (the largest of its standardised statistics:
   closeness, similarity, and divergence or cross_entropy, and teacher_text where they ran) against the same statistic over the references, each
   playing the suspect (their mean and spread: the reference null). The p-value itself comes
   from each statistic's prediction test, combined by the weighted Simes rule and corrected
   by Holm;
2. the contributions of the probes that decided (the scan's stored evidence: its top probes);
3. a table of those probes with their prompts.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import os
import sys
from pathlib import Path
from typing import Any

from lineage.errors import UnknownModelError

__all__ = ["add_report_command", "build_report", "render_html"]


def _provenance(scan: dict[str, Any], teachers: dict[str, dict[str, Any]],
                job: dict[str, Any] | None) -> dict[str, Any]:
    from lineage import __version__

    ident = scan.get("identity", {})
    if ident.get("kind") == "openai":
        suspect = {"kind": "openai", "endpoint": ident.get("base_url", ""),
                   "model": ident.get("model", ""), "api": ident.get("endpoint", "")}
    else:
        suspect = {"kind": ident.get("kind", "local"), "path": ident.get("path", ""),
                   "weights_sha256": ident.get("sha256", "")}
    ts = {"scanned_at": scan["created_at"]}
    if job:
        ts.update({"job_created_at": job["created_at"], "job_started_at": job["started_at"],
                   "job_finished_at": job["finished_at"]})
    return {
        "suite": dict(scan["suite"]),
        "suspect": suspect,
        "queries": scan["queries"],
        "generated_tokens": scan.get("generated_tokens", 0),
        "access": scan["access"],
        "timestamps": ts,
        "teachers": [teachers.get(c["teacher"], {"name": c["teacher"]})
                     for c in scan["candidates"]],
        "lineage_version": __version__,
    }


def build_report(home: Path, target: str) -> dict[str, Any]:
    """The report of scan id or batch job id `target` (UnknownModelError if neither)."""
    from lineage import __version__
    from lineage.batch.jobs import JobStore
    from lineage.store import Store, utcnow

    store = Store(home / "lineage.db")
    try:
        jobs = JobStore(store.engine)
        teachers = {m.name: {"name": m.name, "uri": m.uri,
                             "weights_sha256": m.identity.get("sha256", ""),
                             "registered_at": m.created_at}
                    for m in store.list_models(role="teacher")}
        scan = store.get_scan(target)
        job_json: dict[str, Any] | None = None
        entries: list[tuple[str, dict[str, Any]]] = []
        if scan is not None:
            entries.append((scan["suspect"], scan))
        else:
            try:
                job = jobs.get(target)
            except UnknownModelError:
                raise UnknownModelError(f"no scan or batch job with id {target!r}",
                                        field="target") from None
            job_json = job.to_json()
            for it in jobs.items(job.id):
                s = store.get_scan(it.scan_id) if it.scan_id else None
                if s is not None:
                    entries.append((it.spec.name, s))
            job_json["items"] = [it.to_json() for it in jobs.items(job.id)]
        scans = [{"name": name, **s, "provenance": _provenance(s, teachers, job_json)}
                 for name, s in entries]
        return {"kind": "batch" if job_json else "scan", "target": target, "job": job_json,
                "scans": scans, "generated_at": utcnow(), "lineage_version": __version__}
    finally:
        store.close()


# -- plots -----------------------------------------------------------------------------------

def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _null_plot(scan: dict[str, Any]) -> str:
    """Per teacher: the suspect's statistic against the references' (mean, ±1 and ±2 sd)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cands = scan["candidates"]
    fig, axes = plt.subplots(1, len(cands), figsize=(4.2 * len(cands), 2.6), squeeze=False)
    for ax, c in zip(axes[0], cands):
        mu, sd, n, x0 = c["null_mean"], c["null_sd"], c["n_references"], c["statistic"]
        if sd > 0:
            ax.axvspan(mu - 2 * sd, mu + 2 * sd, color="#d6eaf8", label="references ±2 sd")
            ax.axvspan(mu - sd, mu + sd, color="#85c1e9", label="references ±1 sd")
        ax.axvline(mu, color="#1b4f72", ls="--", lw=1.2, label=f"reference mean (n={n})")
        ax.axvline(x0, color="#c0392b", lw=2.5, label="suspect")
        lo = min(mu - 3 * max(sd, 1e-6), x0) - 0.5
        hi = max(mu + 3 * max(sd, 1e-6), x0) + 0.5
        ax.set_xlim(lo, hi)
        ax.set_yticks([])
        ax.set_title(f"{c['teacher']}: {c['verdict']}, p={c['p_value']:.3g} "
                     f"(raw {c['raw_p_value']:.3g})\nsimilarity {c['similarity']:+.3f}",
                     fontsize=9)
        ax.set_xlabel("largest standardised statistic", fontsize=8)
        ax.legend(fontsize=6.5, loc="upper left", framealpha=0.9)
    fig.tight_layout()
    return _png(fig)


def _contrib_plot(scan: dict[str, Any]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cands = [c for c in scan["candidates"] if c.get("evidence")]
    if not cands:
        return ""
    fig, axes = plt.subplots(1, len(cands), figsize=(4.2 * len(cands), 2.8), squeeze=False)
    for ax, c in zip(axes[0], cands):
        ev = c["evidence"]
        vals = [e["contribution"] for e in ev]
        ax.barh([e["probe_id"] for e in ev][::-1], vals[::-1],
                color=["#2e86c1" if v >= 0 else "#e67e22" for v in vals[::-1]])
        ax.axvline(0, color="black", lw=0.8)
        ax.set_title(f"{c['teacher']}: deciding probes", fontsize=9)
        ax.set_xlabel("contribution to the statistic", fontsize=8)
        ax.tick_params(labelsize=7)
    return _png(fig)


# -- HTML ------------------------------------------------------------------------------------

_CSS = """body{font-family:sans-serif;margin:2em;color:#222;background:#fff}
h1{color:#1a5276}table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #bbb;padding:3px 8px;font-size:13px;text-align:left}
th{background:#d6eaf8}.derived{background:#f5b7b1}.not_derived{background:#d5f5e3}
.inconclusive{background:#fcf3cf}img{max-width:100%}section{margin-bottom:2em}"""


def _e(x: Any) -> str:
    return html.escape(str(x))


def render_html(rep: dict[str, Any]) -> str:
    """A self-contained HTML document (no external resources)."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>lineage report "
             f"{_e(rep['target'])}</title><style>{_CSS}</style></head><body>",
             f"<h1>lineage evidence report: {_e(rep['target'])}</h1>",
             f"<p>{_e(rep['kind'])} report generated {_e(rep['generated_at'])} by lineage "
             f"{_e(rep['lineage_version'])}.</p>"]
    if rep["job"]:
        j = rep["job"]
        parts.append(f"<p>Batch job {_e(j['job_id'])} ({_e(j['state'])}): {j['done']}/"
                     f"{j['total']} done, {j['failed']} failed; request id "
                     f"{_e(j['request_id'])}; created {_e(j['created_at'])}, finished "
                     f"{_e(j['finished_at'])}.</p>")
    for s in rep["scans"]:
        p = s["provenance"]
        sus = p["suspect"]
        who = (f"endpoint {_e(sus['endpoint'])}, model {_e(sus['model'])}"
               if sus["kind"] == "openai" else
               f"{_e(sus['path'])}, weights sha256 <code>{_e(sus['weights_sha256'])}</code>")
        rows = "".join(
            f"<tr class='{_e(c['verdict'])}'><td>{_e(c['teacher'])}</td><td>{_e(c['verdict'])}"
            f"</td><td>{c['p_value']:.4g}</td><td>{c['raw_p_value']:.4g}</td>"
            f"<td>{c['similarity']:+.4f}</td><td>{c['statistic']:+.3f}</td>"
            f"<td>{c['null_mean']:+.3f} ± {c['null_sd']:.3f}</td></tr>"
            for c in s["candidates"])
        ev = "".join(
            f"<tr><td>{_e(c['teacher'])}</td><td>{_e(e['probe_id'])}</td>"
            f"<td>{e['contribution']:+.4f}</td><td>{_e(e['prompt'])}</td></tr>"
            for c in s["candidates"] for e in c.get("evidence", []))
        teach = "".join(f"<li>{_e(t['name'])}: sha256 <code>{_e(t.get('weights_sha256', ''))}"
                        f"</code></li>" for t in p["teachers"])
        contrib = _contrib_plot(s)
        parts.append(
            f"<section><h2>{_e(s['name'])}</h2>"
            f"<p>Suspect: {who}. Access {_e(p['access'])}, {p['queries']} queries, "
            f"{p['generated_tokens']} generated tokens, scanned {_e(p['timestamps']['scanned_at'])}"
            f", scan id <code>{_e(s['scan_id'])}</code>. Suite {_e(p['suite']['name'])} "
            f"<code>{_e(p['suite']['hash'])}</code>; alpha {s['alpha']}.</p>"
            f"<table><tr><th>teacher</th><th>verdict</th><th>p (Holm)</th><th>raw p</th>"
            f"<th>similarity</th><th>statistic</th><th>null mean ± sd</th></tr>{rows}</table>"
            f"<img alt='statistic against the reference null' src='{_null_plot(s)}'>"
            "<p><small>The suspect's largest standardised statistic against the same "
            "statistic over the references (the reference null). p-values come from each "
            "statistic's prediction test, combined by Simes' rule, Holm-corrected across "
            "teachers.</small></p>"
            + (f"<img alt='probe contributions' src='{contrib}'>" if contrib else "")
            + f"<h3>Probes that decided</h3><table><tr><th>teacher</th><th>probe</th>"
            f"<th>contribution</th><th>prompt</th></tr>{ev}</table>"
            f"<h3>Teachers</h3><ul>{teach}</ul></section>")
    if not rep["scans"]:
        parts.append("<p>No finished scans yet.</p>")
    parts.append("</body></html>")
    return "".join(parts)


# -- CLI -------------------------------------------------------------------------------------

def add_report_command(sub: Any, common: argparse.ArgumentParser) -> None:
    r = sub.add_parser("report", parents=[common], help="evidence report for a scan or job")
    r.add_argument("target", metavar="SCAN_OR_JOB")
    r.add_argument("--html", default=None, metavar="FILE", help="write self-contained HTML")
    r.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    import json

    home = Path(args.home or os.environ.get("LINEAGE_HOME") or "~/.lineage").expanduser()
    rep = build_report(home, args.target)
    if args.html:
        Path(args.html).write_text(render_html(rep), encoding="utf-8")
        if not args.quiet:
            print(f"report written: {args.html}", file=sys.stderr)
    if args.json:
        sys.stdout.write(json.dumps(rep) + "\n")
    elif not args.html:
        for s in rep["scans"]:
            print(f"{s['name']}: " + ", ".join(f"{c['teacher']}={c['verdict']} "
                                               f"(p={c['p_value']:.3g})"
                                               for c in s["candidates"]))
    return 0
