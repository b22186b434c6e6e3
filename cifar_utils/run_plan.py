"""What one ``./run_all.sh`` invocation trains: every distinct run its chapters need, as
pool tasks, and what they cost on a CPU (said before anything trains).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .course import needed_runs, run_settings
from .profiles import PROFILES
from .run_args import notebook_parameters
from .runs.pool import RunTask, gpu_ids
from .runs.settings import RunSettings


def training_tasks(args: argparse.Namespace, notebooks: list[Path]) -> list[RunTask]:
    """Every distinct run the chosen chapters need (a run two chapters share, once)."""
    tasks: dict[str, RunTask] = {}
    settings = RunSettings.from_speed(args.speed, args.epochs, args.batch_size, args.eval_every)
    for notebook in notebooks:
        for run in needed_runs(notebook.stem, notebook_parameters(args, notebook)):
            exp = run.experiment
            variant = variant_changes(exp) if exp.variant else {}
            own = run_settings(exp, settings, run.keep_batch_size,
                               every_recipe=PROFILES.get(args.profile, {}).get("every_recipe", False))
            task = RunTask(exp.number, run.seed, str(args.out / "runs"), args.data, args.subset, own, variant,
                           exp.variant or None, args.speed, args.log_every, args.force)
            tasks.setdefault(f"{exp.key}-{run.seed}", task)
    return list(tasks.values())


def variant_changes(exp) -> dict:
    """The recipe and spec fields a variant changes from its registry entry."""
    from dataclasses import asdict

    from .experiments import get_experiment

    base = get_experiment(exp.number)
    changes = {k: v for k, v in asdict(exp.recipe).items() if asdict(base.recipe)[k] != v}
    changes.update({k: v for k, v in asdict(exp.spec).items() if asdict(base.spec)[k] != v})
    return changes


def cost_warning(args: argparse.Namespace, tasks: list[RunTask]) -> str | None:
    """On a machine without an accelerator, say up front what a long run costs (the cost
    table, ``costs.py``; workers on the same cores share them, so their number does not
    shorten it much: docs/benchmarks.md)."""
    from .costs import MEASURED_ON, cpu_run_seconds

    if gpu_ids() or not tasks:
        return None
    hours = sum(cpu_run_seconds(t) for t in tasks) / 3600
    if hours < 0.25:
        return None
    experiments = len({(t.experiment, t.variant_label) for t in tasks})
    return (f"No GPU found: {len(tasks)} runs of {experiments} experiments"
            f"{f' x {args.epochs} epochs' if args.epochs else ' at their recipes’ epochs (the study’s 300)'} "
            f"will take about {_hours(hours)} on a CPU like the one the cost table was measured on "
            f"({MEASURED_ON}; CPUs differ by up to 5x). "
            "To run less: --quick, --only 01, --epochs 20, --subset 5000, or use a GPU.")


def _hours(hours: float) -> str:
    return f"{hours:.0f} hours" if hours >= 1.5 else f"{60 * hours:.0f} minutes"
