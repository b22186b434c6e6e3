"""The slides' figures: curves per experiment, all test curves together, ours vs the study."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .experiments import CHAPTERS, get_experiment
from .results import by_experiment
from .training import RunRecord

TRAIN_COLOR, TEST_COLOR = "tab:blue", "tab:orange"
CHAPTER_COLORS = {1: "Greys", 2: "Blues", 3: "Greens", 4: "Reds"}


def _as_list(records: RunRecord | Iterable[RunRecord]) -> list[RunRecord]:
    return [records] if isinstance(records, RunRecord) else list(records)


def curves(records: Sequence[RunRecord], key: str, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std over seeds of one history column, cut to the shortest run."""
    length = min(len(r.history[key]) for r in records)
    values = np.array([r.history[key][:length] for r in records]) * scale
    return values.mean(axis=0), values.std(axis=0)


def _evaluated(mean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """1-based epochs with a value, and the mask: with ``eval_every`` > 1 the test curve has gaps."""
    evaluated = np.isfinite(mean)
    return np.arange(1, len(mean) + 1)[evaluated], evaluated


def _plot_band(ax, mean: np.ndarray, std: np.ndarray, label: str, color: str) -> None:
    """A line with a ±std band over the epochs that have a value."""
    epochs, evaluated = _evaluated(mean)
    mean, std = mean[evaluated], std[evaluated]
    ax.plot(epochs, mean, label=label, color=color, marker="o" if len(mean) < 12 else None, markersize=3)
    if std.any():
        ax.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.2)


def plot_history(records: RunRecord | Iterable[RunRecord], title: str | None = None) -> Figure:
    """Loss and accuracy per epoch, train vs test, as the slides showed (mean ± std over seeds)."""
    records = _as_list(records)
    if not records:
        raise ValueError("plot_history needs at least one run record")
    exp = get_experiment(records[0].experiment)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
    for prefix, label, color in (("", "train", TRAIN_COLOR), ("val_", "test", TEST_COLOR)):
        _plot_band(ax_loss, *curves(records, f"{prefix}loss"), label, color)
        _plot_band(ax_acc, *curves(records, f"{prefix}accuracy", 100), label, color)
    ax_acc.axhline(exp.study.test_acc, color="grey", linestyle="--", linewidth=1,
                   label=f"study test acc ({exp.study.test_acc:.2f} %)")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    seeds = f"{len(records)} seeds, mean ± std" if len(records) > 1 else f"seed {records[0].seed}"
    fig.suptitle(title or f"Experiment {exp.label} ({seeds})")
    return fig


def plot_test_accuracy_curves(records: Iterable[RunRecord], title: str = "Test accuracy per epoch") -> Figure:
    """Every experiment's test curve in one figure, coloured by chapter."""
    grouped = by_experiment(records)
    if not grouped:
        raise ValueError("plot_test_accuracy_curves needs at least one run record")
    fig, ax = plt.subplots(figsize=(11, 5.5), layout="constrained")
    for chapter, cmap in CHAPTER_COLORS.items():
        numbers = [n for n in grouped if get_experiment(n).chapter == chapter]
        shades = plt.get_cmap(cmap)(np.linspace(0.45, 0.95, max(len(numbers), 1)))
        for number, shade in zip(numbers, shades, strict=False):
            mean, _ = curves(grouped[number], "val_accuracy", 100)
            epochs, evaluated = _evaluated(mean)
            ax.plot(epochs, mean[evaluated], color=shade, label=get_experiment(number).label)
    ax.set(xlabel="epoch", ylabel="test accuracy (%)", title=title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2, loc="lower right")
    return fig


def plot_study_comparison(table: pd.DataFrame, title: str = "Final test accuracy: study vs ours") -> Figure:
    """Horizontal bars per experiment: the study's figure and ours (mean ± std over seeds)."""
    table = table.sort_index(ascending=False)
    y = np.arange(len(table))
    fig, ax = plt.subplots(figsize=(9, 0.38 * len(table) + 1.5), layout="constrained")
    ax.barh(y + 0.2, table["study_test_acc"], height=0.4, color="lightgrey", label="study")
    ax.barh(y - 0.2, table["test_acc_mean"], height=0.4, xerr=table["test_acc_std"].fillna(0),
            color=TEST_COLOR, label="ours (mean ± std)", capsize=2)
    ax.set_yticks(y, [f"{n}. {name}" for n, name in zip(table.index, table["name"], strict=True)], fontsize=8)
    ax.set(xlabel="test accuracy (%)", title=title, xlim=(0, 100))
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right")
    return fig


def figure_path(figures_dir: str | os.PathLike, chapter: int | str, experiment: int | str, kind: str) -> Path:
    """``figures/<chapter>_<experiment>_<kind>.png``: stable names the slides can link to."""
    chapter = f"{chapter:02d}" if isinstance(chapter, int) else chapter
    experiment = get_experiment(experiment).key if isinstance(experiment, int) else experiment
    return Path(figures_dir) / f"{chapter}_{experiment}_{kind}.png"


def save_figure(fig: Figure, figures_dir: str | os.PathLike, chapter: int | str, experiment: int | str,
                kind: str) -> Path:
    """Save atomically (temp file, then rename) and return the path."""
    path = figure_path(figures_dir, chapter, experiment, kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)
    return path


__all__ = ["plot_history", "plot_test_accuracy_curves", "plot_study_comparison", "save_figure",
           "figure_path", "CHAPTERS"]
