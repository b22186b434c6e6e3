"""Seconds per epoch, images/s and wall time per experiment, on the current Keras backend.

Trains each chosen experiment for a few epochs with the study's recipe (batch 512, test
set evaluated every epoch) and reports the median epoch after the first (which compiles),
the augmentation overhead epoch(17) / epoch(15) when both ran, and the projected time of
the full profile (300 epochs each) for the experiments measured.

    python bench/epoch_speed.py --data /tmp/cifar10.npz --experiments 6 15 17 --epochs 3
    KERAS_BACKEND=jax python bench/epoch_speed.py --data sample --experiments all --epochs 5

Needs only keras, numpy, pandas, pillow and one backend: it runs where TensorFlow is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, installed or not

from cifar_utils import EXPERIMENTS, get_experiment, load_cifar10, run_experiment  # noqa: E402
from cifar_utils.backend import backend_name, device_description, versions  # noqa: E402
from cifar_utils.experiments import STUDY_EPOCHS  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="CIFAR-10 source (default: $CIFAR10_SOURCE or download)")
    parser.add_argument("--experiments", nargs="+", default=["6", "15", "17"], help="numbers, or 'all'")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per experiment (>= 2; the first compiles)")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--jit-compile", default="auto", choices=["auto", "true", "false"])
    parser.add_argument("--steps-per-execution", type=int, default=1, help="train steps per compiled call")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch includes compilation")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    numbers = [e.number for e in EXPERIMENTS] if args.experiments == ["all"] else \
        [get_experiment(n).number for n in args.experiments]
    jit = {"auto": "auto", "true": True, "false": False}[args.jit_compile]
    datasets = {}
    rows = []
    print(f"backend {backend_name()} on {device_description()}; {versions()}", flush=True)
    with tempfile.TemporaryDirectory() as out_dir:
        for number in numbers:
            exp = get_experiment(number)
            if exp.normalize not in datasets:
                datasets[exp.normalize] = load_cifar10(args.data, normalize=exp.normalize)
            data = datasets[exp.normalize]
            start = time.perf_counter()
            record = run_experiment(exp, epochs=args.epochs, batch_size=args.batch_size, data=data,
                                    out_dir=out_dir, force=True, log_every=args.epochs, jit_compile=jit,
                                    steps_per_execution=args.steps_per_execution)
            seconds = record.history["epoch_seconds"]
            rows.append({"experiment": number, "seconds_per_epoch": record.seconds_per_epoch,
                         "first_epoch_seconds": seconds[0], "images_per_second": record.images_per_second,
                         "wall_seconds": time.perf_counter() - start, "train_size": record.params["train_size"],
                         "study_seconds_per_epoch": exp.study.seconds_per_epoch})
    report(rows, args, data.source)


def report(rows: list[dict], args: argparse.Namespace, source: str) -> None:
    print(f"\n{'exp':>4} {'s/epoch':>9} {'1st epoch':>10} {'images/s':>10} {'wall s':>8} {'study s/epoch':>14}")
    for r in rows:
        print(f"{r['experiment']:>4} {r['seconds_per_epoch']:>9.3f} {r['first_epoch_seconds']:>10.2f} "
              f"{r['images_per_second']:>10.0f} {r['wall_seconds']:>8.1f} {r['study_seconds_per_epoch']:>14}")
    by_number = {r["experiment"]: r for r in rows}
    summary = {"backend": backend_name(), "device": device_description(), "versions": versions(),
               "data": source, "batch_size": args.batch_size, "epochs": args.epochs,
               "jit_compile": args.jit_compile, "steps_per_execution": args.steps_per_execution, "rows": rows}
    if 15 in by_number and 17 in by_number:
        ratio = by_number[17]["seconds_per_epoch"] / by_number[15]["seconds_per_epoch"]
        summary["augmentation_overhead"] = ratio
        print(f"augmentation overhead epoch(17)/epoch(15): {ratio:.3f}  (study: {34 / 11:.1f})")
    projected = sum(STUDY_EPOCHS * r["seconds_per_epoch"] + r["first_epoch_seconds"] for r in rows)
    summary["projected_full_profile_seconds"] = projected
    print(f"projected {STUDY_EPOCHS} epochs of these {len(rows)} experiment(s), one after another: "
          f"{projected / 60:.1f} min")
    if args.json:
        tmp = args.json.with_name(args.json.name + ".tmp")
        tmp.write_text(json.dumps(summary, indent=1))
        os.replace(tmp, args.json)


if __name__ == "__main__":
    main()
