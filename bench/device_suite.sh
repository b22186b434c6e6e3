#!/usr/bin/env bash
# The GPU benchmark, for the lent accelerator machine (JAX and PyTorch, no TensorFlow, no
# internet). Prepare once on the development machine, in the repository root:
#
#   echo /.whl/ >> .git/info/exclude; echo /.data/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --platform manylinux2014_x86_64 -d .whl keras==3.15.1 namex optree
#   mkdir -p .data && cp ../shared/data/cifar10-jpeg-pack.npz ../shared/data/cifar10_unpack.py .data/
#
# then run it there with `carry: [".whl", ".data"]` and the command `bash bench/device_suite.sh`.
# Environment: KERAS_BACKEND (default jax), EPOCHS (default 5), EXPERIMENTS (default all),
# BENCH_FLAGS (e.g. "--steps-per-execution 8 --jit-compile true", the levers to measure),
# OUT (where results go; the device tool sets it).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export KERAS_BACKEND=${KERAS_BACKEND:-jax} PYTHONUNBUFFERED=1
out=${OUT:-/tmp/bench-out}
mkdir -p "$out"
data=/tmp/cifar10.npz
[ -f "$data" ] || python3 .data/cifar10_unpack.py --pack .data/cifar10-jpeg-pack.npz --npz "$data"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
# shellcheck disable=SC2086  # EXPERIMENTS and BENCH_FLAGS are word lists
python3 bench/epoch_speed.py --data "$data" --experiments ${EXPERIMENTS:-all} --epochs "${EPOCHS:-5}" \
  ${BENCH_FLAGS:-} --json "$out/bench_${KERAS_BACKEND}.json" 2>&1 | tee "$out/bench_${KERAS_BACKEND}.log"
