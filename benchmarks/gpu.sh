#!/usr/bin/env bash
# GPU benchmarks in ONE call of at most 10 minutes on a fresh, offline GPU machine.
#
# What it measures: benchmarks/gpu.py (bf16 matmul rate; MFU of the signature computation on a
# random-initialised 1B-class Llama in bf16; faiss on the GPU). Results: $OUT/gpu.json (the
# device tool's output folder) or benchmarks/results/ when OUT is unset, plus the log.
#
# Through this workplace's device tool:
#   run(command="bash benchmarks/gpu.sh", timeout_s=600, carry=["benchmarks/wheels"])
#
# The machine is offline: a Python package it lacks must travel as a wheel in the gitignored
# benchmarks/wheels/ (the call's `carry`). The nvidia-h200 image has torch (CUDA 13),
# transformers, tokenizers, safetensors and numpy, but no faiss. Fetch wheels here with
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#     -d benchmarks/wheels faiss-gpu-cu12   # or another faiss GPU build
# Caveat, measured here: faiss-gpu 1.15.1 is a 135 MB wheel and needs the CUDA 12 runtime and
# cuBLAS wheels besides (the image's are CUDA 13); the device tool carries at most 64 MiB per
# call, so no faiss GPU build fits. Without it gpu.py records "faiss GPU: not available" and
# times exact top-10 search with torch instead, labelled as such; everything else still runs.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${OUT:-benchmarks/results}
mkdir -p "$OUT_DIR"
PY=${PYTHON:-python3}
if compgen -G "benchmarks/wheels/*.whl" >/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/lineage-site benchmarks/wheels/*.whl \
    && export PYTHONPATH=/tmp/lineage-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi >"$OUT_DIR/nvidia-smi.txt" 2>&1 || true
$PY -c "import torch, transformers, tokenizers; print(\"torch\", torch.__version__, \"transformers\", transformers.__version__, \"tokenizers\", tokenizers.__version__)" 2>&1 | tee "$OUT_DIR/versions.txt"
# leave a minute of the 10 for the transfers: gpu.py writes gpu.json after every section
timeout 540 $PY benchmarks/gpu.py --out "$OUT_DIR" "$@" 2>&1 | tee "$OUT_DIR/gpu.log"
