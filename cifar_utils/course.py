"""The course as data: its notebooks, their parameters, and the runs each one needs.

``./run_all.sh`` reads this to train every needed run in a pool before the notebooks
start, and the notebooks read the same definitions, so the two never disagree about
which runs a chapter shows. Chapter 6's sweeps are defined in ``beyond``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from .beyond import chapter6_runs
from .experiments import Experiment, chapter_experiments, get_experiment
from .parameters import READ, REFERENCE, RUNS_MODES, TRAIN, ParameterError, check_parameters, check_path, check_runs
from .profiles import CHAPTER6_PROFILES, profile_settings
from .runs.settings import RunSettings
from .speed import Speed

SUMMARY = "05_summary"
# What a chapter notebook's parameters mean (README and --help repeat it).
CHAPTER_PARAMETERS = ("profile", "epochs", "batch_size", "seeds", "data_source", "subset", "out_dir", "experiments",
                      "log_every", "eval_every", "speed", "runs", "run_token", "exercises")
# Of those, the ones that change how a chapter runs or prints, never its numbers; of
# ``speed``, its ``precision`` does change them, so ``numbers_settings`` keeps it (the same
# split as ``runs.settings.RunSettings``, the settings that name a run).
PRESENTATION_PARAMETERS = ("run_token", "log_every", "speed", "out_dir")
# The course's reference, seen from the notebooks' folder (where a chapter runs, in Colab too).
DEFAULT_REFERENCE = Path("..") / "results" / "reference"


def numbers_settings(parameters: dict) -> dict:
    """The parameters a chapter ran with that decide its numbers: all but the presentation
    ones, with ``speed`` reduced to its precision. Two executions whose numbers settings are
    equal show the same runs, so the report may keep an earlier one."""
    kept = {k: v for k, v in parameters.items() if k not in PRESENTATION_PARAMETERS}
    try:
        kept["precision"] = Speed.coerce(parameters.get("speed")).precision
    except (TypeError, ValueError):  # an old or hand-edited notebook's speed: compare it as given
        kept["precision"] = repr(parameters.get("speed"))
    return kept


def with_profile(profile: str | None, **given) -> dict:
    """``epochs``, ``batch_size``, ``subset`` and ``data_source`` as given, the profile's
    where None, and whether the profile shortens every recipe (``every_recipe``)."""
    sizes = profile_settings(profile)
    names = {"epochs": "epochs", "batch_size": "batch_size", "subset": "subset", "data_source": "data"}
    filled = {key: sizes[names[key]] if value is None else value for key, value in given.items()}
    return {**filled, "every_recipe": sizes["every_recipe"]}


def chapter6_settings(profile: str | None, given: dict) -> dict:
    """Chapter 6's own parameters: what was given (checked, ``parameters``), the profile's
    for the rest (None)."""
    profile_settings(profile)
    given = check_parameters(given)
    defaults = CHAPTER6_PROFILES[profile or "full"]
    return {key: defaults[key] if given.get(key) is None else given[key] for key in defaults}


def run_settings(experiment: Experiment, settings: RunSettings, keep_batch_size: bool = False,
                 every_recipe: bool = False) -> RunSettings:
    """The settings one run of ``experiment`` gets from a chapter's (the summary's, the
    driver's) ``settings``: their epochs and batch size, a profile's or the reader's, apply
    to experiments trained with the study's recipe; a recipe of the course's own keeps its
    length and batch (its schedule and learning rate belong to them) unless
    ``every_recipe`` (the quick profile's smoke test shortens everything), and a sweep point
    whose batch size is the thing varied keeps it. A sweep of the study's recipe (the dropout
    sweep) takes the batch size but keeps its own length. ``eval_every`` and ``precision``
    apply to every run."""
    batch = None if keep_batch_size else settings.batch_size
    if experiment.study_recipe or every_recipe:
        return replace(settings, batch_size=batch)
    return replace(settings, epochs=None, batch_size=batch if experiment.study_sweep else None)


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
    return [] if stem == SUMMARY else chapter_runs(chapter_number(stem), parameters)


def chapter_runs(number: int, parameters: dict) -> list[NeededRun]:
    """Every run chapter ``number`` shows: its registry experiments (or the ``experiments``
    chosen) over ``seeds``; chapter 6's plan is ``beyond.chapter6_runs``."""
    seeds = list(parameters.get("seeds") or [0])
    if number == 6:
        settings = chapter6_settings(parameters.get("profile"), parameters)
        return [NeededRun(exp, seed, keep) for exp, seed, keep in chapter6_runs(seeds=seeds, **settings)]
    chosen = parameters.get("experiments")
    experiments = chapter_experiments(number) if chosen is None else [get_experiment(n) for n in chosen]
    return [NeededRun(exp, seed) for exp in experiments for seed in seeds]


def all_seeds(parameters: dict) -> list[int]:
    """Every seed any chapter uses with these parameters: what the summary looks for (the
    chapters' ``seeds`` and every seed chapter 6 plans)."""
    return sorted(set(parameters.get("seeds") or [0]) | {run.seed for run in chapter_runs(6, parameters)})


def runs_setting(runs: str | os.PathLike, reference_dir: str | os.PathLike | None = None,
                 ) -> tuple[bool, Path | None]:
    """(trains, reference folder) for a chapter's ``runs`` parameter, the one choice a
    reader makes: "reference" shows the course's reference runs (or ``reference_dir``'s)
    and trains nothing; "train" trains what is missing in the chapter's folder, shown
    beside the reference when there is one; "read" reads finished runs only (what
    ``./run_all.sh`` sets once its pool trained them); a path is a reference folder."""
    runs, given = check_runs("runs", runs), check_path("reference_dir", reference_dir)
    if runs not in RUNS_MODES:
        return False, Path(runs)
    given = Path(given) if given else None
    found = given or (DEFAULT_REFERENCE if DEFAULT_REFERENCE.is_dir() else None)
    if runs == REFERENCE and found is None:
        raise ParameterError("runs", runs, f"no reference folder at {DEFAULT_REFERENCE} (seen from {Path.cwd()}): "
                             "open the chapter from the course's notebooks/ folder, give a reference folder's "
                             'path, or set runs = "train" to train the runs here')
    return {REFERENCE: (False, found), TRAIN: (True, found), READ: (False, None)}[runs]
