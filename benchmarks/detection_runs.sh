#!/usr/bin/env bash
# The nine full-zoo detection runs behind issue 4's targets table, one after another (each
# uses both cores; never run two at once), then the targets table over them.
#
#   benchmarks/detection_runs.sh ZOO HOME SUFFIX
#
# HOME is registered into by the first run and reused by the rest. Writes
# benchmarks/results/detection-full-NAME-SUFFIX.json, targets-full-SUFFIX.json and a log per
# run under $LOGS (default: a temp dir).
set -euo pipefail
cd "$(dirname "$0")/.."
zoo=$1; home=$2; sfx=$3
R=benchmarks/results
LOGS=${LOGS:-$(mktemp -d)}
PY=${PYTHON:-.venv/bin/python}
run() {  # NAME ARGS...
  local name=$1; shift
  echo "detection $name $*" >&2
  "$PY" benchmarks/detection.py --zoo "$zoo" --home "$home" "$@" \
    --out "$R/detection-full-$name-$sfx.json" > "$LOGS/$name.log" 2>&1
}
run full --access full            # every probe: full access does not stop early (session 10)
run full-a05 --access full --alpha 0.05
run logprobs --access logprobs
run logprobs-a05 --access logprobs --alpha 0.05
run logprobs-q32 --access logprobs --max-queries 32
run text --access text
run text-a05 --access text --alpha 0.05
run text-q100 --access text --max-queries 100
run text-q100-fixed --access text --max-queries 100 --no-early-stop
"$PY" benchmarks/targets.py \
  "$R"/detection-full-{text-q100,text-q100-fixed,logprobs-q32,full,full-a05,logprobs,logprobs-a05,text,text-a05}-"$sfx".json \
  --out "$R/targets-full-$sfx.json"
echo "logs in $LOGS" >&2
