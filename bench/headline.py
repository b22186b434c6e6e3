"""The headline benchmark: experiment 21 (or a variant) on the full JPEG copy, one fresh
process per seed, timed from that process's start to its final test accuracy.

Each run trains on the recipe's 45,000 training images, measures its 5,000-image
validation split every epoch (the curve printed) and the 10,000 test images once, at the
end, with the recipe's test-time views. A run's wall time is its own process's: imports,
data loading, training, the final prediction and writing the record, so it is what a
reader waits for. The goal it checks is issue 16's: the study's best, 89.02 % (300 epochs
on a GPU), as the mean of the seeds, in at most 10 minutes a run. Prints the machine and
the load average before and after each run (another job on the cores shows there), each
epoch's time and validation accuracy, then one Markdown row per recipe; writes it all as JSON.

    python bench/headline.py --data /tmp/cifar10.npz --seeds 0 1 2 --json /tmp/headline.json
    python bench/headline.py --data /tmp/cifar10.npz --seeds 0 --set 21:epochs=8 --json /tmp/e8.json

``--set`` trains a variant (``Experiment.vary``), as in ``bench/recipes_cpu.py``.
``--out`` keeps the run folders (default: a temporary folder, removed): pointed at a
reference's ``runs/`` folder, the three seeds are also chapter 6's reference runs of
experiment 21 (the same identity as ``./run_all.sh --profile cpu`` trains). A run folder
already there is refused, since a reused or resumed run's wall time is not one run's.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()  # before the imports: they are part of what a reader waits for

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

from recipes_cpu import experiment_for, machine, parse_changes  # noqa: E402 (bench/ is the script's folder)

from cifar_utils.speed import PRECISIONS  # noqa: E402 (recipes_cpu put the checkout on the path)

STUDY_BEST = 89.02  # experiment 17, the study's 300 epochs on a GPU
GOAL_SECONDS = 600.0


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="CIFAR-10 source (default: $CIFAR10_SOURCE or download)")
    parser.add_argument("--experiment", default="21", help="the experiment (default 21, the airbench-style network)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one fresh process per seed")
    parser.add_argument("--set", action="append", default=[], metavar="EXP:FIELD=VALUE", dest="changes",
                        help="train a variant: change a recipe or spec field (repeatable)")
    parser.add_argument("--subset", type=int, default=0, help="a stratified training subset (0: all; for tests)")
    parser.add_argument("--precision", choices=PRECISIONS, default="float32",
                        help="the model's dtype policy (mixed_bfloat16 pays on some CPUs only: docs/benchmarks.md)")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--out", type=Path, help="keep the run folders here (default: a temporary folder)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)  # one run, its result to this file
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        args.variants = parse_changes(args.changes)
    except ValueError as error:
        parser.error(str(error))
    return args


def one_run(args: argparse.Namespace) -> None:
    """In the child process: train one seed and write what the parent reports."""
    from cifar_utils import load_cifar10, plan_run, run_experiment
    from cifar_utils.runs.settings import RunSettings

    exp = experiment_for(args.experiment, args.variants)
    data = load_cifar10(args.data, subset=args.subset or None)
    loaded = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        out_dir = args.out or Path(scratch)
        planned = plan_run(exp, data, args.seed, out_dir, RunSettings(precision=args.precision)).run_dir
        if planned.exists():
            raise SystemExit(f"headline: {planned} exists (a finished or partial run): its wall time would not be "
                             "one run's; give another --out or move it away")
        record = run_experiment(exp, seed=args.seed, data=data, out_dir=out_dir, log_every=1,
                                speed={"precision": args.precision})
    epochs = record.history["epoch_seconds"]
    label = exp.label + ("" if args.precision == "float32" else f" [{args.precision}]")
    result = {"label": label, "precision": args.precision, "seed": args.seed, "status": record.status,
              "test_acc": record.test_acc,
              "val_acc": record.val_acc, "val_curve": [100 * v for v in record.history["val_accuracy"]],
              "epoch_seconds": epochs, "start_seconds": loaded - STARTED, "train_seconds": sum(epochs),
              "run_seconds": record.wall_seconds, "epochs": record.epochs_completed,
              "recipe": record.params["recipe"], "train_size": record.params["train_size"],
              "validation_size": record.params["validation_size"], "test_size": record.params["test_size"],
              "params": record.param_count, "versions": record.versions, "device": record.device,
              "run_dir": str(planned) if args.out else None}
    args.child.write_text(json.dumps(result))


def timed_run(args: argparse.Namespace, seed: int) -> dict:
    """One seed in a fresh process; its wall time measured from outside."""
    with tempfile.TemporaryDirectory() as folder:
        result_file = Path(folder) / "run.json"
        command = [sys.executable, __file__, "--child", str(result_file), "--seed", str(seed),
                   "--experiment", args.experiment, "--subset", str(args.subset), "--precision", args.precision]
        command += ["--out", str(args.out)] if args.out else []
        command += [f"--set={change}" for change in args.changes] + (["--data", args.data] if args.data else [])
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        done = subprocess.run(command, check=False)
        wall = time.perf_counter() - start
        if done.returncode != 0 or not result_file.exists():
            raise SystemExit(f"headline: the run of seed {seed} failed (exit {done.returncode}); its output is above")
        result = json.loads(result_file.read_text())
    return {**result, "wall_seconds": wall, "load_before": round(load_before, 2),
            "load_after": round(os.getloadavg()[0], 2)}


def summary(runs: list[dict]) -> dict:
    accuracies = [r["test_acc"] for r in runs]
    walls = [r["wall_seconds"] for r in runs]
    mean = statistics.fmean(accuracies)
    return {"label": runs[0]["label"], "seeds": [r["seed"] for r in runs], "test_acc_mean": mean,
            "test_acc_std": statistics.stdev(accuracies) if len(runs) > 1 else float("nan"),
            "wall_seconds_mean": statistics.fmean(walls), "wall_seconds_max": max(walls),
            "goal_met": mean >= STUDY_BEST and max(walls) <= GOAL_SECONDS}


def row(result: dict) -> str:
    std = "" if result["test_acc_std"] != result["test_acc_std"] else f" ± {result['test_acc_std']:.2f}"
    return (f"| {result['label']} | {len(result['seeds'])} | {result['test_acc_mean']:.2f}{std} "
            f"| {result['wall_seconds_mean'] / 60:.1f} (max {result['wall_seconds_max'] / 60:.1f}) "
            f"| {'met' if result['goal_met'] else 'not met'} |")


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.child:
        one_run(args)
        return
    info = machine()
    print(f"headline: {info['cpu']}, {info['cores']} cores, {info['backend']}; load average "
          f"{info['load_average_at_start']} at {info['date']}", flush=True)
    runs = []
    for seed in args.seeds:
        result = timed_run(args, seed)
        runs.append(result)
        curve = ", ".join(f"{v:.1f}" for v in result["val_curve"])
        print(f"headline: seed {seed}: test {result['test_acc']:.2f} %, {result['wall_seconds']:.0f} s wall "
              f"({result['start_seconds']:.0f} s start-up, {result['train_seconds']:.0f} s in epochs, "
              f"{result['run_seconds'] - result['train_seconds']:.0f} s more in run_experiment); validation "
              f"by epoch: {curve}; load {result['load_before']} -> {result['load_after']}", flush=True)
    result = summary(runs)
    print(f"\n| recipe | seeds | test acc % (mean ± std) | minutes a run | goal: ≥ {STUDY_BEST} % in ≤ 10 min |\n"
          f"|---|---:|---:|---:|---|\n{row(result)}")
    if args.json:
        payload = {**info, "command": "python bench/headline.py " + " ".join(sys.argv[1:]), "summary": result,
                   "runs": runs}
        tmp = args.json.with_name(args.json.name + ".tmp")
        tmp.write_text(json.dumps(payload, indent=1))
        os.replace(tmp, args.json)


if __name__ == "__main__":
    main()
