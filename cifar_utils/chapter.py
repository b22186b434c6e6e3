"""What a chapter notebook calls: settings once, then one line per slide.

The sentences that judge a result are computed here from the runs (``compare``,
``judge``), so a notebook's prose stays true when the numbers change.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt

from . import backend
from .claims import CONTRADICTED, SUPPORTED, Difference, Judgement, evaluate, get_claim, judge
from .data import CifarData, load_cifar10
from .experiments import CHAPTERS, chapter_experiments, get_experiment
from .models import build_model
from .plots import plot_history, plot_study_comparison, save_figure
from .results import display_table, results_table
from .speed import Speed
from .training import RunRecord, evaluation_phrase, find_finished, run_experiment, write_atomic


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


def describe_environment() -> str:
    """The GPU check a chapter starts with: what backend and device this run will use."""
    found = backend.accelerators()
    where = f"**{backend.device_description()}**" if found else "**no GPU** (CPU only)"
    advice = "" if found else (" Full-length runs (300 epochs) take hours per experiment on a CPU: "
                               "use the bundled sample and few epochs (`./run_all.sh --quick`), "
                               "or a GPU runtime in Colab (Runtime → Change runtime type).")
    return f"Keras {backend.versions()['keras']} on the **{backend.backend_name()}** backend, {where}.{advice}"


def architecture(model) -> str:
    """A compact one-line diagram of a model, e.g. ``Conv32 → Pool → ... → Dense10``."""
    names = {"Conv2D": lambda layer: f"Conv{layer.filters}", "Dense": lambda layer: f"Dense{layer.units}",
             "MaxPooling2D": lambda layer: "Pool", "Dropout": lambda layer: f"Drop{layer.rate:g}",
             "BatchNormalization": lambda layer: "BN", "ReLU": lambda layer: "ReLU",
             "Flatten": lambda layer: "Flatten", "Augment": lambda layer: "Augment"}
    return " → ".join(names[type(layer).__name__](layer) for layer in model.layers)


class Chapter:
    """One chapter's settings (the notebook's parameters) and its slides."""

    def __init__(self, number: int, experiments: Sequence[int] | None = None, epochs: int = 300,
                 batch_size: int = 512, seeds: Sequence[int] = (0,), data_source: str | None = None,
                 subset: int | None = None, out_dir: str | os.PathLike = "output",
                 log_every: int | None = None, eval_every: int = 1, speed: dict | Speed | None = None):
        self.number = number
        self.title = CHAPTERS[number]
        own = [e.number for e in chapter_experiments(number)]
        self.experiments = own if experiments is None else [get_experiment(n).number for n in experiments]
        self.epochs, self.batch_size, self.seeds = epochs, batch_size, list(seeds)
        self.data_source, self.subset, self.log_every = data_source, subset, log_every
        self.eval_every, self.speed = eval_every, Speed.coerce(speed)
        self.out_dir = Path(out_dir)
        self.runs_dir, self.figures_dir = self.out_dir / "runs", self.out_dir / "figures"
        self.records: dict[int, list[RunRecord]] = {}
        self._data: CifarData | None = None

    @property
    def data(self) -> CifarData:
        """Loaded once, normalised; ``run_experiment`` rescales for experiment 1."""
        if self._data is None:
            self._data = load_cifar10(self.data_source, subset=self.subset)
        return self._data

    def setup(self) -> None:
        show(describe_environment())
        (x_train, _), (x_test, _) = self.data
        show(f"Data: {self.data.source}: {len(x_train):,} training and {len(x_test):,} test images. "
             f"Runs: {self.epochs} epochs, batch {self.batch_size}, seeds {self.seeds}, "
             f"{evaluation_phrase(self.eval_every)}; "
             f"speed settings: {self.speed.describe()}. "
             f"Experiments in this run: {', '.join(map(str, self.experiments))}.")

    def run(self, number: int) -> list[RunRecord]:
        """Train (or reuse) one experiment over all seeds; show its curves and numbers."""
        exp = get_experiment(number)
        if number not in self.experiments:
            show(f"*Experiment {number} is not in this run's `experiments` parameter: skipped.*")
            return []
        model = build_model(exp)
        show(f"**{exp.label}**: {exp.description}.  \n`{architecture(model)}`  \n"
             f"{model.count_params():,} parameters (study: {exp.study.params:,}).")
        records = run_experiment(exp, epochs=self.epochs, batch_size=self.batch_size, data=self.data,
                                 out_dir=self.runs_dir, seeds=self.seeds, log_every=self.log_every,
                                 eval_every=self.eval_every, speed=self.speed)
        self.records[number] = records
        fig = plot_history(records)
        save_figure(fig, self.figures_dir, self.number, number, "history")
        show(fig)
        plt.close(fig)
        show(display_table(results_table(records, [number])))
        return records

    def reuse(self, number: int) -> list[RunRecord]:
        """Finished runs of another chapter's experiment with these settings (trains nothing)."""
        return find_finished(number, self.data, self.epochs, self.batch_size, self.seeds, self.runs_dir,
                             eval_every=self.eval_every)

    def _all_records(self) -> list[RunRecord]:
        return [r for runs in self.records.values() for r in runs]

    def compare(self, before: int, after: int, metric: str = "test_acc") -> str:
        """One computed sentence: how ``metric`` moved from one experiment to the next."""
        if not (self.records.get(before) and self.records.get(after)):
            sentence = f"*Experiments {before} and {after} were not both run: no comparison.*"
        else:
            verdict, evidence = evaluate(Difference(before, after, metric), self._all_records())
            reading = {SUPPORTED: "a real increase", CONTRADICTED: "a real decrease"}.get(
                verdict, "within run-to-run noise")
            sentence = f"{evidence[0].upper()}{evidence[1:]}: **{reading}**."
        show(sentence)
        return sentence

    def judge(self, claim_key: str) -> Judgement:
        """The study's conclusion ``claim_key`` and our verdict on it, from this chapter's runs."""
        judgement = judge(get_claim(claim_key), self._all_records())
        show(f"**Study:** {judgement.claim.text}.  \n**Our verdict: {judgement.verdict}** — {judgement.evidence}.")
        return judgement

    def summary(self) -> None:
        """The chapter's table and its bar chart against the study."""
        table = results_table(self._all_records(), self.experiments)
        show(display_table(table))
        if self.records:
            fig = plot_study_comparison(table, title=f"Chapter {self.number}: study vs ours")
            save_figure(fig, self.figures_dir, self.number, "all", "comparison")
            show(fig)
            plt.close(fig)

    def record_results(self) -> Path:
        """The chapter's numbers as data (``results/chapter_NN.json``), read back by tests."""
        table = results_table(self._all_records(), self.experiments)
        path = self.out_dir / "results" / f"chapter_{self.number:02d}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"chapter": self.number, "title": self.title, "epochs": self.epochs,
                   "batch_size": self.batch_size, "seeds": self.seeds, "data": self.data.source,
                   "experiments": json.loads(table.reset_index().to_json(orient="records"))}
        write_atomic(path, json.dumps(payload, indent=1))
        show(f"Recorded {len(self._all_records())} runs of {len(self.records)} experiments in `{path}`.")
        return path
