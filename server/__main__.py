"""`python -m server [--home DIR] [--address ...]`: the same as `lineage serve`."""

import argparse
import sys

from lineage.errors import LineageError
from server.cli import add_serve_command

parser = argparse.ArgumentParser(prog="python -m server")
common = argparse.ArgumentParser(add_help=False)
common.add_argument("--home", default=None)
add_serve_command(parser.add_subparsers(dest="cmd"), common)
args = parser.parse_args(["serve", *sys.argv[1:]])
try:
    sys.exit(args.func(args))
except LineageError as e:
    print(f"lineage: error: {e.message}", file=sys.stderr)
    sys.exit(2)
