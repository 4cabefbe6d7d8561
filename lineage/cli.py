"""The command line: one subcommand per library call.

    lineage [--home DIR] register NAME MODEL --role teacher|reference [--json]
    lineage models list [--json] | lineage models delete NAME
    lineage scan MODEL [--access full|logprobs|text] [--max-queries N] [--alpha A] [--json]
                 [--echo] [--echo-texts K]
    lineage compare MODEL TEACHER [...]      lineage search MODEL [-k K] [--json]
    lineage scans list|get [ID] [--json]
    lineage zoo build --out DIR [--size small|full] [--seed S] [--corpus stdlib|thirdparty]
                      [--jobs N]
    lineage demo [--zoo DIR]
    lineage batch run MANIFEST [--request-id ID] [--ray ADDRESS] | batch status|list|cancel
    lineage report SCAN_OR_JOB [--html FILE] [--json]
    lineage tokens add NAME --role admin|investigator | tokens list | tokens revoke NAME
    lineage audit verify [--anchor SEQ:HASH] | audit head | audit show [--json]

Local mutating commands (register, models delete, scan, compare, tokens add/revoke) append an
entry to the home's hash-chained audit log (`lineage.audit`).

Errors print one line to stderr and exit 2 (bad input) or 1 (other failures). With --json,
stdout carries exactly one JSON object; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from lineage.errors import InvalidArgumentError, LineageError

__all__ = ["main"]


def _home(args: argparse.Namespace) -> Path:
    return Path(args.home or os.environ.get("LINEAGE_HOME") or "~/.lineage").expanduser()


class _Progress:
    """Progress lines on stderr, throttled; silent when stderr is not wanted."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.last = ("", 0.0)

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        if stage == self.last[0] and now - self.last[1] < 0.5 and done < total:
            return
        self.last = (stage, now)
        print(f"  {stage}: {done}/{total}", file=sys.stderr, flush=True)


def _engine(args: argparse.Namespace) -> Any:
    from lineage.engine import Lineage

    return Lineage(_home(args))


def _audit(args: argparse.Namespace, action: str, target: str,
           detail: dict[str, Any] | None = None) -> Any:
    """A context manager that records a local mutating command in the home's audit log."""
    from lineage.audit import AuditLog, cli_actor, timed

    return timed(AuditLog.for_home(_home(args)), actor=cli_actor(), action=action,
                 target=target, detail=detail)


def _print(obj: Any, as_json: bool, text: str) -> None:
    if as_json:
        sys.stdout.write(json.dumps(obj, sort_keys=False) + "\n")
    else:
        print(text)


def _fmt_scan(d: dict[str, Any]) -> str:
    lines = [f"suspect {d['suspect']} ({d['access']}, {d['queries']} queries, "
             f"alpha {d['alpha']})"]
    for c in d["candidates"]:
        lines.append(f"  {c['teacher']:<24} {c['verdict']:<13} p={c['p_value']:.3g}  "
                     f"similarity={c['similarity']:+.3f}  closeness={c['closeness']:+.4f}")
    return "\n".join(lines)


def cmd_register(args: argparse.Namespace) -> int:
    if args.server:
        from lineage.client import LineageClient

        rec = LineageClient.from_args(args).register(args.name, args.model, args.role)
    else:
        from lineage.backends import check_uri

        check_uri(args.model)
        eng = _engine(args)
        with _audit(args, "model.register", args.name,
                    {"model": args.model, "role": args.role}) as a:
            rec = eng.register(args.name, args.model, args.role, progress=_Progress(args.quiet))
            a.detail["id"] = rec.id
    _print(rec.to_json(), args.json, f"registered {rec.name} ({rec.role}) id={rec.id}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    eng = _engine(args)
    if args.action == "delete":
        if not args.name:
            raise InvalidArgumentError("models delete needs NAME", field="name")
        with _audit(args, "model.delete", args.name):
            eng.delete_model(args.name)
        _print({"deleted": args.name}, args.json, f"deleted {args.name}")
        return 0
    recs = eng.list_models(limit=100_000)
    _print({"models": [r.to_json() for r in recs]}, args.json,
           "\n".join(f"{r.id:>4}  {r.name:<24} {r.role:<10} {r.uri}" for r in recs)
           or "(no models)")
    return 0


def _scan_kw(args: argparse.Namespace) -> dict[str, Any]:
    """The scan options shared by scan and compare."""
    kw: dict[str, Any] = dict(access=args.access, max_queries=args.max_queries,
                              alpha=args.alpha)
    if args.no_early_stop:
        kw["early_stop"] = False
    if args.echo or args.echo_texts is not None:
        if args.access != "logprobs":
            raise InvalidArgumentError("--echo applies to --access logprobs", field="echo")
        if getattr(args, "server", None):
            raise InvalidArgumentError(
                "--echo is for local scans; over --server, give the endpoint URI echo=1 "
                "(the server then scores teacher text through it)", field="echo")
        kw.update(echo=True, echo_texts=args.echo_texts)
    return kw


def cmd_scan(args: argparse.Namespace) -> int:
    kw = _scan_kw(args)
    if args.server:
        from lineage.client import LineageClient

        res = LineageClient.from_args(args).scan(args.model, **kw)
    else:
        eng = _engine(args)
        with _audit(args, "scan.create", args.model, dict(kw)) as a:
            res = eng.scan(args.model, progress=_Progress(args.quiet), **kw)
            a.detail["scan_id"] = res.id
    d = res.to_json()
    _print(d, args.json, _fmt_scan(d))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    eng = _engine(args)
    kw = _scan_kw(args)
    with _audit(args, "scan.compare", args.model, {"teacher": args.teacher}) as a:
        res = eng.compare(args.model, args.teacher, **kw)
        a.detail["scan_id"] = res.id
    d = res.to_json()
    _print(d, args.json, _fmt_scan(d))
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    hits = _engine(args).search(model=args.model, access=args.access, k=args.k)
    _print({"hits": [{"teacher": h.teacher, "score": h.score} for h in hits]}, args.json,
           "\n".join(f"{h.teacher:<24} {h.score:+.4f}" for h in hits) or "(no teachers)")
    return 0


def cmd_scans(args: argparse.Namespace) -> int:
    eng = _engine(args)
    if args.action == "get":
        if not args.id:
            raise InvalidArgumentError("scans get needs ID", field="id")
        d = eng.get_scan(args.id).to_json()
        _print(d, args.json, _fmt_scan(d))
        return 0
    scans = [s.to_json() for s in eng.list_scans(limit=100_000)]
    _print({"scans": scans}, args.json, "\n".join(
        f"{s['scan_id']}  {s['created_at']}  {s['suspect']}" for s in scans) or "(no scans)")
    return 0


def cmd_tokens(args: argparse.Namespace) -> int:
    from lineage.tokens import TokenStore

    ts = TokenStore.for_home(_home(args))
    if args.action == "list":
        recs = ts.records()
        _print({"tokens": [r.__dict__ for r in recs]}, args.json, "\n".join(
            f"{r.name:<24} {r.role:<13} {r.created_at}"
            + (f"  revoked {r.revoked_at}" if r.revoked_at else "") for r in recs)
            or "(no tokens)")
        return 0
    if not args.name:
        raise InvalidArgumentError(f"tokens {args.action} needs NAME", field="name")
    if args.action == "add":
        if not args.role:
            raise InvalidArgumentError("tokens add needs --role admin|investigator",
                                       field="role")
        with _audit(args, "token.add", args.name, {"role": args.role}):
            token = ts.add(args.name, args.role)
        _print({"name": args.name, "role": args.role, "token": token}, args.json, token)
        if not args.json:  # stdout is the token alone, so that `> NAME.token` just works
            print(f"token for {args.name} (role {args.role}): shown once, store it now; only "
                  "its sha256 is kept", file=sys.stderr)
        return 0
    with _audit(args, "token.revoke", args.name):
        ts.revoke(args.name)
    _print({"revoked": args.name}, args.json, f"revoked {args.name}")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from lineage.audit import AuditLog

    log = AuditLog.for_home(_home(args))
    if args.action == "head":
        seq, h = log.head()
        _print({"seq": seq, "hash": h}, args.json, f"{seq}:{h}")
        return 0
    if args.action == "show":
        entries = [e.to_json() for e in log.entries()]
        _print({"entries": entries}, args.json, "\n".join(
            f"{e['seq']:>6} {e['ts']} {e['actor']:<20} {e['action']:<16} {e['outcome']:<10} "
            f"{e['target']}" for e in entries) or "(empty)")
        return 0
    anchor = None
    if args.anchor:
        seq_s, _, h = args.anchor.partition(":")
        if not seq_s.isdigit() or len(h) != 64:
            raise InvalidArgumentError("--anchor is SEQ:HASH (from `lineage audit head`)",
                                       field="anchor")
        anchor = (int(seq_s), h)
    n, problem = log.verify(anchor)
    seq, h = log.head()
    if problem is not None:
        _print({"ok": False, "checked": n, "bad_entry": problem.seq, "problem": problem.why},
               args.json, "")
        print(f"lineage: audit log {log.path} is NOT intact: {problem}", file=sys.stderr)
        return 1
    _print({"ok": True, "entries": n, "head": f"{seq}:{h}"}, args.json,
           f"audit log intact: {n} entries, head {seq}:{h}")
    return 0


def cmd_zoo(args: argparse.Namespace) -> int:
    from lineage.zoo.build import build_zoo

    manifest = build_zoo(Path(args.out), size=args.size, seed=args.seed, jobs=args.jobs,
                         corpus=args.corpus,
                         progress=None if args.quiet else
                         (lambda m: print(f"  {m}", file=sys.stderr, flush=True)))
    _print({"manifest": str(manifest)}, args.json, f"zoo written: {manifest}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from lineage.demo import run_demo

    return run_demo(_home(args), Path(args.zoo) if args.zoo else None, as_json=args.json)


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", default=argparse.SUPPRESS,
                        help="state directory (default $LINEAGE_HOME or ~/.lineage)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print one JSON object on stdout")
    common.add_argument("--quiet", "-q", action="store_true", default=argparse.SUPPRESS,
                        help="no progress on stderr")
    remote = argparse.ArgumentParser(add_help=False)
    remote.add_argument("--server", default=None, help="HOST:PORT of a lineage server")
    remote.add_argument("--token-file", default=None, help="bearer token file for --server")
    remote.add_argument("--tls-ca", default=None, help="CA certificate to verify the server")
    remote.add_argument("--tls-cert", default=None, help="client certificate (mTLS)")
    remote.add_argument("--tls-key", default=None, help="client key (mTLS)")

    p = argparse.ArgumentParser(prog="lineage", parents=[common],
                                description="Model fingerprinting and lineage detection.")
    from lineage import __version__

    p.add_argument("--version", action="version", version=f"lineage {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    def scan_opts(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--access", default="full", choices=["full", "logprobs", "text"])
        sp.add_argument("--max-queries", type=int, default=None, metavar="N")
        sp.add_argument("--alpha", type=float, default=0.01)
        sp.add_argument("--no-early-stop", action="store_true",
                        help="spend the whole budget even when the decision is already "
                             "clear (text and logprobs access; full access always does)")
        sp.add_argument("--echo", action="store_true",
                        help="logprobs access: the suspect also scores the teachers' text, "
                             "one query each (an openai+http URI with echo=1 does this "
                             "anyway; local weights emulate such an endpoint)")
        sp.add_argument("--echo-texts", type=int, default=None, metavar="K",
                        help="with --echo: at most K texts per probe per teacher (default 4)")

    r = sub.add_parser("register", parents=[common, remote], help="fingerprint and add a model")
    r.add_argument("name")
    r.add_argument("model")
    r.add_argument("--role", required=True, choices=["teacher", "reference"])
    r.set_defaults(func=cmd_register)

    m = sub.add_parser("models", parents=[common], help="list or delete registered models")
    m.add_argument("action", choices=["list", "delete"])
    m.add_argument("name", nargs="?")
    m.set_defaults(func=cmd_models)

    s = sub.add_parser("scan", parents=[common, remote], help="scan a suspect model")
    s.add_argument("model")
    scan_opts(s)
    s.set_defaults(func=cmd_scan)

    c = sub.add_parser("compare", parents=[common], help="test a suspect against one teacher")
    c.add_argument("model")
    c.add_argument("teacher")
    scan_opts(c)
    c.set_defaults(func=cmd_compare)

    se = sub.add_parser("search", parents=[common], help="nearest teachers by signature")
    se.add_argument("model")
    se.add_argument("-k", type=int, default=10)
    se.add_argument("--access", default="full", choices=["full", "logprobs", "text"])
    se.set_defaults(func=cmd_search)

    sc = sub.add_parser("scans", parents=[common], help="stored scan results")
    sc.add_argument("action", choices=["list", "get"])
    sc.add_argument("id", nargs="?")
    sc.set_defaults(func=cmd_scans)

    z = sub.add_parser("zoo", parents=[common], help="build the offline model zoo")
    z.add_argument("action", choices=["build"])
    z.add_argument("--out", required=True)
    z.add_argument("--size", default="small", choices=["small", "full"])
    z.add_argument("--seed", type=int, default=0)
    z.add_argument("--corpus", default="stdlib", choices=["stdlib", "thirdparty"],
                   help="main training text (default stdlib, the default suite's source; "
                        "thirdparty swaps the zoo's two corpora)")
    z.add_argument("--jobs", type=int, default=None,
                   help="worker processes, one model each at a time (default: min(2, cores);"
                        " 1: serial, in this process)")
    z.set_defaults(func=cmd_zoo)

    t = sub.add_parser("tokens", parents=[common], help="API tokens for the server")
    t.add_argument("action", choices=["add", "list", "revoke"])
    t.add_argument("name", nargs="?")
    t.add_argument("--role", default=None, choices=["admin", "investigator"])
    t.set_defaults(func=cmd_tokens)

    au = sub.add_parser("audit", parents=[common], help="check or show the audit log")
    au.add_argument("action", choices=["verify", "head", "show"])
    au.add_argument("--anchor", default=None, metavar="SEQ:HASH",
                    help="an earlier `audit head`; verify fails if the chain lost it")
    au.set_defaults(func=cmd_audit)

    d = sub.add_parser("demo", parents=[common], help="build a small zoo, register, scan")
    d.add_argument("--zoo", default=None,
                   help="small zoo dir (default .cache/zoo-small-<code hash>; built if absent)")
    d.set_defaults(func=cmd_demo)
    _add_plugins(sub, common)
    return p


def _add_plugins(sub: Any, common: argparse.ArgumentParser) -> None:
    """Subcommands owned by other modules (batch scans, reports, the server)."""
    from lineage.batch.cli import add_batch_command
    from lineage.report import add_report_command

    add_batch_command(sub, common)
    add_report_command(sub, common)
    try:
        from server.cli import add_serve_command
    except ImportError:
        return
    add_serve_command(sub, common)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    for k, v in (("home", None), ("json", False), ("quiet", False)):
        if not hasattr(args, k):
            setattr(args, k, v)
    _quiet_libraries()
    try:
        return int(args.func(args))
    except LineageError as e:
        print(f"lineage: error: {e.message}", file=sys.stderr)
        return 2 if isinstance(e, InvalidArgumentError) else 1
    except KeyboardInterrupt:
        print("lineage: interrupted", file=sys.stderr)
        return 130


def _quiet_libraries() -> None:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


if __name__ == "__main__":
    sys.exit(main())
