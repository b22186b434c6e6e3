"""The summary chapter: every run record read back, tabulated, plotted and judged. No training.

It combines only runs made the same way: the runs a chapter with the same settings would
show (same data, epochs, batch size, recipe and evaluation; seeds being the only thing
that varies), found by the very lookup the chapters use, or a reference folder checked to
hold one setting per experiment. Everything else under the output folder is counted and
left out, and the overview says so.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from . import experiments  # its EXPERIMENTS read when used: a line added to the registry is found
from .beyond import FACTORIAL, factorial_experiment, small_label
from .chapter import BEST_EPOCH_NOTE, evaluation_phrase, show
from .claims import TOO_SHORT, Effect, OnlyTogether, judge_all
from .colab import output_folder
from .course import chapter6_settings, run_settings, runs_setting, with_profile
from .data import CLASS_NAMES, load_cifar10
from .experiments import STUDY_EXPERIMENTS, get_experiment
from .folders import shown_path
from .noise import settings_problem
from .parameters import check_parameters
from .plots import (
    per_class_accuracy,
    plot_accuracy_vs_time,
    plot_confident_mistakes,
    plot_confusion,
    plot_study_comparison,
    plot_test_accuracy_curves,
    save_figure,
)
from .results import display_table, results_table
from .runs.identity import find_finished
from .runs.predictions import load_predictions
from .runs.record import RunRecord, scan_records
from .runs.reference import load_reference
from .runs.settings import RunSettings
from .speed import Speed
from .storage import write_atomic

SUMMARY_MARKER = "summary.json"


class Summary:
    def __init__(self, out_dir: str | os.PathLike = "output", epochs: int | None = None,
                 batch_size: int | None = None, seeds: Sequence[int] = (0,), data_source: str | None = None,
                 subset: int | None = None, eval_every: int = 1, runs: str | os.PathLike = "read",
                 run_token: str | None = None, profile: str | None = None,
                 reference_dir: str | os.PathLike | None = None, speed: Speed | dict | None = None):
        """``runs`` as a chapter's (``course.runs_setting``); the summary trains nothing, so
        "train" reads what the chapters trained, like "read". ``speed``: the chapters' (only
        its bfloat16 ``precision`` names runs, so only it decides which runs are read)."""
        given = check_parameters({"out_dir": out_dir, "epochs": epochs, "batch_size": batch_size, "seeds": seeds,
                                  "data_source": data_source, "subset": subset, "eval_every": eval_every,
                                  "runs": runs, "run_token": run_token, "profile": profile, "speed": speed})
        trains, reference = runs_setting(given["runs"], reference_dir)
        sizes = with_profile(profile, **{k: given[k] for k in ("epochs", "batch_size", "subset", "data_source")})
        epochs, batch_size, subset, data_source = (sizes[k] for k in ("epochs", "batch_size", "subset", "data_source"))
        self.out_dir = Path(output_folder(out_dir))
        self.figures_dir = self.out_dir / "figures"
        self.run_token, self.figures = run_token, []
        self.epochs, self.batch_size, self.seeds, self.eval_every = epochs, batch_size, given["seeds"], eval_every
        # what names the chapters' runs this reads; each experiment's are ``course.run_settings`` of it
        self.settings = RunSettings.from_speed(given["speed"], epochs, batch_size, eval_every)
        self.reference = load_reference(reference) if reference and not trains else None
        small_subset = chapter6_settings(profile, {})["small_subset"]
        self.small = small_label(small_subset)  # the setting chapter 6's factorial is judged at
        if self.reference is not None:
            self.records = list(self.reference.records)
            self.left_out, self.problems, self.sweep_runs = [], [], 0
            self.source = self.reference.describe()
        else:
            data = load_cifar10(data_source, subset=subset)
            self.source = data.source
            wanted = [*experiments.EXPERIMENTS, *(factorial_experiment(n, small_subset) for n in FACTORIAL.values()
                                               if small_subset)]
            self.records = [r for exp in wanted for r in find_finished(
                exp, data, run_settings(exp, self.settings, every_recipe=sizes["every_recipe"]), self.seeds,
                self.out_dir / "runs")]
            everything, self.problems = scan_records(self.out_dir / "runs")
            chosen = {Path(r.run_dir).name for r in self.records}
            self.sweep_runs = sum(1 for r in everything if r.variant)
            self.left_out = [r for r in everything if not r.variant and Path(r.run_dir).name not in chosen]
        self.registry = [r for r in self.records if not r.variant]
        self.table = results_table(self.registry, [e.number for e in experiments.EXPERIMENTS])
        self.judgements: pd.DataFrame | None = None  # filled by verdicts()

    # --- what the numbers are -----------------------------------------------------------

    def overview(self) -> None:
        """Where the numbers come from: data, settings, backend, device, seeds; what was left out."""
        if not self.registry:
            where = self.reference.folder if self.reference else self.out_dir / "runs"
            show(f"**No finished runs with these settings under `{where}`**: run the chapters first "
                 "(or render the reference results: `./run_all.sh --reference results/reference`).")
            self._left_out_note()
            return
        runs = self.table[self.table["seeds"] > 0]
        facts = {
            "runs": f"{len(self.registry)} runs of {len(runs)} of the {len(experiments.EXPERIMENTS)} experiments "
                    f"({len(STUDY_EXPERIMENTS)} from the study)",
            "data": f"{self.source} (data id {self.registry[0].params['data_fingerprint']})",
            "epochs": _grouped(runs["epochs"]),
            "batch size": _grouped(pd.Series({r.experiment: r.params["batch_size"] for r in self.registry})),
            "seeds per experiment": ", ".join(str(s) for s in sorted(runs["seeds"].unique())),
            "evaluation": evaluation_phrase(self.registry[0].params.get("eval_every", 1)),
            "backend": "; ".join(sorted({r.backend for r in self.registry})),
            "device": "; ".join(sorted({r.device for r in self.registry})),
            "speed settings": "; ".join(sorted({Speed.coerce(r.speed).describe() for r in self.registry})),
            "training time": f"{runs['wall_seconds'].sum() / 60:.1f} minutes in all",
        }
        show("\n".join(f"- **{k}**: {v}" for k, v in facts.items()))
        problems = {r.experiment: p for r in self.registry if (p := settings_problem(
            r.params["train_size"], r.params["test_size"], r.epochs_completed, r.params["batch_size"]))}
        if len(problems) == len({r.experiment for r in self.registry}):
            show(f"**A smoke test, not an experiment**: these runs cannot carry a verdict "
                 f"({next(iter(problems.values()))}); every judgement says *too short to judge*.")
        elif problems:
            show("*" + "; ".join(f"Experiment {n} cannot carry a verdict ({p})" for n, p in sorted(problems.items()))
                 + ": judgements that need it say *too short to judge*.*")
        self._left_out_note()

    def _left_out_note(self) -> None:
        notes = []
        if self.left_out:
            notes.append(f"{len(self.left_out)} finished run(s) under `{self.out_dir / 'runs'}` were made with other "
                         "settings (data, epochs, batch size, seeds or evaluation) and are left out: "
                         + ", ".join(sorted({Path(r.run_dir).name for r in self.left_out})[:8])
                         + (" ..." if len(self.left_out) > 8 else ""))
        if self.sweep_runs:
            notes.append(f"{self.sweep_runs} sweep run(s) of chapter 6 are shown there, not here")
        if self.problems:
            notes.append(f"{len(self.problems)} damaged record(s) left out: " + "; ".join(self.problems))
        if notes:
            show("*" + ". ".join(notes) + ".*")

    # --- tables and figures -------------------------------------------------------------

    def show_table(self, study_only: bool = True) -> pd.DataFrame:
        """The study's 17 experiments (or the course's own, with ``study_only=False``)."""
        numbers = [e.number for e in (STUDY_EXPERIMENTS if study_only else experiments.EXPERIMENTS) if
                   (e.study is not None) == study_only]
        shown = display_table(self.table.loc[numbers])
        if not study_only:
            shown = shown.drop(columns=["study test acc", "difference"])
        show(shown)
        if study_only:
            show(BEST_EPOCH_NOTE)
        return shown

    def curves(self) -> None:
        if self.registry:
            self._figure(plot_test_accuracy_curves(self.registry, "Test accuracy per epoch, all experiments"),
                         "test_curves")

    def comparison(self) -> None:
        study = self.table[(self.table["seeds"] > 0) & self.table["study_test_acc"].notna()]
        if not study.empty:
            self._figure(plot_study_comparison(study), "comparison")

    def _setting_of(self, judgement) -> str:
        """'runs at train_images=10000: ' before a factorial verdict judged at the small setting."""
        factorial = isinstance(judgement.claim.test, Effect | OnlyTogether)
        return f"runs at {self.small}: " if factorial and self.small else ""

    def verdicts(self) -> pd.DataFrame:
        """Each conclusion (the study's, then chapter 6's), our evidence, and a verdict."""
        judgements = judge_all(self.records, factorial_variant=self.small)
        frame = pd.DataFrame({"conclusion": [j.claim.text for j in judgements],
                              "from": [j.claim.source for j in judgements],
                              "verdict": [j.verdict for j in judgements],
                              "our evidence": [self._setting_of(j) + j.evidence for j in judgements]})
        show(frame.style.hide(axis="index").map(_verdict_style, subset=["verdict"])
             .set_properties(**{"text-align": "left"}))
        counts = frame["verdict"].value_counts()
        show("Verdicts: " + ", ".join(f"{n} {verdict}" for verdict, n in counts.items()) + ".")
        self.judgements = frame
        return frame

    def timing(self) -> None:
        """Measured training time against the study's (its blind spot), and accuracy vs time."""
        runs = self.table[self.table["seeds"] > 0]
        if runs.empty:
            return
        study = runs[runs["study_seconds_per_epoch"].notna()]
        per_run = runs["wall_seconds"] / runs["seeds"]
        fastest, slowest = per_run.idxmin(), per_run.idxmax()
        show(f"One run of each of the {len(runs)} experiments took **{per_run.sum() / 60:.1f} minutes** here "
             f"(from {per_run[fastest]:.0f} s for experiment {fastest} to {per_run[slowest]:.0f} s for experiment "
             f"{slowest}). The study's Colab GPU needed {(study['study_seconds_per_epoch'] * 300).sum() / 60:.0f} "
             f"minutes for one 300-epoch run of each of its {len(study)} experiments shown here.")
        self._figure(plot_accuracy_vs_time(runs), "accuracy_vs_time")

    def best_model_errors(self) -> None:
        """Confusion matrix, per-class accuracy and the most confident mistakes of the best experiment."""
        ranked = self.table[self.table["seeds"] > 0].sort_values("test_acc_mean", ascending=False)
        for number in ranked.index:
            run = next(r for r in self.registry if r.experiment == number)
            folder = (self.reference.folder / run.run_dir) if self.reference else None
            stored = load_predictions(run, folder)
            if stored is None:
                continue
            exp = get_experiment(number)
            predicted = stored["probabilities"].astype("float32").argmax(axis=1)
            truth = stored["labels"].astype(int)
            title = f"Experiment {exp.label}, seed {run.seed}"
            accuracy = per_class_accuracy(truth, predicted)
            show(f"The best experiment here is **{exp.label}** ({ranked.loc[number, 'test_acc_mean']:.2f} % "
                 f"mean test accuracy). Seed {run.seed}: its easiest class is **{accuracy.idxmax()}** "
                 f"({accuracy.max():.1f} %), its hardest **{accuracy.idxmin()}** ({accuracy.min():.1f} %).")
            self._figure(plot_confusion(truth, predicted, CLASS_NAMES, title=title), "confusion")
            indices = stored["mistake_indices"]
            if len(indices):
                probabilities = stored["probabilities"][indices].astype("float32")
                self._figure(plot_confident_mistakes(stored["mistake_images"], truth[indices], probabilities,
                                                     count=min(12, len(indices))), "mistakes")
            return
        show("*No run kept its test predictions (runs made before this version): no confusion matrix.*")

    def record_results(self) -> Path:
        """``results/results.csv`` (one row per experiment), ``verdicts.csv``, and the summary's
        marker ``summary.json`` (written last: the sign it finished)."""
        results_dir = self.out_dir / "results"
        results_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(results_dir / "results.csv", self.table.to_csv())
        if self.judgements is not None:
            write_atomic(results_dir / "verdicts.csv", self.judgements.to_csv(index=False))
        runs_in = self.reference.folder / "runs" if self.reference else self.out_dir / "runs"
        marker = {"run_token": self.run_token, "figures": sorted(set(self.figures)), "runs_in": str(runs_in),
                  "runs": {Path(r.run_dir).name: r.digest() for r in self.registry},
                  "left_out": len(self.left_out), "data": self.source}
        write_atomic(results_dir / SUMMARY_MARKER, json.dumps(marker, indent=1))
        show(f"Wrote `{shown_path(results_dir / 'results.csv')}` ({len(self.table)} experiments, "
             f"{int((self.table['seeds'] > 0).sum())} with runs).")
        return results_dir / "results.csv"

    def _figure(self, fig, kind: str) -> None:
        path = save_figure(fig, self.figures_dir, "05", "all", kind)
        self.figures.append(path.name)
        show(fig)
        plt.close(fig)


def _grouped(column: pd.Series) -> str:
    """'300 (experiments 1-19), 30 (20)': a value and the experiments that have it."""
    groups: dict[str, list[int]] = {}
    for number, value in column.dropna().items():
        groups.setdefault(f"{value:g}" if isinstance(value, float | np.floating) else str(value), []).append(number)
    return ", ".join(f"{value} (experiments {_ranges(numbers)})" for value, numbers in groups.items())


def _ranges(numbers: list[int]) -> str:
    numbers = sorted(numbers)
    parts, start = [], numbers[0]
    for previous, current in zip(numbers, numbers[1:] + [None], strict=True):
        if current != previous + 1 if current is not None else True:
            parts.append(str(start) if start == previous else f"{start}-{previous}")
            start = current
    return ", ".join(parts)


def _verdict_style(verdict: str) -> str:
    colors = {"supported": "#d9f2d9", "contradicted": "#f8d7d7", "not separable from noise": "#fff3cd",
              TOO_SHORT: "#e8e8f4"}
    return f"background-color: {colors.get(verdict, '#eeeeee')}"


__all__ = ["Summary", "RunRecord"]
