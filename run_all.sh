#!/usr/bin/env bash
# Run every chapter notebook headless with papermill, then build report/index.html.
#   ./run_all.sh --quick          bundled sample, 2 epochs: minutes on a laptop CPU
#   ./run_all.sh                  the study's settings on real CIFAR-10 (a GPU is advised)
#   ./run_all.sh --help           all options
set -euo pipefail
cd "$(dirname "$0")"
# 3, as cifar_utils sets it: "2" still prints "failed call to cuInit" on a machine without a GPU.
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-3}"
exec "${PYTHON:-python3}" -m cifar_utils.run_all "$@"
