"""Per-step overhead: what each speed setting saves when there is next to no arithmetic.

The study's models on a big GPU spend most of an epoch outside the arithmetic (the issue
that asked for this measured about 5 ms per step on an H200). This benchmark isolates
that cost: a model with almost no arithmetic (8x8 average pooling, then one dense layer)
trained on 50,000 random CIFAR-shaped images with the study's batch 512 and a
10,000-image test set evaluated every epoch, once per speed setting. Its seconds per
epoch are the per-step cost of the data path and the dispatch, times 118 steps.

    KERAS_BACKEND=jax python bench/step_overhead.py --epochs 5
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, installed or not

import keras  # noqa: E402
import numpy as np  # noqa: E402

from cifar_utils.backend import backend_name, device_description, prepare_steps, versions  # noqa: E402
from cifar_utils.batches import EpochDraws, fit_data  # noqa: E402
from cifar_utils.speed import Speed  # noqa: E402
from cifar_utils.storage import write_atomic  # noqa: E402

SETTINGS = {
    "defaults": Speed(),
    "eval batch 2500": Speed(eval_batch_size=2500),
    "steps 8": Speed(steps_per_execution=8),
    "data on device": Speed(data_on_device=True),
    "all three": Speed(steps_per_execution=8, data_on_device=True, eval_batch_size=2500),
}
TRAIN, TEST, BATCH = 50_000, 10_000, 512


def seconds_per_epoch(speed: Speed, data, epochs: int) -> tuple[float, float]:
    """Median epoch after the first, and a weight checksum (equal across settings on JAX)."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.AveragePooling2D(8),
                              keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    compile_steps, fit_batch = prepare_steps(model, speed.steps_per_execution, BATCH)
    model.compile("adam", "categorical_crossentropy", metrics=["accuracy"], steps_per_execution=compile_steps)
    marks: list[float] = []
    clock = keras.callbacks.LambdaCallback(on_epoch_begin=lambda *_: marks.append(time.perf_counter()),
                                           on_epoch_end=lambda *_: marks.append(time.perf_counter()))
    feed = fit_data(*data, BATCH, seed=0, fit_batch=fit_batch, eval_batch_size=speed.eval_batch_size,
                    on_device=speed.data_on_device)
    model.fit(**feed, epochs=epochs, verbose=0, callbacks=[EpochDraws(0, feed["x"]), clock])
    epoch_times = np.diff(marks)[::2]
    return float(np.median(epoch_times[1:])), float(model.layers[-1].get_weights()[0].sum())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=5, help="epochs per setting (>= 2; the first compiles)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch includes compilation")
    rng = np.random.default_rng(0)
    x = rng.random((TRAIN + TEST, 32, 32, 3), dtype=np.float32)
    y = keras.utils.to_categorical(rng.integers(0, 10, TRAIN + TEST), 10)
    data = (x[:TRAIN], y[:TRAIN]), (x[TRAIN:], y[TRAIN:])
    print(f"backend {backend_name()} on {device_description()}; {versions()}", flush=True)
    steps = -(-TRAIN // BATCH) + -(-TEST // BATCH)
    rows = []
    for name, speed in SETTINGS.items():
        seconds, checksum = seconds_per_epoch(speed, data, args.epochs)
        rows.append({"setting": name, "speed": speed.as_dict(), "seconds_per_epoch": seconds,
                     "ms_per_default_step": 1000 * seconds / steps, "weight_checksum": checksum})
        print(f"{name:>16}: {seconds:.3f} s/epoch ({1000 * seconds / steps:.2f} ms per step of the default "
              f"{steps}-step epoch), weight checksum {checksum:.6f}", flush=True)
    if args.json:
        summary = {"backend": backend_name(), "device": device_description(), "versions": versions(),
                   "epochs": args.epochs, "rows": rows}
        write_atomic(args.json, json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
