"""What a chapter notebook calls: settings once, then a few lines per slide.

The sentences that judge a result are computed here from the runs (``compare``,
``judge``), so a notebook's prose stays true when the numbers change. The code a reader
sees is generated from the model that trains (``model_code``), so the two never drift.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from . import backend
from .claims import CONTRADICTED, SUPPORTED, TOO_SHORT, Difference, Judgement, evaluate, get_claim, judge
from .colab import output_folder
from .costs import MEASURED_ON, cpu_seconds, duration
from .course import chapter6_settings, run_settings, runs_setting, with_profile
from .custom import custom_experiment, is_custom
from .data import CifarData, load_cifar10
from .experiments import CHAPTERS, Experiment, Recipe, chapter_experiments, distinct_variants, get_experiment
from .folders import shown_path
from .model_code import architecture, code_changes, model_code
from .models import build_model
from .noise import settings_problem
from .parameters import check_parameters, check_seeds
from .plots import plot_history, plot_study_comparison, save_figure
from .recipe_code import recipe_code
from .recipes import steps_per_epoch
from .results import display_table, results_table
from .runs.identity import effective_recipe, find_finished
from .runs.record import RunRecord
from .runs.reference import ReferenceRuns, load_reference
from .runs.settings import RunSettings
from .runs.splits import class_sizes, splits_problem, validation_split
from .runs.train import run_experiment
from .speed import Speed
from .storage import write_atomic

BEST_EPOCH_NOTE = ("*The study reported each model's final epoch. A \"best epoch\" is chosen by looking at the "
                   "test set, which makes it an optimistic number; the verdicts use the final epoch.*")


def evaluation_phrase(every: int) -> str:
    """How often the test set is evaluated, as chapters and the report say it."""
    return "test set evaluated every epoch" if every == 1 else f"test set evaluated every {every} epochs"


def show(obj) -> None:
    """Display in a notebook (Markdown for strings), print elsewhere."""
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:  # plain Python: no IPython installed
        print(obj)
        return
    if get_ipython() is None:
        print(obj)
    else:
        display(Markdown(obj) if isinstance(obj, str) else obj)


def describe_environment(trains: bool = True) -> str:
    """The GPU check a chapter starts with: what backend and device this run will use (and,
    for a chapter that trains on a CPU, how to train less)."""
    found = backend.accelerators()
    where = f"**{backend.device_description()}**" if found else "**no GPU** (CPU only)"
    advice = "" if found or not trains else (" Full-length runs (300 epochs) take hours per experiment on a CPU: "
                               "use the bundled sample and few epochs (`./run_all.sh --quick`), "
                               "read the reference results (`runs = \"reference\"`), "
                               "or a GPU runtime in Colab (Runtime → Change runtime type).")
    return f"Keras {backend.versions()['keras']} on the **{backend.backend_name()}** backend, {where}.{advice}"


def results_marker(number: int) -> str:
    """The file a chapter writes last: its presence (with this run's token) means it finished."""
    return f"chapter_{number:02d}.json"


def as_experiment(model: int | Experiment | keras.Model | Callable[[], keras.Model]) -> Experiment:
    """What ``try_out`` trains: a registry experiment or variant as it is, a reader's
    ``keras.Sequential`` (or a function returning one) as a ``custom`` experiment."""
    if isinstance(model, keras.Model) or (callable(model) and not isinstance(model, Experiment)):
        return custom_experiment(model)
    return get_experiment(model)


def exercise_label(exp: Experiment) -> str:
    """How an exercise's table and legend name a model: a reader's by its name and digest."""
    return f"{exp.name} [{exp.variant}]" if is_custom(exp) else exp.label


class Chapter:
    """One chapter's settings (the notebook's parameters), its runs and its slides."""

    def __init__(self, number: int, experiments: Sequence[int] | None = None, epochs: int | None = None,
                 batch_size: int | None = None, seeds: Sequence[int] = (0,), data_source: str | None = None,
                 subset: int | None = None, out_dir: str | os.PathLike = "output",
                 log_every: int | None = None, eval_every: int = 1, speed: dict | Speed | None = None,
                 runs: str | os.PathLike = "train", run_token: str | None = None, exercises: bool = True,
                 profile: str | None = None, reference_dir: str | os.PathLike | None = None):
        """``runs``: "train", "reference", "read" or a reference folder (``course.runs_setting``);
        ``reference_dir`` (not a notebook parameter): the reference to use instead of the course's."""
        given = check_parameters({
            "experiments": experiments, "epochs": epochs, "batch_size": batch_size, "seeds": seeds,
            "data_source": data_source, "subset": subset, "out_dir": out_dir, "log_every": log_every,
            "eval_every": eval_every, "speed": speed, "runs": runs, "run_token": run_token, "exercises": exercises,
            "profile": profile})
        train, reference = runs_setting(given["runs"], reference_dir)
        if number not in CHAPTERS:
            raise ValueError(f"chapter {number!r}: no such chapter; chapters: {', '.join(map(str, CHAPTERS))}")
        self.number, self.title = number, CHAPTERS[number]
        own = [e.number for e in chapter_experiments(number)]
        self.experiments = own if given["experiments"] is None else given["experiments"]
        sizes = with_profile(profile, **{k: given[k] for k in ("epochs", "batch_size", "subset", "data_source")})
        self.profile, self.every_recipe = profile, sizes["every_recipe"]
        self.epochs, self.batch_size, self.seeds = sizes["epochs"], sizes["batch_size"], given["seeds"]
        self.data_source, self.subset, self.log_every = sizes["data_source"], sizes["subset"], given["log_every"]
        self.eval_every, self.speed, self.train = given["eval_every"], given["speed"], train
        # what names this chapter's runs; each experiment's are ``course.run_settings`` of it
        self.settings = RunSettings.from_speed(self.speed, self.epochs, self.batch_size, self.eval_every)
        self.run_token, self.exercises = run_token, exercises
        self.out_dir = Path(output_folder(out_dir))
        self.runs_dir, self.figures_dir = self.out_dir / "runs", self.out_dir / "figures"
        self.reference: ReferenceRuns | None = load_reference(reference) if reference else None
        self.records: dict[int, list[RunRecord]] = {}
        self.ran: set[int] = set()  # experiments a cell asked ``run`` for (shown, skipped or not found)
        self.shown: dict[str, str] = {}  # every run this chapter showed: folder name -> record digest
        self.figures: list[str] = []
        self._data: CifarData | None = None
        self._spread_runs: list[RunRecord] | None = None

    @property
    def data(self) -> CifarData:
        """Loaded once, normalised; ``run_experiment`` rescales for experiment 1."""
        if self._data is None:
            self._data = load_cifar10(self.data_source, subset=self.subset)
        return self._data

    @property
    def from_reference(self) -> bool:
        """Numbers come from the reference folder (nothing is trained or looked up here)."""
        return self.reference is not None and not self.train

    def setup(self) -> None:
        show(describe_environment(trains=not self.from_reference))
        if self.from_reference:
            show(self.reference.describe() + " Nothing is trained in this chapter: it reads those runs. To train "
                 "runs yourself, set `runs = \"train\"` in the parameters cell.")
            return
        (x_train, y_train), (x_test, _) = self.data
        self._check_splits(y_train)
        epochs = self.epochs or "the study's 300"
        batch = self.batch_size or "the study's 512"
        show(f"Data: {self.data.source}: {len(x_train):,} training and {len(x_test):,} test images. "
             f"Runs of the study's recipe: epochs {epochs}, batch {batch}; recipes of the course's own keep "
             f"theirs. Seeds {self.seeds}, {evaluation_phrase(self.eval_every)}; "
             f"speed settings: {self.speed.describe()}. "
             f"Experiments in this run: {', '.join(map(str, self.experiments))}."
             + ("" if self.train else " Runs are read, not trained (`runs = \"read\"`: `./run_all.sh` trained "
                                      "them first)."))
        problem = settings_problem(len(x_train), len(x_test), self.epochs or 300, self.batch_size or 512)
        if problem:
            show(f"**A smoke test, not an experiment**: these settings cannot carry a verdict ({problem}), so "
                 "every judgement below says *too short to judge*. For real effects use `profile = \"laptop\"` "
                 "(about 30 minutes on a CPU) or the reference results (`runs = \"reference\"`).")
        if self.reference is not None:
            show(self.reference.describe() + " Its numbers are shown next to this run's.")

    def _check_splits(self, labels) -> None:
        """Refuse, before anything trains, a validation split these training images cannot
        make (chapter 6's sweeps hold out ``beyond.SWEEP_VALIDATION``)."""
        from .beyond import SWEEP_BASE, SWEEP_VALIDATION

        experiments = [get_experiment(n) for n in self.experiments]
        if self.number == 6:
            experiments.append(get_experiment(SWEEP_BASE).vary("the sweeps", validation=SWEEP_VALIDATION))
        problem = splits_problem(experiments, class_sizes(labels))
        if problem:
            raise ValueError(f"{problem} (the `subset` parameter)")

    # --- the model code ----------------------------------------------------------------

    def show_model(self, number: int, changes_from: int | None = None, listing: bool = True) -> None:
        """The experiment's name, one-line diagram, parameter count, recipe, and its Keras
        code: the whole listing, or only what changed from experiment ``changes_from``
        (``listing=False``: no code, when the notebook shows it in a cell of its own)."""
        exp = get_experiment(number)
        model = build_model(exp)
        study = f" (study: {exp.study.params:,})" if exp.study else ""
        recipe = exp.recipe.changes()
        trained = ("the study's recipe: Adam(1e-3), batch 512, 300 epochs" if not recipe else
                   "the study's recipe except " + ", ".join(f"{k}={v}" for k, v in recipe.items()))
        show(f"**{exp.label}**: {exp.description}.  \n`{architecture(exp)}`  \n"
             f"{model.count_params():,} parameters{study}; trained with {trained}.")
        if not listing:
            return
        if changes_from is None:
            show(f"```python\n{model_code(exp)}\n```")
        else:
            show(f"What changes from experiment {changes_from}:\n\n```diff\n{code_changes(changes_from, exp)}\n```")

    def trained_recipe(self, number: int) -> tuple[Recipe, int, int]:
        """The experiment's recipe as this chapter trains it (its epochs and batch size at
        these settings), its steps per epoch and its training images (after a validation split)."""
        exp = get_experiment(number)
        settings = run_settings(exp, self.settings, every_recipe=self.every_recipe)
        recipe = effective_recipe(exp, settings.epochs, settings.batch_size)
        labels = self.data[0][1]
        images = len(validation_split(labels, recipe.validation)[0]) if recipe.validation else len(labels)
        images = min(images, recipe.train_images or images)
        return recipe, steps_per_epoch(images, recipe.batch_size), images

    def show_recipe(self, number: int) -> None:
        """The Keras code of the experiment's recipe as this chapter trains it (its steps per
        epoch and epochs at these settings): generated from the recipe, tested to build the
        optimizer and loss that train (tests/test_recipe_code.py)."""
        recipe, steps, images = self.trained_recipe(number)
        per_epoch = f"{steps} step{'s' if steps != 1 else ''} an epoch"
        show(f"How experiment {number} is trained here ({images:,} training images, {per_epoch}):\n\n"
             f"```python\n{recipe_code(recipe, steps)}\n```")

    # --- runs ----------------------------------------------------------------------------

    def records_of(self, experiment: int | Experiment, seeds: Sequence[int] | None = None,
                   keep_batch_size: bool = False) -> list[RunRecord]:
        """The runs of one experiment (or sweep variant): trained or reused when ``train``,
        else the finished ones, or the reference's. ``keep_batch_size``: a sweep point
        whose batch size is what it varies ignores the chapter's batch size."""
        exp = get_experiment(experiment)
        seeds = self.seeds if seeds is None else check_seeds("seeds", seeds)
        settings = run_settings(exp, self.settings, keep_batch_size, self.every_recipe)
        if self.from_reference:
            found = [r for r in self.reference.of(exp.number, exp.variant) if r.seed in seeds]
        elif self.train:
            self._say_cost(exp, settings, seeds)
            found = run_experiment(exp, epochs=settings.epochs, batch_size=settings.batch_size, data=self.data,
                                   out_dir=self.runs_dir, seeds=seeds, log_every=self.log_every,
                                   eval_every=settings.eval_every, speed=self.speed)
        else:
            found = find_finished(exp, self.data, settings, seeds, self.runs_dir)
        self.shown.update({Path(r.run_dir).name: r.digest() for r in found})
        return found

    def run(self, experiment: int | Experiment, seeds: Sequence[int] | None = None) -> list[RunRecord]:
        """Train (or reuse, or read) one experiment (or its variant: chapter 6's small
        setting) over all seeds (or ``seeds``); show its curves and numbers."""
        exp = get_experiment(experiment)
        number = exp.number
        self.ran.add(number)
        if number not in self.experiments:
            show(f"*Experiment {number} is not in this run's `experiments` parameter: skipped.*")
            return []
        records = self.records_of(exp, seeds)
        self.records[number] = records
        if not records:
            show(f"*Experiment {number}: no finished run with these settings (not run, or its training failed: "
                 "see the log).*")
            return []
        fig = plot_history(records)
        self.figure(fig, "history", experiment=number)
        shown = display_table(results_table(records, [number], exp.variant))
        if self.reference is not None and not self.from_reference:
            reference = self.reference.of(number, exp.variant)
            if reference:
                ours = shown.rename(index=lambda name: f"{name} (this run)")
                theirs = display_table(results_table(reference, [number], exp.variant)).rename(
                    index=lambda name: f"{name} (reference)")
                shown = pd.concat([ours, theirs])
        show(shown)
        return records

    def _say_cost(self, exp: Experiment, settings: RunSettings, seeds: list[int]) -> None:
        """Before a cell trains: how many runs it will train and what they cost on a CPU."""
        finished = {r.seed for r in find_finished(exp, self.data, settings, seeds, self.runs_dir)}
        epochs = settings.epochs
        todo = [s for s in seeds if s not in finished]
        if not todo:
            return
        images = min(len(self.data[0][0]), exp.recipe.train_images or len(self.data[0][0]))
        seconds = len(todo) * cpu_seconds(exp, epochs, images)
        where = "a GPU is many times faster" if backend.accelerators() else "this machine's CPU may differ by up to 5x"
        show(f"*Training {exp.label}, {len(todo)} run{'s' if len(todo) > 1 else ''} "
             f"({epochs or exp.recipe.epochs} epochs on {images:,} images): {duration(seconds)} "
             f"on 2 CPU cores by the cost table ({MEASURED_ON}); {where}. An interrupted run resumes.*")

    def reuse(self, number: int, seeds: Sequence[int] | None = None) -> list[RunRecord]:
        """Finished runs of another chapter's experiment with these settings, or the
        reference's; never trains (a missing run is named, with how to make it). They join
        this chapter's records for its verdicts (runs it already holds stay as they are)."""
        if self.records.get(number):
            return self.records[number]
        exp = get_experiment(number)
        seeds = self.seeds if seeds is None else check_seeds("seeds", seeds)
        if self.from_reference:
            found = [r for r in self.reference.of(exp.number, exp.variant) if r.seed in seeds]
        else:
            settings = run_settings(exp, self.settings, every_recipe=self.every_recipe)
            found = find_finished(exp, self.data, settings, seeds, self.runs_dir)
        self.shown.update({Path(r.run_dir).name: r.digest() for r in found})
        if found:
            self.records[number] = found
        elif self.from_reference:
            show(f"*The reference `{shown_path(self.reference.folder)}` holds no run of experiment {number} yet "
                 "(it is trained in pieces: the banner says which chapters are in); this cell trains nothing.*")
        else:
            show(f"*Experiment {number} has no finished run with these settings in `{shown_path(self.runs_dir)}`: it "
                 f"is trained in chapter {exp.chapter} (or `./run_all.sh --only {exp.chapter:02d}`); this cell trains "
                 "nothing.*")
        return found

    def try_out(self, experiments: Sequence[int | Experiment | keras.Model | Callable[[], keras.Model]],
                epochs: int | None = None, subset: int = 2000, batch_size: int | None = 128,
                seeds: Sequence[int] = (0,)) -> list[RunRecord]:
        """An exercise's short experiment: each model trained ``epochs`` epochs (3, or fewer
        when the chapter's runs are shorter) on a stratified ``subset`` of the training
        images for each of ``seeds``, into ``exercises/`` (never mixed with the chapter's
        runs), then its curves on one axis and its numbers. A model is a registry experiment,
        a variant (``vary``) or a ``keras.Sequential`` written in the notebook, or a function
        returning one (``custom``: the study's recipe, fresh weights, a run of its own per
        config). ``batch_size`` None: each recipe's own."""
        epochs = epochs or min(3, self.epochs or 3)
        chosen = distinct_variants(as_experiment(e) for e in experiments)  # refused before anything else
        from .plots import plot_run_groups

        if not self.exercise_allowed("a minute or two on a CPU"):
            return []
        data = load_cifar10(self.data_source, subset=min(subset, len(self.data[0][0])))
        seeds = list(dict.fromkeys(seeds))
        self._say_exercise_cost(chosen, epochs, batch_size, data, seeds)
        groups = {exercise_label(exp): run_experiment(exp, epochs=epochs, batch_size=batch_size, data=data,
                                                      out_dir=self.out_dir / "exercises", log_every=epochs,
                                                      seeds=seeds) for exp in chosen}
        show(pd.DataFrame({"test acc (%)": [f"{np.mean([r.test_acc for r in runs]):.2f}" for runs in groups.values()],
                           "train acc (%)": [f"{np.mean([r.train_acc for r in runs]):.2f}" for runs in groups.values()],
                           "seeds": [len(runs) for runs in groups.values()],
                           "parameters": [f"{runs[0].param_count:,}" for runs in groups.values()]},
                          index=list(groups)))
        fig = plot_run_groups(groups, title=f"{epochs} epochs on {len(data[0][0]):,} training images")
        show(fig)
        plt.close(fig)
        return [record for runs in groups.values() for record in runs]

    def exercise_allowed(self, cost: str) -> bool:
        """May an exercise's starter train here? If not, say why and how to let it (``cost``:
        what it takes, e.g. "about 10 seconds on a CPU")."""
        if self.from_reference:
            show("*Not run here: this chapter shows the reference results and trains nothing. To try it, set "
                 "`runs = \"train\"` in the parameters cell, run that cell and the chapter's set-up cell again, "
                 f"then this one ({cost}).*")
        elif not self.exercises:
            show("*Not run here: `exercises = False`, as `./run_all.sh --quick` sets to stay short. To try it, set "
                 f"`exercises = True` in the parameters cell, run that cell and the chapter's set-up cell again, "
                 f"then this one ({cost}).*")
        return not self.from_reference and self.exercises

    def _say_exercise_cost(self, experiments: list[Experiment], epochs: int, batch_size: int | None, data,
                           seeds: list[int]) -> None:
        """Before an exercise trains: its runs and their cost by the cost table (a model of
        the reader's own is not in it)."""
        out = self.out_dir / "exercises"
        settings = RunSettings(epochs, batch_size)  # an exercise's runs: evaluated each epoch, float32
        todo = [(exp, len(seeds) - len(find_finished(exp, data, settings, seeds, out)))
                for exp in experiments]
        todo = [(exp, runs) for exp, runs in todo if runs]
        if not todo:
            return
        images = len(data[0][0])
        priced = [(exp, runs) for exp, runs in todo if not is_custom(exp)]
        own = sum(runs for exp, runs in todo if is_custom(exp))
        parts = [f"{duration(sum(runs * cpu_seconds(exp, epochs, images) for exp, runs in priced))} on 2 CPU cores "
                 f"by the cost table ({MEASURED_ON})"] if priced else []
        if own:
            runs = f"{own} run{'s' if own > 1 else ''}"
            parts.append(("and " if parts else "") + f"{runs} of a model of your own, which the cost table does not "
                         "hold (its progress line gives its seconds per epoch)")
        total = sum(runs for _, runs in todo)
        show(f"*Training {total} exercise run{'s' if total > 1 else ''} ({epochs} epochs on {images:,} images): "
             f"{' '.join(parts)}.*")

    def all_records(self) -> list[RunRecord]:
        return [r for runs in self.records.values() for r in runs]

    def spread_runs(self) -> list[RunRecord]:
        """Finished runs of chapter 6's factorial at these settings, read (never trained)
        once: their seed spread stands in for a side with one seed, so a chapter judges with
        the spread the summary uses (``noise.seed_spread``)."""
        if self._spread_runs is None:
            from .beyond import FACTORIAL

            seeds = sorted({*self.seeds, *chapter6_settings(self.profile, {})["factorial_seeds"]})
            if self.from_reference:
                self._spread_runs = [r for n in FACTORIAL.values() for r in self.reference.of(n) if r.seed in seeds]
            else:
                self._spread_runs = [r for n in FACTORIAL.values() for r in find_finished(
                    n, self.data, run_settings(get_experiment(n), self.settings, every_recipe=self.every_recipe),
                    seeds, self.runs_dir)]
        return self._spread_runs

    # --- verdicts --------------------------------------------------------------------------

    def compare(self, before: int, after: int, metric: str = "test_acc") -> str:
        """One computed sentence: how ``metric`` moved from one experiment to the next."""
        if not (self.records.get(before) and self.records.get(after)):
            sentence = f"*Experiments {before} and {after} were not both run: no comparison.*"
        else:
            verdict, evidence = evaluate(Difference(before, after, metric), self.all_records(), self.spread_runs())
            reading = {SUPPORTED: "a real increase", CONTRADICTED: "a real decrease"}.get(
                verdict, "within run-to-run noise")
            sentence = (f"Experiment {before} → {after}: **{TOO_SHORT}** ({evidence})." if verdict == TOO_SHORT
                        else f"{evidence[0].upper()}{evidence[1:]}: **{reading}**.")
        show(sentence)
        return sentence

    def judge(self, claim_key: str, variant: str = "") -> Judgement:
        """The study's conclusion ``claim_key`` and our verdict on it, from this chapter's runs
        (at one setting: ``variant`` names chapter 6's small setting, ``beyond.small_label``)."""
        judgement = judge(get_claim(claim_key), self.all_records(), self.spread_runs(), variant)
        whose = "Study" if judgement.claim.source == "study" else "Claim"
        where = f" (runs at {variant})" if variant else ""
        show(f"**{whose}:** {judgement.claim.text}.  \n**Our verdict{where}: {judgement.verdict}** — "
             f"{judgement.evidence}.")
        return judgement

    # --- figures and the record ------------------------------------------------------------

    def figure(self, fig, kind: str, experiment: int | str = "all") -> Path:
        """Save a figure under its stable name, show it, close it, and list it for the report."""
        path = save_figure(fig, self.figures_dir, self.number, experiment, kind)
        self.figures.append(path.name)
        show(fig)
        plt.close(fig)
        return path

    def summary(self) -> None:
        """The chapter's table and its bar chart against the study."""
        table = results_table(self.all_records(), self.experiments)
        show(display_table(table))
        show(BEST_EPOCH_NOTE)
        if self.records and any(get_experiment(n).study for n in self.experiments):
            fig = plot_study_comparison(table[table["study_test_acc"].notna()],
                                        title=f"Chapter {self.number}: study vs ours")
            self.figure(fig, "comparison")

    def record_results(self) -> Path:
        """The chapter's numbers as data (``results/chapter_NN.json``), written last: tests
        read it back, and ``./run_all.sh`` takes it (with this run's token) as the sign the
        chapter finished."""
        table = results_table(self.all_records(), self.experiments)
        path = self.out_dir / "results" / results_marker(self.number)
        path.parent.mkdir(parents=True, exist_ok=True)
        source = (self.reference.describe() if self.from_reference else self.data.source)
        payload = {"chapter": self.number, "title": self.title, "epochs": self.epochs,
                   "batch_size": self.batch_size, "seeds": self.seeds, "data": source,
                   "run_token": self.run_token, "figures": sorted(set(self.figures)), "runs": self.shown,
                   "runs_in": str(self.reference.folder / "runs" if self.from_reference else self.runs_dir),
                   "experiments": json.loads(table.reset_index().to_json(orient="records"))}
        write_atomic(path, json.dumps(payload, indent=1))
        show(f"Recorded {len(self.all_records())} runs of {len(self.records)} experiments in `{shown_path(path)}`.")
        return path
