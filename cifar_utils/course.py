"""The course as data: its notebooks, their parameters, and the runs each one needs.

``./run_all.sh`` reads this to train every needed run in a pool before the notebooks
start, and the notebooks read the same definitions, so the two never disagree about
which runs a chapter shows. Chapter 6's sweeps are defined in ``beyond``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .beyond import chapter6_runs
from .experiments import Experiment, chapter_experiments, get_experiment

SUMMARY = "05_summary"
# What a chapter notebook's parameters mean (README and --help repeat it).
CHAPTER_PARAMETERS = ("epochs", "batch_size", "seeds", "data_source", "subset", "out_dir", "experiments",
                      "log_every", "eval_every", "speed", "train", "reference_dir", "run_token", "exercises")
# Chapter 6's own parameters; defaults as in its notebook (the full profile).
CHAPTER6_DEFAULTS = {"factorial_seeds": [0, 1, 2], "modern_seeds": [0, 1, 2], "fast_seeds": [0, 1, 2, 3, 4],
                     "grid_epochs": 30, "learning_rates": [3e-4, 1e-3, 3e-3], "batch_sizes": [128, 512, 2048],
                     "dropout_rates": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]}
# What --quick uses instead: every idea shows, each run is a smoke test.
# (One seed per factorial cell: the effects show, their standard errors need the full profile.)
CHAPTER6_QUICK = {"factorial_seeds": [0], "modern_seeds": [0], "fast_seeds": [0], "grid_epochs": 2,
                  "learning_rates": [1e-3, 3e-3], "batch_sizes": [128, 512], "dropout_rates": [0.0, 0.5]}


@dataclass(frozen=True)
class NeededRun:
    """One run a chapter shows; ``batch_size`` None means the run's own recipe decides."""

    experiment: Experiment
    seed: int
    keep_batch_size: bool = False  # a sweep point whose batch size is the thing varied


def chapter_number(stem: str) -> int:
    return int(stem[:2])


def needed_runs(stem: str, parameters: dict) -> list[NeededRun]:
    """Every run the notebook ``stem`` shows with these parameters (the summary trains nothing)."""
    if stem == SUMMARY:
        return []
    number = chapter_number(stem)
    seeds = list(parameters.get("seeds") or [0])
    if number == 6:
        settings = {**CHAPTER6_DEFAULTS, **{k: v for k, v in parameters.items() if k in CHAPTER6_DEFAULTS}}
        return [NeededRun(exp, seed, keep) for exp, seed, keep in chapter6_runs(seeds=seeds, **settings)]
    chosen = parameters.get("experiments")
    experiments = chapter_experiments(number) if chosen is None else [get_experiment(n) for n in chosen]
    return [NeededRun(exp, seed) for exp in experiments for seed in seeds]


def all_seeds(parameters: dict) -> list[int]:
    """Every seed any chapter uses with these parameters: what the summary looks for."""
    found = set(parameters.get("seeds") or [0])
    for key in ("factorial_seeds", "modern_seeds", "fast_seeds"):
        found |= set(parameters.get(key) or CHAPTER6_DEFAULTS[key])
    return sorted(found)
