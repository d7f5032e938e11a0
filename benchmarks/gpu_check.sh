#!/usr/bin/env bash
# The GPU check of nerx: gpu-marked tests, extraction throughput of every kind at batch 8 and
# 64, one epoch of CoNLL-2003 training for token and spandec, SeNER's memory curve to 32k
# words and PaDeLLM latency; a JSON report and a table (runs/gpu_check/ by default).
#
#   benchmarks/gpu_check.sh                       # on a GPU machine (under 8 minutes)
#   benchmarks/gpu_check.sh --device cpu --tiny   # the same steps on tiny inputs, anywhere
#   benchmarks/gpu_check.sh --help                # every option
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python}" benchmarks/gpu_check.py "$@"
