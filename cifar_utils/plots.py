"""The slides' figures: curves per experiment, all test curves together, ours vs the study,
and the figures a chapter reads from runs and predictions (train vs test on one axis, the
train-test gap, confusion matrix, confident mistakes, accuracy against training time).

Where a figure's numbers make a sentence, a small function returns them as data
(``gap_curves``, ``per_class_accuracy``, ``confusion_counts``, ``confident_mistakes``)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .data import CLASS_NAMES
from .experiments import CHAPTERS, get_experiment
from .results import by_experiment
from .runs.record import RunRecord
from .storage import write_atomic

TRAIN_COLOR, TEST_COLOR = "tab:blue", "tab:orange"
CHAPTER_COLORS = {1: "Greys", 2: "Blues", 3: "Greens", 4: "Reds", 6: "Purples"}
# A chapter not listed above (a registry line with a new chapter) still gets a colour map.
FALLBACK_COLORS = ("Oranges", "YlOrBr", "PuRd", "BuGn", "GnBu", "RdPu")


def chapter_colormap(chapter: int) -> str:
    """The colour map a chapter's experiments are drawn in: its own, or a fallback."""
    return CHAPTER_COLORS.get(chapter) or FALLBACK_COLORS[chapter % len(FALLBACK_COLORS)]


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
    """Loss and accuracy per epoch, train vs test (or validation, for recipes that hold
    images out), as the slides showed (mean ± std over seeds)."""
    records = _as_list(records)
    if not records:
        raise ValueError("plot_history needs at least one run record")
    exp = get_experiment(records[0].experiment)
    evaluated_on = records[0].evaluated_on
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
    for prefix, label, color in (("", "train", TRAIN_COLOR), ("val_", evaluated_on, TEST_COLOR)):
        _plot_band(ax_loss, *curves(records, f"{prefix}loss"), label, color)
        _plot_band(ax_acc, *curves(records, f"{prefix}accuracy", 100), label, color)
    if exp.study is not None:
        ax_acc.axhline(exp.study.test_acc, color="grey", linestyle="--", linewidth=1,
                       label=f"study test acc ({exp.study.test_acc:.2f} %)")
    if evaluated_on == "validation":
        final = float(np.mean([r.test_acc for r in records]))
        ax_acc.plot([len(records[0].history["epoch"])], [final], marker="*", markersize=12, color="tab:red",
                    linestyle="none", label=f"test, final model ({final:.2f} %)")
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
    for chapter in sorted({get_experiment(n).chapter for n in grouped}):
        numbers = [n for n in grouped if get_experiment(n).chapter == chapter]
        shades = plt.get_cmap(chapter_colormap(chapter))(np.linspace(0.45, 0.95, len(numbers)))
        for number, shade in zip(numbers, shades, strict=True):
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


# ---------------------------------------------------------------------------- curves of several experiments

def _grouped(records: Iterable[RunRecord], experiments: Iterable[int], what: str) -> dict[int, list[RunRecord]]:
    """The runs of each requested experiment that was run, in the order asked; an error if none was."""
    grouped = by_experiment(records)
    numbers = [get_experiment(n).number for n in experiments]
    found = {n: grouped[n] for n in numbers if n in grouped}
    if not found:
        raise ValueError(f"{what}: no run records for experiments {numbers}")
    return found


def plot_curves_together(records: Iterable[RunRecord], experiments: Sequence[int], metric: str = "accuracy",
                         title: str | None = None) -> Figure:
    """Several experiments on one axis, train dashed and test solid (mean over seeds), one colour each.

    Test values exist only on evaluated epochs (``eval_every``); those epochs are drawn, the
    others skipped. Experiments without runs are left out and named in the title.
    """
    experiments = list(experiments)
    grouped = _grouped(records, experiments, "plot_curves_together")
    missing = [n for n in experiments if get_experiment(n).number not in grouped]
    default = f"Train (dashed) vs test (solid) {metric}, experiments {', '.join(str(n) for n in grouped)}"
    if missing:
        default += f" (not run: {', '.join(str(n) for n in missing)})"
    return plot_run_groups({get_experiment(n).label: runs for n, runs in grouped.items()}, metric, title or default)


def plot_run_groups(groups: dict[str, Sequence[RunRecord]], metric: str = "accuracy", title: str = "") -> Figure:
    """Groups of runs (e.g. an experiment and its variant) on one axis: Keras' running
    training figure dashed (averaged over each epoch, dropout and augmentation on), the
    evaluation set solid, mean over each group's seeds."""
    scale, unit = (100.0, "accuracy (%)") if metric == "accuracy" else (1.0, metric)
    fig, ax = plt.subplots(figsize=(10, 5), layout="constrained")
    colors = plt.get_cmap("tab10").colors
    for index, (label, runs) in enumerate(groups.items()):
        color = colors[index % len(colors)]
        evaluated_on = runs[0].evaluated_on
        for prefix, style, part in (("", "--", "train, running"), ("val_", "-", evaluated_on)):
            mean, _ = curves(runs, f"{prefix}{metric}", scale)
            epochs, evaluated = _evaluated(mean)
            ax.plot(epochs, mean[evaluated], linestyle=style, color=color, label=f"{label} ({part})",
                    marker="o" if evaluated.sum() < 12 else None, markersize=3)
    ax.set(xlabel="epoch", ylabel=unit, title=title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    return fig


def gap_curves(records: Iterable[RunRecord], experiments: Sequence[int] = (6, 7, 11)) -> pd.DataFrame:
    """Keras' running training accuracy minus test accuracy (points, mean over seeds) per
    evaluated epoch: rows 1-based epochs, one column per experiment that was run; NaN where
    an experiment was not evaluated. The running figure is averaged over an epoch while the
    weights move, with dropout, augmentation and batch statistics on, so it is not the
    final model's gap: ``final_gaps`` is."""
    columns = {}
    for number, runs in _grouped(records, experiments, "gap_curves").items():
        gap = curves(runs, "accuracy", 100)[0] - curves(runs, "val_accuracy", 100)[0]
        epochs, evaluated = _evaluated(gap)
        columns[number] = pd.Series(gap[evaluated], index=epochs)
    frame = pd.DataFrame(columns)
    frame.index.name, frame.columns.name = "epoch", "experiment"
    return frame


def final_gaps(records: Iterable[RunRecord], experiments: Sequence[int] = (6, 7, 11)) -> pd.Series:
    """The final model's train minus test accuracy, both in inference mode (points, mean
    over seeds), per experiment that was run: the gap the verdicts judge."""
    grouped = _grouped(records, experiments, "final_gaps")
    gaps = {n: float(np.mean([r.gap for r in runs])) for n, runs in grouped.items()}
    return pd.Series(gaps, name="final model gap", dtype=float).rename_axis("experiment")


def plot_gap_curves(records: Iterable[RunRecord], experiments: Sequence[int] = (6, 7, 11),
                    title: str | None = None) -> Figure:
    """The gap per epoch from Keras' running training accuracy (lines: how fast each model
    overfits) and the final model's gap in inference mode (stars at the last epoch: what
    the verdicts judge), one colour per experiment."""
    records = list(records)
    gaps, final = gap_curves(records, experiments), final_gaps(records, experiments)
    fig, ax = plt.subplots(figsize=(10, 4.5), layout="constrained")
    for number in gaps.columns:
        values = gaps[number].dropna()
        line, = ax.plot(values.index, values.to_numpy(), label=f"{get_experiment(number).label} (running)",
                        marker="o" if len(values) < 12 else None, markersize=3)
        if np.isfinite(final.get(number, np.nan)):
            ax.plot([values.index.max()], [final[number]], marker="*", markersize=14, color=line.get_color(),
                    linestyle="none", label=f"{get_experiment(number).label}: final model, inference mode")
    ax.axhline(0, color="grey", linewidth=1)
    ax.set(xlabel="epoch", ylabel="train − test accuracy (points)",
           title=title or "Overfitting: running train accuracy minus test accuracy per epoch, and the final "
                          "model's gap (stars)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    return fig


# ---------------------------------------------------------------------------- predictions

def _labels(values: np.ndarray) -> np.ndarray:
    """Integer classes from integers, one-hot labels or probabilities."""
    values = np.asarray(values)
    return values.argmax(axis=-1) if values.ndim > 1 else values.astype(int)


def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray,
                     class_names: Sequence[str] = CLASS_NAMES) -> pd.DataFrame:
    """Counts: rows the true class, columns the predicted one (labels as integers, one-hot or probabilities)."""
    true, pred = _labels(y_true), _labels(y_pred)
    size = len(class_names)
    counts = np.bincount(true * size + pred, minlength=size * size).reshape(size, size)
    return pd.DataFrame(counts, index=pd.Index(class_names, name="true"),
                        columns=pd.Index(class_names, name="predicted"))


def per_class_accuracy(y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str] = CLASS_NAMES) -> pd.Series:
    """Accuracy (%) per true class, NaN for a class absent from ``y_true``: which classes the model gets wrong."""
    counts = confusion_counts(y_true, y_pred, class_names)
    totals = counts.sum(axis=1)
    accuracy = pd.Series(np.diag(counts.to_numpy()), index=counts.index) / totals.where(totals > 0) * 100
    return accuracy.rename("accuracy (%)")


def plot_confusion(y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str] = CLASS_NAMES,
                   title: str | None = None) -> Figure:
    """Row-normalised confusion matrix (% of each true class) beside the per-class accuracy."""
    counts = confusion_counts(y_true, y_pred, class_names)
    totals = counts.sum(axis=1).to_numpy()[:, None]
    percent = np.divide(100.0 * counts.to_numpy(), totals, out=np.zeros(counts.shape), where=totals > 0)
    accuracy = per_class_accuracy(y_true, y_pred, class_names)
    fig, (ax_matrix, ax_bars) = plt.subplots(1, 2, figsize=(11, 5.2), width_ratios=(1.5, 1), layout="constrained")
    image = ax_matrix.imshow(percent, cmap="Blues", vmin=0, vmax=100)
    for (row, column), value in np.ndenumerate(percent):
        ax_matrix.text(column, row, f"{value:.0f}", ha="center", va="center", fontsize=7,
                       color="white" if value > 60 else "black")
    ticks = np.arange(len(class_names))
    ax_matrix.set_xticks(ticks, class_names, rotation=45, ha="right", fontsize=8)
    ax_matrix.set_yticks(ticks, class_names, fontsize=8)
    ax_matrix.set(xlabel="predicted class", ylabel="true class", title="Confusion matrix (% of each true class)")
    fig.colorbar(image, ax=ax_matrix, shrink=0.8, label="% of the true class")
    ax_bars.barh(ticks, accuracy.fillna(0).to_numpy(), color="tab:blue")
    for position, value in zip(ticks, accuracy, strict=True):
        ax_bars.annotate("n/a" if np.isnan(value) else f" {value:.1f}", (0 if np.isnan(value) else value, position),
                         va="center", fontsize=8)
    ax_bars.set_yticks(ticks, class_names, fontsize=8)
    ax_bars.invert_yaxis()  # same order as the matrix rows
    ax_bars.set(xlabel="accuracy (%)", xlim=(0, 110), title="Per-class accuracy")
    ax_bars.grid(axis="x", alpha=0.3)
    overall = 100 * np.trace(counts.to_numpy()) / max(int(counts.to_numpy().sum()), 1)
    fig.suptitle(title or f"Test predictions: {overall:.1f} % correct over {int(counts.to_numpy().sum()):,} images")
    return fig


def _displayable(image: np.ndarray) -> np.ndarray:
    """uint8 as it is; floats in [0, 1], dividing 0-255 floats by 255."""
    if image.dtype == np.uint8:
        return image
    return np.clip(image / 255.0 if image.max() > 1.0 else image, 0.0, 1.0)


def confident_mistakes(y_true: np.ndarray, probabilities: np.ndarray, count: int = 12) -> pd.DataFrame:
    """The ``count`` misclassified images with the highest predicted probability, most confident first:
    columns ``index`` (position in the test set), ``true``, ``predicted`` (class numbers) and ``probability``."""
    probabilities = np.asarray(probabilities)
    true, predicted = _labels(y_true), probabilities.argmax(axis=-1)
    confidence = probabilities.max(axis=-1)
    wrong = np.flatnonzero(predicted != true)
    order = wrong[np.argsort(-confidence[wrong], kind="stable")][:count]
    return pd.DataFrame({"index": order, "true": true[order], "predicted": predicted[order],
                         "probability": confidence[order].astype(float)})


def plot_confident_mistakes(images: np.ndarray, y_true: np.ndarray, probabilities: np.ndarray, count: int = 12,
                            class_names: Sequence[str] = CLASS_NAMES, title: str | None = None) -> Figure:
    """The test images the model got wrong while most sure of itself, captioned true / predicted (probability)."""
    mistakes = confident_mistakes(y_true, probabilities, count)
    columns = 6
    rows = max(1, -(-len(mistakes) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(10.5, 2.15 * rows + 0.5), squeeze=False, layout="constrained")
    images = np.asarray(images)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, row in zip(axes.flat, mistakes.itertuples(), strict=False):
        ax.imshow(_displayable(images[row.index]), interpolation="nearest")
        ax.set_title(f"true: {class_names[row.true]}\npredicted: {class_names[row.predicted]} "
                     f"({100 * row.probability:.0f} %)", fontsize=8)
    if mistakes.empty:
        axes[0, 0].text(0, 0.5, "no misclassified images", fontsize=10)
    fig.suptitle(title or f"The {len(mistakes)} most confident mistakes on the test set")
    return fig


# ---------------------------------------------------------------------------- accuracy against time

def plot_accuracy_vs_time(table: pd.DataFrame, title: str | None = None) -> Figure:
    """Test accuracy against training time per run (log x), one labelled point per experiment.

    ``table`` is ``results_table``'s: ``wall_seconds`` is the total over seeds, so it is
    divided by ``seeds``; error bars are the std over seeds where there is more than one.
    Rows without a test accuracy (not run) are skipped.
    """
    shown = table[np.isfinite(table["test_acc_mean"]) & (table["wall_seconds"] > 0)]
    if shown.empty:
        raise ValueError("plot_accuracy_vs_time: no experiment in the table has a test accuracy")
    seconds = shown["wall_seconds"] / shown["seeds"].clip(lower=1)
    fig, ax = plt.subplots(figsize=(10, 5.5), layout="constrained")
    chapters = shown["chapter"] if "chapter" in shown else pd.Series(0, index=shown.index)
    for chapter in sorted(chapters.unique()):
        mine = chapters == chapter
        color = plt.get_cmap(chapter_colormap(chapter))(0.75)
        ax.errorbar(seconds[mine], shown.loc[mine, "test_acc_mean"], yerr=shown.loc[mine, "test_acc_std"].fillna(0),
                    fmt="o", color=color, capsize=3, label=f"chapter {chapter}: {CHAPTERS.get(chapter, '')}")
    for number, x, y in zip(shown.index, seconds, shown["test_acc_mean"], strict=True):
        ax.annotate(str(number), (x, y), xytext=(5, 4), textcoords="offset points", fontsize=8)
    ax.set_xscale("log")
    ax.set(xlabel="training time per run (s, log scale)", ylabel="test accuracy (%)",
           title=title or "Test accuracy against training time (mean ± std over seeds; labels: experiment)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    return fig


def figure_path(figures_dir: str | os.PathLike, chapter: int | str, experiment: int | str, kind: str) -> Path:
    """``figures/<chapter>_<experiment>_<kind>.png``: stable names the slides can link to."""
    chapter = f"{chapter:02d}" if isinstance(chapter, int) else chapter
    experiment = get_experiment(experiment).key if isinstance(experiment, int) else experiment
    return Path(figures_dir) / f"{chapter}_{experiment}_{kind}.png"


def save_figure(fig: Figure, figures_dir: str | os.PathLike, chapter: int | str, experiment: int | str,
                kind: str) -> Path:
    """Save whole or not at all (``storage``) and return the path."""
    path = figure_path(figures_dir, chapter, experiment, kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda stream: fig.savefig(stream, dpi=110, format="png"))
    return path


__all__ = ["plot_history", "plot_test_accuracy_curves", "plot_study_comparison", "save_figure", "figure_path",
           "plot_curves_together", "plot_run_groups", "gap_curves", "final_gaps", "plot_gap_curves", "confusion_counts",
           "per_class_accuracy", "plot_confusion", "confident_mistakes", "plot_confident_mistakes",
           "plot_accuracy_vs_time"]
