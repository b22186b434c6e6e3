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
# It measures the per-step overhead first (bench/step_overhead.py), then one lever at a time
# on real models (docs/benchmarks.md says which ones and why), so a single call answers
# what to keep. Environment:
#   KERAS_BACKEND  jax (default) or torch
#   EPOCHS         epochs per experiment and setting (default 4; the first one compiles)
#   EXPERIMENTS    default "2 6 15 17": the smallest, a mid-size, the VGG-like without and with augmentation
#   SETTINGS       which rows of the sweep to run (default all): names from the list below
#   BENCH_FLAGS    added to every row, e.g. "--subset 1000" to try the script on a CPU
#   OUT            where results go (the device tool sets it)
# The full profile needs the notebook stack too (papermill, nbconvert, ipykernel and their
# dependencies are not on that machine): carry them as wheels, then run
#   KERAS_BACKEND=jax ./run_all.sh --data /tmp/cifar10.npz --jobs N <the kept levers>
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

echo "=== per-step overhead (bench/step_overhead.py)"
python3 bench/step_overhead.py --epochs "${EPOCHS:-4}" --json "$out/${KERAS_BACKEND}_step_overhead.json" 2>&1 \
  | tee "$out/${KERAS_BACKEND}_step_overhead.log" | grep -v "^I0000\|^W0000" || true

declare -A sweep=(
  [default]=""
  [jit]="--jit-compile true"
  [device]="--data-on-device"
  [steps8]="--steps-per-execution 8"
  [eval2500]="--eval-batch-size 2500"
  [all]="--jit-compile true --data-on-device --steps-per-execution 8 --eval-batch-size 2500"
  [all_shared4]="--jit-compile true --data-on-device --steps-per-execution 8 --eval-batch-size 2500 --parallel 4"
)
order="default jit device steps8 eval2500 all all_shared4"
for name in ${SETTINGS:-$order}; do
  echo "=== $name: ${sweep[$name]}"
  # shellcheck disable=SC2086  # EXPERIMENTS and the settings are word lists
  python3 bench/epoch_speed.py --data "$data" --experiments ${EXPERIMENTS:-2 6 15 17} --epochs "${EPOCHS:-4}" \
    ${sweep[$name]} ${BENCH_FLAGS:-} --json "$out/${KERAS_BACKEND}_$name.json" 2>&1 | tee "$out/${KERAS_BACKEND}_$name.log" \
    | grep -v "^I0000\|^W0000" || true
done
