#!/usr/bin/env bash
# The GPU release: train the full profile (every chapter, the study's 300 epochs, JAX, the
# JPEG copy of CIFAR-10) as a pool on a lent GPU machine, within one device call, and bring
# back what finished as a reference folder. Calls resume each other: a run that finished in
# an earlier call travels back in results/reference-gpu/ (commit it between calls) and is reused.
#
# Prepare once on the development machine, in the repository root (as for device_suite.sh):
#   echo /.whl/ >> .git/info/exclude; echo /.data/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --platform manylinux2014_x86_64 -d .whl keras==3.15.1 namex optree
#   mkdir -p .data && cp ../shared/data/cifar10-jpeg-pack.npz ../shared/data/cifar10_unpack.py .data/
# Try it here first, small:  RELEASE_FLAGS="--subset 200 --epochs 1 --only 01" OUT=/tmp/release bash bench/gpu_release.sh
# Then on the device: carry [".whl", ".data"], command `bash bench/gpu_release.sh`, timeout_s 600.
# Back here:  tar xzf <files_at>/reference-gpu.tar.gz -C results/ && git add results/reference-gpu && git commit
# and, once every run is in:  ./run_all.sh --reference results/reference-gpu   (writes report/; results/reference is the CPU one)
# Environment:
#   JOBS            worker processes sharing the GPU (default 6)
#   DEADLINE        seconds after which no new run starts (default 420, for a 600 s call)
#   SPEED           speed flags (default: the JAX fused-step path and data on the device)
#   RELEASE_FLAGS   more run_all flags, e.g. "--only 01,02" or a small trial
#   OUT             where results go (the device tool sets it)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export KERAS_BACKEND=${KERAS_BACKEND:-jax} PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
out=${OUT:-/tmp/release-out}
work=/tmp/release
mkdir -p "$out" "$work/runs"
data=/tmp/cifar10.npz
if [ ! -f "$data" ]; then
  if [ -d .data ]; then python3 .data/cifar10_unpack.py --pack .data/cifar10-jpeg-pack.npz --npz "$data"
  else python3 ../shared/data/cifar10_unpack.py --npz "$data"; fi
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
# Runs finished in earlier calls come back with the working tree: reuse them.
if [ -d results/reference-gpu/runs ]; then cp -r results/reference-gpu/runs/. "$work/runs/"; fi
status=0
# shellcheck disable=SC2086  # SPEED and RELEASE_FLAGS are word lists
python3 -m cifar_utils.run_all --train-only --data "$data" --jobs "${JOBS:-6}" --deadline "${DEADLINE:-420}" \
  --out "$work" ${SPEED:---steps-per-execution 8 --data-on-device --eval-batch-size 2500} ${RELEASE_FLAGS:-} \
  2>&1 | grep -v "^I0000\|^W0000" | tee "$out/train.log" || status=$?
python3 - "$work" <<'PY'
import sys
from cifar_utils.runs.reference import export_reference
print(f"exported {export_reference(sys.argv[1], '/tmp/reference-gpu')} runs")
PY
tar czf "$out/reference-gpu.tar.gz" -C /tmp reference-gpu
ls -la "$out"
exit $status
