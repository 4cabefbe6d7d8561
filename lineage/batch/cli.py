"""`lineage batch run|status|list|cancel`: the batch subcommands (wired in `lineage.cli`).

    lineage batch run MANIFEST [--request-id ID] [--ray ADDRESS] [--since JOB|last] [--json]
    lineage batch run --job JOB [--wait]        # run or resume a job created by the API
    lineage batch status JOB [--since JOB] [--json]
    lineage batch list [--json]
    lineage batch cancel JOB

Progress goes to stderr, one line per change; with --json, stdout carries one JSON object.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from lineage.errors import InvalidArgumentError

__all__ = ["add_batch_command"]


def add_batch_command(sub: Any, common: argparse.ArgumentParser) -> None:
    b = sub.add_parser("batch", parents=[common], help="batch scans (run, status, list)")
    bs = b.add_subparsers(dest="batch_cmd", required=True, metavar="ACTION")
    r = bs.add_parser("run", parents=[common], help="run or resume a batch job")
    r.add_argument("manifest", nargs="?", help="YAML or JSON manifest of suspects")
    r.add_argument("--job", default=None, help="run or resume an existing job instead")
    r.add_argument("--request-id", default=None,
                   help="idempotency key: the same id never starts a second job "
                        "(default: derived from the manifest's content)")
    r.add_argument("--ray", default=None, metavar="ADDRESS",
                   help="fan out over Ray: 'local', 'auto' or a cluster address "
                        "(default: $RAY_ADDRESS if set, else run in this process)")
    r.add_argument("--ray-cpus", type=int, default=None, help="CPUs of a local Ray")
    r.add_argument("--wait", action="store_true",
                   help="wait for another runner in this home to finish instead of exiting")
    r.add_argument("--since", default=None, metavar="JOB",
                   help="then report verdicts that changed, and new positives, since JOB "
                        "('last': the latest earlier job that succeeded)")
    r.set_defaults(func=cmd_batch_run)
    s = bs.add_parser("status", parents=[common], help="a job's progress and results")
    s.add_argument("job")
    s.add_argument("--since", default=None, metavar="JOB",
                   help="report changed verdicts and new positives since JOB (or 'last')")
    s.set_defaults(func=cmd_batch_status)
    ls = bs.add_parser("list", parents=[common], help="batch jobs, oldest first")
    ls.set_defaults(func=cmd_batch_list)
    c = bs.add_parser("cancel", parents=[common], help="ask a job to stop")
    c.add_argument("job")
    c.set_defaults(func=cmd_batch_cancel)


def _home(args: argparse.Namespace) -> Path:
    return Path(args.home or os.environ.get("LINEAGE_HOME") or "~/.lineage").expanduser()


def _out(obj: Any, as_json: bool, text: str) -> None:
    import json

    if as_json:
        sys.stdout.write(json.dumps(obj) + "\n")
    else:
        print(text)


def _status(home: Path, job_id: str, since: str | None) -> dict[str, Any]:
    from lineage.batch import job_store, lock_holder
    from lineage.batch.diff import diff_jobs
    from lineage.store import Store

    jobs = job_store(home)
    job = jobs.get(job_id)
    d = job.to_json()
    holder = lock_holder(home)
    d["runner"] = holder if holder and f"job {job.id} " in holder + " " else None
    d["interrupted"] = job.state == "running" and d["runner"] is None
    store = Store(home / "lineage.db")
    verdicts: dict[int, Any] = {}
    for it in jobs.items(job.id, states=("done",)):
        scan = store.get_scan(it.scan_id or "")
        verdicts[it.idx] = [{"teacher": c["teacher"], "verdict": c["verdict"],
                             "p_value": c["p_value"]} for c in (scan or {}).get("candidates", [])]
    d["items"] = [{**it.to_json(), "candidates": verdicts.get(it.idx, [])}
                  for it in jobs.items(job.id)]
    if since == "last":  # the latest succeeded job created before this one
        earlier = [j for j in jobs.list_jobs(limit=1_000_000)
                   if j.state == "succeeded" and j.created_at <= job.created_at
                   and j.id != job.id]
        since = earlier[-1].id if earlier else None
        if since is None:
            d["diff"] = {"since": None, "job_id": job.id, "changes": [], "new_positives": 0}
    if since:
        d["diff"] = diff_jobs(jobs, store, since, job.id)
    store.close()
    return d


def _fmt(d: dict[str, Any]) -> str:
    state = d["state"] + (" (interrupted: run it again to resume)" if d["interrupted"] else "")
    lines = [f"job {d['job_id']}  {state}  {d['done']}/{d['total']} done, "
             f"{d['failed']} failed  request_id={d['request_id']}"]
    for it in d["items"]:
        v = ", ".join(f"{c['teacher']}={c['verdict']}" for c in it["candidates"])
        extra = f"scan {it['scan_id']} {it['queries']} queries  {v}" if it["state"] == "done" \
            else (f"{it['reason']}: {it['message']}" if it["state"] == "failed" else "")
        lines.append(f"  {it['index']:>3} {it['name']:<24} {it['state']:<8} {extra}")
    if "diff" in d:
        ch = d["diff"]["changes"]
        lines.append(f"since {d['diff']['since']}: {len(ch)} change(s), "
                     f"{d['diff']['new_positives']} new positive(s)")
        for c in ch:
            tag = "NEW POSITIVE " if c["new_positive"] else ""
            lines.append(f"  {tag}{c['suspect']} vs {c['teacher']}: {c['before']} -> "
                         f"{c['after']} (p={c['p_value']:.3g})")
    return "\n".join(lines)


def cmd_batch_run(args: argparse.Namespace) -> int:
    from lineage.batch import create_job, job_store, load_manifest, run_job
    from lineage.batch.runner import SequentialExecutor

    home = _home(args)
    if (args.manifest is None) == (args.job is None):
        raise InvalidArgumentError("give a MANIFEST or --job JOB", field="manifest")
    if args.job:
        job = job_store(home).get(args.job)
    else:
        m = load_manifest(args.manifest)  # refused here, before any work starts
        job, created = create_job(home, m, request_id=args.request_id,
                                  source=str(Path(args.manifest).resolve()))
        if not args.quiet:
            print(f"[batch] {'created' if created else 'found'} job {job.id} "
                  f"({job.total} suspects, request_id={job.request_id}, state={job.state})",
                  file=sys.stderr, flush=True)
    address = args.ray or os.environ.get("RAY_ADDRESS")
    if address:
        from lineage.batch.ray_exec import RayExecutor

        executor: Any = RayExecutor(address, num_cpus=args.ray_cpus)
    else:
        executor = SequentialExecutor()

    def progress(j: Any, item: Any) -> None:
        if args.quiet:
            return
        what = f": scanning {item.spec.name}" if item is not None else ""
        print(f"[batch] job {j.id} {j.state} {j.done}/{j.total} done, {j.failed} failed{what}",
              file=sys.stderr, flush=True)

    job = run_job(home, job.id, executor=executor, wait=args.wait, progress=progress)
    d = _status(home, job.id, args.since)
    _out(d, args.json, _fmt(d))
    return 0


def cmd_batch_status(args: argparse.Namespace) -> int:
    d = _status(_home(args), args.job, args.since)
    _out(d, args.json, _fmt(d))
    return 0


def cmd_batch_list(args: argparse.Namespace) -> int:
    from lineage.batch import job_store

    jobs = [j.to_json() for j in job_store(_home(args)).list_jobs(limit=100_000)]
    _out({"jobs": jobs}, args.json, "\n".join(
        f"{j['job_id']}  {j['state']:<10} {j['done']}/{j['total']}  {j['created_at']}  "
        f"{j['request_id']}" for j in jobs) or "(no batch jobs)")
    return 0


def cmd_batch_cancel(args: argparse.Namespace) -> int:
    from lineage.batch import job_store
    from lineage.batch.runner import BatchBusyError, home_lock

    home = _home(args)
    jobs = job_store(home)
    job = jobs.request_cancel(args.job)
    try:  # nobody running it: cancel now; else the runner stops at the next item
        with home_lock(home, "cancel"):
            jobs.mark_cancelled(job.id)
    except BatchBusyError:
        pass
    job = jobs.get(job.id)
    _out(job.to_json(), args.json, f"job {job.id} {job.state}"
         + (" (cancel requested)" if not job.final else ""))
    return 0
