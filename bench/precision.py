"""bfloat16 against float32: the training step time of every experiment, side by side.

For each experiment, builds its network twice (``build_model(precision=...)``: Keras'
``float32`` policy and ``mixed_bfloat16``, float32 weights and logits), compiles each with
its recipe and trains both on the same real training images, one epoch of ``--images``
images each in turn, ``--epochs`` times, at the recipe's batch size, no evaluation. The
first epoch of each traces and compiles; the others are timed in pairs (see
``paired_step_times``). Prints the machine and one Markdown row per experiment: seconds
per 1,000 training images in each precision (medians), the speed-up (above 1: bfloat16 is
faster; median and range of the pairs) and each side's last training loss (the same
images in the same order from the same initial weights, so a bfloat16 loss far from the
float32 one would show a numerical problem, not a different draw).

    python bench/precision.py --data /tmp/cifar10.npz --json /tmp/precision.json
    python bench/precision.py --data /tmp/cifar10.npz --experiments 2 15 21 --images 4096 --epochs 3

Step time only: whether bfloat16 keeps each experiment's accuracy over a real training
length is a run (``./run_all.sh --precision mixed_bfloat16``), since it names its runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, installed or not

import keras  # noqa: E402
import numpy as np  # noqa: E402
from recipes_cpu import machine  # noqa: E402 (bench/ is the script's folder)

from cifar_utils import EXPERIMENTS, get_experiment, load_cifar10  # noqa: E402
from cifar_utils.models import build_model, compile_model, prepare_model  # noqa: E402
from cifar_utils.recipes import steps_per_epoch  # noqa: E402
from cifar_utils.speed import PRECISIONS  # noqa: E402
from cifar_utils.storage import write_atomic  # noqa: E402


def compiled(number: int, precision: str, x: np.ndarray, epochs: int) -> keras.Model:
    exp = get_experiment(number)
    keras.utils.set_random_seed(0)
    model = build_model(exp, seed=0, precision=precision)
    prepare_model(model, x)
    return compile_model(model, exp.recipe, steps_per_epoch(len(x), exp.recipe.batch_size), epochs)


def timed_epoch(model: keras.Model, x: np.ndarray, y: np.ndarray, batch_size: int) -> tuple[float, float]:
    """(seconds, training loss) of one epoch over ``x`` in a fixed order."""
    start = time.perf_counter()
    history = model.fit(x, y, batch_size=batch_size, epochs=1, shuffle=False, verbose=0)
    return time.perf_counter() - start, float(history.history["loss"][-1])


def paired_step_times(number: int, data, images: int, epochs: int) -> dict:
    """Both precisions' models, one epoch of each in turn: the first compiles, the others
    are timed in pairs, so a machine that slows down between two epochs (this VM's speed
    moves by up to 2x from one minute to the next) slows both sides of a pair alike. The
    speed-up is the median of the pairs' ratios."""
    exp = get_experiment(number)
    (x, y), _ = data
    x, y = (x[:images] if exp.normalize else x[:images] * np.float32(255.0)), y[:images]
    models = {p: compiled(number, p, x, epochs) for p in PRECISIONS}
    seconds = {p: [] for p in PRECISIONS}
    losses = {}
    for _ in range(epochs):
        for precision, model in models.items():
            took, losses[precision] = timed_epoch(model, x, y, exp.recipe.batch_size)
            seconds[precision].append(took)
    ratios = [a / b for a, b in zip(seconds["float32"][1:], seconds["mixed_bfloat16"][1:], strict=True)]
    row = {"experiment": number, "batch_size": exp.recipe.batch_size, "speed_up": statistics.median(ratios),
           "speed_up_range": [min(ratios), max(ratios)]}
    for precision in PRECISIONS:
        row[f"{precision}_seconds_per_1000_images"] = 1000 * statistics.median(seconds[precision][1:]) / len(x)
        row[f"{precision}_epoch_seconds"] = seconds[precision]
        row[f"{precision}_final_loss"] = losses[precision]
    return row


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="CIFAR-10 source (default: $CIFAR10_SOURCE or download)")
    parser.add_argument("--experiments", type=int, nargs="+", default=[e.number for e in EXPERIMENTS])
    parser.add_argument("--images", type=int, default=4096, help="training images per epoch")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per model (>= 2; the first compiles)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.epochs < 2 or args.images < 1:
        parser.error("--epochs must be at least 2 (the first compiles) and --images positive")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    info = machine()
    print(f"precision: {info['cpu']}, {info['cores']} cores, {info['backend']}; load average "
          f"{info['load_average_at_start']} at {info['date']}", flush=True)
    data = load_cifar10(args.data, subset=args.images)
    rows = []
    print("| exp | batch | float32 s / 1,000 images | bfloat16 s / 1,000 images | speed-up (median, range) | "
          "float32 loss | bfloat16 loss |\n|---|---|---|---|---|---|---|", flush=True)
    for number in args.experiments:
        row = paired_step_times(number, data, args.images, args.epochs)
        rows.append(row)
        low, high = row["speed_up_range"]
        print(f"| {number} | {row['batch_size']} | {row['float32_seconds_per_1000_images']:.2f} | "
              f"{row['mixed_bfloat16_seconds_per_1000_images']:.2f} | {row['speed_up']:.2f}x ({low:.2f}-{high:.2f}) "
              f"| {row['float32_final_loss']:.3f} | {row['mixed_bfloat16_final_loss']:.3f} |", flush=True)
    if args.json:
        payload = {**info, "command": "python bench/precision.py " + " ".join(sys.argv[1:]),
                   "images": args.images, "epochs": args.epochs, "rows": rows}
        write_atomic(args.json, json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
