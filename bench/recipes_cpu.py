"""Test accuracy of the study's recipe against the modern ones at equal epochs, on a CPU.

Trains, on a stratified subset of the training set and for the same number of epochs:
experiment 17 with the study's recipe (Adam 1e-3, shift/flip augmentation, batch 512),
experiment 20 (experiment 17's network with the modern recipe) and experiment 21 (the
airbench-style network with the fast recipe), each with its own batch size. ``epochs``
overrides the recipes' epoch counts; their schedules stretch to fit. Prints the machine,
the backend and the versions, then one Markdown table: test accuracy (the final model,
with the recipe's test-time augmentation), validation accuracy of the final model and the
best epoch's (recipes that hold out a validation split), seconds per epoch (median after
the first, which compiles), first-epoch seconds and parameter count.

    python bench/recipes_cpu.py --data /tmp/cifar10.npz --subset 10000 --epochs 10
    python bench/recipes_cpu.py --data /tmp/cifar10.npz --subset 5000 --epochs 4 --experiments 21 \\
        --set 21:learning_rate=1.0 --json /tmp/lr1.json

``--set EXP:FIELD=VALUE`` trains a variant (``Experiment.vary``) instead of the registry
entry: any recipe or spec field, e.g. ``20:weight_decay=0.005`` or ``21:widths=(32,64,64)``.
Needs only keras, numpy, pandas, pillow and one backend.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, installed or not

from cifar_utils import get_experiment, load_cifar10, run_experiment  # noqa: E402
from cifar_utils.backend import backend_name, device_description, versions  # noqa: E402
from cifar_utils.experiments import Experiment  # noqa: E402
from cifar_utils.runs.identity import effective_recipe  # noqa: E402
from cifar_utils.storage import write_atomic  # noqa: E402

DEFAULT_EXPERIMENTS = ("17", "20", "21")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="CIFAR-10 source (default: $CIFAR10_SOURCE or download)")
    parser.add_argument("--experiments", nargs="+", default=list(DEFAULT_EXPERIMENTS), help="numbers")
    parser.add_argument("--epochs", type=int, default=10, help="epochs for every experiment (>= 2)")
    parser.add_argument("--subset", type=int, default=10000,
                        help="stratified training subset (test: a fifth of it); 0 for the full data")
    parser.add_argument("--subset-seed", type=int, default=0, help="seed of the stratified subset")
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="batch size for every experiment (default: each recipe's)")
    parser.add_argument("--set", action="append", default=[], metavar="EXP:FIELD=VALUE", dest="changes",
                        help="train a variant: change a recipe or spec field of one experiment (repeatable)")
    parser.add_argument("--out", type=Path, help="keep the runs here (finished ones are reused); "
                        "default: a temporary folder, deleted afterwards")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch includes compilation")
    try:
        args.variants = parse_changes(args.changes)
    except ValueError as error:
        parser.error(str(error))
    return args


def parse_changes(changes: list[str]) -> dict[int, dict]:
    """``["21:learning_rate=1.0", "21:ema=0"]`` -> ``{21: {"learning_rate": 1.0, "ema": 0}}``."""
    variants: dict[int, dict] = {}
    for change in changes:
        try:
            number, assignment = change.split(":", 1)
            name, text = assignment.split("=", 1)
            number = get_experiment(number.strip()).number
        except (ValueError, KeyError) as error:
            raise ValueError(f"--set {change!r}: expected EXP:FIELD=VALUE ({error})") from None
        try:
            value = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            value = text.strip()  # a bare word: a string field such as schedule=cosine
        variants.setdefault(number, {})[name.strip()] = value
    return variants


def experiment_for(number: str, variants: dict[int, dict]) -> Experiment:
    exp = get_experiment(number)
    changes = variants.get(exp.number)
    return exp.vary(**changes) if changes else exp


def cpu_model() -> str:
    """The processor's name (``lscpu``'s "Model name"), or what ``platform`` knows."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        text = ""
    for line in text.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


# The instruction sets a timing depends on: bfloat16 pays only where it is multiplied natively.
CPU_FEATURES = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile")


def cpu_features() -> dict:
    """``CPU_FEATURES`` present, and the family/model numbers (``/proc/cpuinfo``, Linux):
    two CPUs with one marketing name (a VM's "Intel Xeon Processor") can differ 2x."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    first = text.split("\n\n", 1)[0]
    fields = dict(line.split(":", 1) for line in first.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("flags", "").split())
    return {"family": fields.get("cpu family"), "model": fields.get("model"),
            "features": [f for f in CPU_FEATURES if f in flags]}


def machine() -> dict:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {"cpu": cpu_model(), "cpu_details": cpu_features(), "cores": os.cpu_count(),
            "device": device_description(), "backend": backend_name(),
            "versions": versions(), "load_average_at_start": [round(v, 2) for v in load],
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def main(argv=None) -> None:
    args = parse_args(argv)
    experiments = [experiment_for(n, args.variants) for n in args.experiments]
    info = machine()
    print(f"backend {info['backend']} on {info['device']}, {info['cpu']}; {info['versions']}; "
          f"load average {info['load_average_at_start']} at {info['date']}", flush=True)
    data = load_cifar10(args.data, subset=args.subset or None, seed=args.subset_seed)
    print(f"data: {data.source}: {len(data[0][0])} train / {len(data[1][0])} test images", flush=True)
    start = time.perf_counter()
    if args.out is not None:
        rows = [train(exp, data, args, args.out) for exp in experiments]
    else:
        with tempfile.TemporaryDirectory() as out_dir:
            rows = [train(exp, data, args, out_dir) for exp in experiments]
    report(rows, args, info, data.source, time.perf_counter() - start)


def train(exp: Experiment, data, args: argparse.Namespace, out_dir) -> dict:
    recipe = effective_recipe(exp, args.epochs, args.batch_size)
    record = run_experiment(exp, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, data=data,
                            out_dir=out_dir, log_every=1)
    seconds = record.history["epoch_seconds"]
    return {"experiment": exp.number, "variant": exp.variant, "label": exp.label, "epochs": record.epochs_completed,
            "batch_size": recipe.batch_size, "status": record.status, "test_acc": record.test_acc,
            "val_acc": record.val_acc, "best_val_acc": record.best_val_acc, "best_epoch": record.best_epoch,
            "train_acc": record.train_acc, "train_eval_acc": record.train_eval_acc,
            "bn_reestimated_test_acc": record.bn_reestimated_test_acc, "tta": recipe.tta,
            "train_size": record.params["train_size"],
            "seconds_per_epoch": record.seconds_per_epoch, "first_epoch_seconds": seconds[0],
            "wall_seconds": record.wall_seconds, "params": record.param_count, "recipe": record.params["recipe"],
            "history": record.history}


def _percent(value: float) -> str:
    return "-" if value != value else f"{value:.2f}"  # NaN: not evaluated


def table(rows: list[dict]) -> str:
    lines = ["| experiment | batch | test acc % | val acc % (best) | train acc %, running / final | s / epoch "
             "| first epoch s | params |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        tta = f", TTA {r['tta']}" if r["tta"] != "none" else ""
        val = "-" if r["val_acc"] != r["val_acc"] else \
            f"{r['val_acc']:.2f} ({r['best_val_acc']:.2f} @ {r['best_epoch']})"
        status = "" if r["status"] == "completed" else f" ({r['status']})"
        lines.append(f"| {r['label']}{status} | {r['batch_size']} | {_percent(r['test_acc'])}{tta} | {val} "
                     f"| {r['train_acc']:.2f} / {_percent(r['train_eval_acc'])} | {r['seconds_per_epoch']:.1f} "
                     f"| {r['first_epoch_seconds']:.1f} "
                     f"| {r['params']:,} |")
    return "\n".join(lines)


def report(rows: list[dict], args: argparse.Namespace, info: dict, source: str, wall: float) -> None:
    command = "python bench/recipes_cpu.py " + " ".join(sys.argv[1:])
    print(f"\n{args.epochs} epochs each on {source}; {info['backend']}, {info['cpu']} ({info['cores']} cores); "
          f"{info['date']}; {wall / 60:.1f} min in all\n")
    print(table(rows))
    print("\nval acc: the final model on the held-out training images (best epoch's in brackets, before any EMA);"
          " '-': the study's recipe has no validation split (it watches the test set). train acc: Keras' running "
          "figure in the last epoch / the final model in inference mode on 2,000 fixed training images.")
    if args.json:
        summary = {**info, "command": command, "data": source, "epochs": args.epochs, "subset": args.subset,
                   "seed": args.seed, "wall_seconds": wall, "rows": rows}
        write_atomic(args.json, json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
