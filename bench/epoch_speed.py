"""Seconds per epoch, images/s and wall time per experiment, on the current Keras backend.

Trains each chosen experiment for a few epochs with the study's recipe (batch 512, test
set evaluated every epoch) and reports the median epoch after the first (which compiles),
the augmentation overhead epoch(17) / epoch(15) when both ran, and the projected time of
the full profile (300 epochs each) for the experiments measured. The speed settings
(``cifar_utils.Speed``) are flags, so one lever at a time can be switched on; ``--parallel N``
runs the experiments as N processes at once, sharing the machine's accelerator.

    python bench/epoch_speed.py --data /tmp/cifar10.npz --experiments 6 15 17 --epochs 3
    KERAS_BACKEND=jax python bench/epoch_speed.py --data sample --experiments all --epochs 5
    KERAS_BACKEND=jax python bench/epoch_speed.py --steps-per-execution 8 --data-on-device --parallel 4

Needs only keras, numpy, pandas, pillow and one backend: it runs where TensorFlow is absent.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, installed or not

from cifar_utils import EXPERIMENTS, get_experiment, load_cifar10, run_experiment  # noqa: E402
from cifar_utils.backend import backend_name, device_description, versions  # noqa: E402
from cifar_utils.experiments import STUDY_EPOCHS  # noqa: E402
from cifar_utils.speed import add_speed_arguments, speed_flags, speed_from_arguments  # noqa: E402
from cifar_utils.storage import write_atomic  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="CIFAR-10 source (default: $CIFAR10_SOURCE or download)")
    parser.add_argument("--experiments", nargs="+", default=["6", "15", "17"], help="numbers, or 'all'")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per experiment (>= 2; the first compiles)")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--subset", type=int, help="stratified subset of the training set (CPU at small size)")
    parser.add_argument("--eval-every", type=int, default=1, help="evaluate the test set every N epochs")
    parser.add_argument("--parallel", type=int, default=1, metavar="N",
                        help="run the experiments as N processes at once (runs sharing one GPU)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    add_speed_arguments(parser)
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch includes compilation")
    args.speed = speed_from_arguments(parser, args)
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    numbers = [e.number for e in EXPERIMENTS] if args.experiments == ["all"] else \
        [get_experiment(n).number for n in args.experiments]
    print(f"backend {backend_name()} on {device_description()}; {versions()}; speed: {args.speed.describe()}",
          flush=True)
    start = time.perf_counter()
    rows, source = (run_parallel if args.parallel > 1 else run_here)(numbers, args)
    report(rows, args, source, time.perf_counter() - start)


def run_here(numbers: list[int], args: argparse.Namespace) -> tuple[list[dict], str]:
    datasets, rows = {}, []
    with tempfile.TemporaryDirectory() as out_dir:
        for number in numbers:
            exp = get_experiment(number)
            if exp.normalize not in datasets:
                datasets[exp.normalize] = load_cifar10(args.data, normalize=exp.normalize, subset=args.subset)
            data = datasets[exp.normalize]
            start = time.perf_counter()
            record = run_experiment(exp, epochs=args.epochs, batch_size=args.batch_size, data=data,
                                    out_dir=out_dir, force=True, log_every=args.epochs,
                                    eval_every=args.eval_every, speed=args.speed)
            seconds = record.history["epoch_seconds"]
            rows.append({"experiment": number, "seconds_per_epoch": record.seconds_per_epoch,
                         "first_epoch_seconds": seconds[0], "images_per_second": record.images_per_second,
                         "wall_seconds": time.perf_counter() - start, "train_size": record.params["train_size"],
                         "test_acc": record.test_acc,
                         "study_seconds_per_epoch": exp.study.seconds_per_epoch if exp.study else float("nan")})
    return rows, data.source


def run_parallel(numbers: list[int], args: argparse.Namespace) -> tuple[list[dict], str]:
    """Each experiment in its own process, ``--parallel`` at a time, as ``run_all.sh --jobs`` does."""
    with tempfile.TemporaryDirectory() as tmp:
        def one(number: int) -> dict:
            path = Path(tmp) / f"exp{number}.json"
            command = [sys.executable, __file__, *_child_flags(args), "--experiments", str(number),
                       "--json", str(path)]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(f"experiment {number} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
            print(f"experiment {number}: done", flush=True)
            return json.loads(path.read_text())

        with ThreadPoolExecutor(max_workers=args.parallel) as pool:
            results = list(pool.map(one, numbers))
    return [r["rows"][0] for r in results], results[0]["data"]


def _child_flags(args: argparse.Namespace) -> list[str]:
    flags = ["--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--eval-every", str(args.eval_every)]
    for name in ("data", "subset"):
        if getattr(args, name) is not None:
            flags += [f"--{name}", str(getattr(args, name))]
    return flags + speed_flags(args.speed)


def schedule(durations: list[float], slots: int) -> float:
    """Wall time of running jobs in this order, each on the first free slot (a thread pool)."""
    free = [0.0] * slots
    for seconds in durations:
        free.sort()
        free[0] += seconds
    return max(free)


def report(rows: list[dict], args: argparse.Namespace, source: str, wall: float) -> None:
    print(f"\n{'exp':>4} {'s/epoch':>9} {'1st epoch':>10} {'images/s':>10} {'wall s':>8} {'test acc':>9} "
          f"{'study s/epoch':>14}")
    for r in rows:
        print(f"{r['experiment']:>4} {r['seconds_per_epoch']:>9.3f} {r['first_epoch_seconds']:>10.2f} "
              f"{r['images_per_second']:>10.0f} {r['wall_seconds']:>8.1f} {r['test_acc']:>9.2f} "
              f"{r['study_seconds_per_epoch']:>14}")
    by_number = {r["experiment"]: r for r in rows}
    summary = {"backend": backend_name(), "device": device_description(), "versions": versions(),
               "data": source, "batch_size": args.batch_size, "epochs": args.epochs, "subset": args.subset,
               "eval_every": args.eval_every, "speed": args.speed.as_dict(), "parallel": args.parallel,
               "wall_seconds": wall, "rows": rows}
    if 15 in by_number and 17 in by_number:
        ratio = by_number[17]["seconds_per_epoch"] / by_number[15]["seconds_per_epoch"]
        summary["augmentation_overhead"] = ratio
        print(f"augmentation overhead epoch(17)/epoch(15): {ratio:.3f}  (study: {34 / 11:.1f})")
    durations = [(STUDY_EPOCHS - 1) * r["seconds_per_epoch"] + r["first_epoch_seconds"] for r in rows]
    summary["projected_full_profile_seconds"] = projected = schedule(durations, args.parallel)
    how = "one after another" if args.parallel == 1 else f"{args.parallel} at a time, at the speeds measured so"
    print(f"projected wall time of {STUDY_EPOCHS} epochs of these {len(rows)} experiment(s), {how}: "
          f"{projected / 60:.1f} min (this benchmark took {wall:.0f} s)")
    if args.json:
        write_atomic(args.json, json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
