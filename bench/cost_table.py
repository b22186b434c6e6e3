"""The cost table: seconds per full-data epoch, and after the last epoch, for each experiment.

Trains each experiment with its own recipe and batch size (the study's 512 for 1-19) for a
few epochs on a stratified subset of the training set, times the training and the
evaluation of every epoch apart, and projects a full-data epoch from them: the training
part scales with the training images, the test-set evaluation does not (the test set is
always the full 10,000), a validation split scales with the subset. It also times what
``run_experiment`` does after the last epoch (the final model's test prediction with the
recipe's test-time views, its accuracy on 2,000 training images, batch-norm statistics
re-estimated), which the subset does not shrink. Medians over the epochs after the first
(which compiles). Measure one experiment at a time on an idle machine; the driver's cost
estimate on a CPU reads the result from ``cifar_utils/costs.py``.

    python bench/cost_table.py --data /tmp/cifar10.npz --subset 10000 --epochs 3 --json /tmp/costs.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, installed or not

import keras  # noqa: E402

from cifar_utils import EXPERIMENTS, get_experiment, load_cifar10, run_experiment  # noqa: E402
from cifar_utils.backend import backend_name, cpu_name, device_description, versions  # noqa: E402
from cifar_utils.data import CifarData  # noqa: E402
from cifar_utils.storage import write_atomic  # noqa: E402

FULL_TRAIN = 50_000


class PhaseTimer(keras.callbacks.Callback):
    """Per epoch: seconds of training steps and of the evaluation that follows them."""

    def __init__(self):
        super().__init__()
        self.train: list[float] = []
        self.evaluate: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._evaluated = time.perf_counter(), 0.0

    def on_test_begin(self, logs=None):
        self._test_start = time.perf_counter()

    def on_test_end(self, logs=None):
        self._evaluated = time.perf_counter() - self._test_start

    def on_epoch_end(self, epoch, logs=None):
        self.train.append(time.perf_counter() - self._start - self._evaluated)
        self.evaluate.append(self._evaluated)


def measure(number: int, data, epochs: int, out_dir: str) -> dict:
    exp = get_experiment(number)
    timer = PhaseTimer()
    start = time.perf_counter()
    record = run_experiment(exp, epochs=epochs, data=data, out_dir=out_dir, force=True, log_every=epochs,
                            callbacks=[timer])
    wall = time.perf_counter() - start
    train, evaluate = statistics.median(timer.train[1:]), statistics.median(timer.evaluate[1:])
    train_size = record.params["train_size"]
    full_train = FULL_TRAIN * (1 - exp.recipe.validation)
    scale_eval = 1.0 if record.evaluated_on == "test" else full_train / train_size
    return {"experiment": number, "batch_size": exp.recipe.batch_size, "train_size": train_size,
            "evaluated_on": record.evaluated_on,
            "train_seconds": train, "eval_seconds": evaluate,
            "full_epoch_seconds": train * full_train / train_size + evaluate * scale_eval,
            "first_epoch_seconds": timer.train[0] + timer.evaluate[0],
            "after_training_seconds": wall - sum(timer.train) - sum(timer.evaluate),
            "recipe_epochs": exp.recipe.epochs, "test_acc": record.test_acc}


def training_subset(source, normalize: bool, subset: int) -> CifarData:
    """A stratified subset of the training images and the whole test set (a subset of
    ``load_cifar10`` also cuts the test set, which would shrink the final prediction)."""
    whole = load_cifar10(source, normalize=normalize)
    part = load_cifar10(source, normalize=normalize, subset=subset)
    return CifarData(part[0], whole[1], source=f"{part.source}, full test set", normalized=whole.normalized)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="CIFAR-10 source (default: $CIFAR10_SOURCE or download)")
    parser.add_argument("--experiments", nargs="+", default=["all"], help="numbers, or 'all' (1-21)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per experiment (>= 2; the first compiles)")
    parser.add_argument("--subset", type=int, default=10_000, help="stratified training subset")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch includes compilation")
    numbers = [e.number for e in EXPERIMENTS] if args.experiments == ["all"] else \
        [get_experiment(n).number for n in args.experiments]
    machine = {"backend": backend_name(), "device": device_description(), "cpu": cpu_name(),
               "nproc": os.cpu_count(), "load_average_at_start": os.getloadavg(), "versions": versions(),
               "subset": args.subset, "epochs": args.epochs, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    print(json.dumps(machine), flush=True)
    datasets, rows = {}, []
    with tempfile.TemporaryDirectory() as out_dir:
        for number in numbers:
            normalize = get_experiment(number).normalize
            if normalize not in datasets:
                datasets[normalize] = training_subset(args.data, normalize, args.subset)
            rows.append(measure(number, datasets[normalize], args.epochs, out_dir))
            r = rows[-1]
            print(f"exp {number:>2}: full-data epoch {r['full_epoch_seconds']:7.1f} s (train {r['train_seconds']:.2f} s"
                  f" on {r['train_size']:,} images, eval {r['eval_seconds']:.2f} s), after training "
                  f"{r['after_training_seconds']:.1f} s", flush=True)
    print("\n| exp | batch | s per full-data epoch | after the last epoch (s) | recipe's epochs |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['experiment']} | {r['batch_size']} | {r['full_epoch_seconds']:.1f} | "
              f"{r['after_training_seconds']:.1f} | {r['recipe_epochs']} |")
    if args.json:
        write_atomic(args.json, json.dumps({**machine, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
