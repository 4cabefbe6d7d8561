"""`lineage serve`: the subcommand the CLI picks up from here (see lineage.cli._add_plugins)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

__all__ = ["add_serve_command", "cmd_serve"]


def add_serve_command(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("serve", parents=[common], help="run the gRPC server")
    p.add_argument("--address", default="127.0.0.1:50051", help="HOST:PORT (port 0: any)")
    p.add_argument("--token-file", default=None,
                   help="bearer tokens, one per line: 'TOKEN [ROLE]' or 'sha256:HEX [ROLE]' "
                        "(no role: admin); tokens from 'lineage tokens add' are also accepted")
    p.add_argument("--tls-cert", default=None, help="server certificate chain (PEM)")
    p.add_argument("--tls-key", default=None, help="server private key (PEM)")
    p.add_argument("--client-ca", default=None, help="require client certificates from this CA")
    p.add_argument("--max-message-mb", type=int, default=16, help="message size limit, MiB")
    p.add_argument("--grace", type=float, default=300.0,
                   help="seconds calls in flight may take to finish after SIGTERM")
    p.add_argument("--workers", type=int, default=4, help="threads for model work")
    p.add_argument("--model-concurrency", type=int, default=1,
                   help="model-loading calls (register/scan/compare/search) run at once")
    p.add_argument("--metrics-port", type=int, default=None, metavar="N",
                   help="serve Prometheus /metrics on this port (0: any free port)")
    p.add_argument("--metrics-address", default="127.0.0.1",
                   help="address for --metrics-port (default loopback)")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from server.app import run_server

    home = Path(getattr(args, "home", None) or os.environ.get("LINEAGE_HOME") or "~/.lineage")
    return run_server(home.expanduser(), address=args.address, token_file=args.token_file,
                      tls_cert=args.tls_cert, tls_key=args.tls_key, client_ca=args.client_ca,
                      max_message_bytes=args.max_message_mb * 1024 * 1024, grace=args.grace,
                      workers=args.workers, model_concurrency=args.model_concurrency,
                      metrics_port=args.metrics_port, metrics_address=args.metrics_address)
