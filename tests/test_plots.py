"""Figures from run records and predictions: the plotted data equals the computed numbers."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from cifar_utils.data import CLASS_NAMES
from cifar_utils.plots import (
    confident_mistakes,
    confusion_counts,
    gap_curves,
    per_class_accuracy,
    plot_accuracy_vs_time,
    plot_confident_mistakes,
    plot_confusion,
    plot_curves_together,
    plot_gap_curves,
)
from tests.factories import make_record

NAN = float("nan")


def record(experiment, train, test, seed=0, wall_seconds=30.0):
    """A run with the given per-epoch train and test accuracies (fractions; NaN = not evaluated)
    and no final-model gap, so that the gap figure draws its running curves only."""
    epochs = len(train)
    history = {"epoch": list(range(epochs)), "loss": [1.0 - t / 2 for t in train],
               "val_loss": [NAN if np.isnan(t) else 1.2 - t / 2 for t in test],
               "accuracy": list(train), "val_accuracy": list(test), "epoch_seconds": [wall_seconds / epochs] * epochs}
    return make_record(experiment, 100 * test[-1], seed, train_acc=100 * train[-1], train_eval_acc=NAN,
                       best_test_acc=100 * np.nanmax(test), epochs=epochs, wall_seconds=wall_seconds, history=history)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_curves_together_draws_train_dashed_and_test_solid_on_evaluated_epochs_only():
    # eval_every=2 over 6 epochs evaluates after epochs 1, 2, 4 and 6 (runs.identity.evaluation_epochs)
    records = [record(3, [0.4, 0.6, 0.8, 0.9, 0.95, 0.97], [0.30, 0.50, NAN, 0.60, NAN, 0.62], seed=0),
               record(3, [0.5, 0.7, 0.9, 0.95, 0.97, 0.99], [0.40, 0.52, NAN, 0.62, NAN, 0.64], seed=1),
               record(5, [0.3, 0.5, 0.7, 0.8, 0.9, 1.0], [0.35, 0.55, NAN, 0.70, NAN, 0.72])]
    fig = plot_curves_together(records, experiments=(3, 4, 5))
    (ax,) = fig.axes
    assert len(ax.lines) == 4  # train + test for 3 and 5; 4 was not run
    train3, test3, train5, test5 = ax.lines
    assert train3.get_linestyle() == "--" and test3.get_linestyle() == "-"
    assert train3.get_color() == test3.get_color() != train5.get_color()
    np.testing.assert_array_equal(train3.get_xdata(), [1, 2, 3, 4, 5, 6])
    np.testing.assert_allclose(train3.get_ydata(), [45, 65, 85, 92.5, 96, 98])  # mean over the two seeds, in %
    np.testing.assert_array_equal(test3.get_xdata(), [1, 2, 4, 6])  # NaN epochs skipped, not drawn as gaps
    np.testing.assert_allclose(test3.get_ydata(), [35, 51, 61, 63])
    np.testing.assert_allclose(test5.get_ydata(), [35, 55, 70, 72])
    assert "not run: 4" in ax.get_title() and ax.get_ylabel() == "accuracy (%)"
    loss = plot_curves_together(records, experiments=(3,), metric="loss", title="losses")
    np.testing.assert_allclose(loss.axes[0].lines[1].get_ydata(), [1.2 - 0.35 / 2, 1.2 - 0.51 / 2,
                                                                     1.2 - 0.61 / 2, 1.2 - 0.63 / 2])
    assert loss.axes[0].get_title() == "losses"
    with pytest.raises(ValueError, match="no run records"):
        plot_curves_together(records, experiments=(15, 17))


def test_gap_curves_are_train_minus_test_on_evaluated_epochs():
    records = [record(6, [0.5, 0.8, 0.9, 1.0], [0.45, NAN, 0.70, 0.72], seed=0),
               record(6, [0.6, 0.8, 1.0, 1.0], [0.55, NAN, 0.74, 0.76], seed=1),
               record(7, [0.4, 0.6, 0.7], [0.42, 0.6, 0.69])]
    gaps = gap_curves(records, experiments=(6, 7, 11))
    assert list(gaps.columns) == [6, 7] and list(gaps.index) == [1, 2, 3, 4]
    np.testing.assert_allclose(gaps[6].to_numpy(), [5, NAN, 23, 26])
    np.testing.assert_allclose(gaps[7].to_numpy(), [-2, 0, 1, NAN], atol=1e-9)
    fig = plot_gap_curves(records, experiments=(6, 7, 11))
    line6, line7 = fig.axes[0].lines[:2]
    np.testing.assert_array_equal(line6.get_xdata(), [1, 3, 4])
    np.testing.assert_allclose(line6.get_ydata(), [5, 23, 26])
    np.testing.assert_allclose(line7.get_ydata(), [-2, 0, 1], atol=1e-9)
    assert line6.get_label().startswith("6.") and "points" in fig.axes[0].get_ylabel()


def test_confusion_counts_per_class_accuracy_and_figure():
    y_true = np.array([0, 0, 0, 0, 3, 3, 5, 5, 5, 9])
    y_pred = np.array([0, 0, 0, 8, 5, 3, 3, 5, 5, 9])
    counts = confusion_counts(y_true, y_pred)
    assert counts.shape == (10, 10) and counts.to_numpy().sum() == 10
    assert counts.loc["airplane", "airplane"] == 3 and counts.loc["airplane", "ship"] == 1
    assert counts.loc["cat", "dog"] == 1 and counts.loc["dog", "cat"] == 1
    accuracy = per_class_accuracy(y_true, y_pred)
    assert list(accuracy.index) == list(CLASS_NAMES)
    assert accuracy["airplane"] == pytest.approx(75.0) and accuracy["cat"] == pytest.approx(50.0)
    assert accuracy["dog"] == pytest.approx(200 / 3) and accuracy["truck"] == 100.0
    assert np.isnan(accuracy["bird"])  # no bird in y_true
    one_hot = np.eye(10)[y_true]
    probabilities = np.eye(10)[y_pred] * 0.9 + 0.01
    pd.testing.assert_series_equal(per_class_accuracy(one_hot, probabilities), accuracy)

    fig = plot_confusion(y_true, y_pred)
    ax_matrix, ax_bars = fig.axes[:2]
    matrix = ax_matrix.images[0].get_array()
    assert matrix[0, 0] == pytest.approx(75.0) and matrix[0, 8] == pytest.approx(25.0)
    assert matrix[5, 3] == pytest.approx(100 / 3) and matrix[1].sum() == 0
    np.testing.assert_allclose(matrix.sum(axis=1)[[0, 3, 5, 9]], 100.0)
    widths = [patch.get_width() for patch in ax_bars.patches]
    np.testing.assert_allclose(widths, accuracy.fillna(0).to_numpy())
    assert [t.get_text() for t in ax_bars.get_yticklabels()] == list(CLASS_NAMES)
    assert "70.0 % correct over 10 images" in fig._suptitle.get_text()
    assert "75" in [t.get_text() for t in ax_matrix.texts]


def test_confident_mistakes_orders_wrong_predictions_by_probability():
    y_true = np.array([3, 5, 1, 0, 3])
    probabilities = np.full((5, 10), 0.01)
    probabilities[0, 5] = 0.97  # cat predicted as dog, very sure
    probabilities[1, 5] = 0.99  # right: not a mistake
    probabilities[2, 9] = 0.60  # automobile as truck
    probabilities[3, 8] = 0.80  # airplane as ship
    probabilities[4, 3] = 0.50  # right
    mistakes = confident_mistakes(y_true, probabilities)
    assert list(mistakes["index"]) == [0, 3, 2]
    assert list(mistakes["predicted"]) == [5, 8, 9] and list(mistakes["true"]) == [3, 0, 1]
    np.testing.assert_allclose(mistakes["probability"], [0.97, 0.80, 0.60])
    assert len(confident_mistakes(y_true, probabilities, count=2)) == 2

    images = np.random.default_rng(0).random((5, 32, 32, 3)).astype("float32")
    fig = plot_confident_mistakes(images, np.eye(10)[y_true], probabilities)
    titled = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in titled] == ["true: cat\npredicted: dog (97 %)",
                                                 "true: airplane\npredicted: ship (80 %)",
                                                 "true: automobile\npredicted: truck (60 %)"]
    np.testing.assert_allclose(titled[1].images[0].get_array(), images[3])
    assert "3 most confident mistakes" in fig._suptitle.get_text()


def accuracy_table():
    """The columns of ``results_table`` that the figure reads: exp 2 over 2 seeds, 3 not run."""
    return pd.DataFrame({
        "experiment": [2, 3, 7, 17], "name": ["4-layer model 2", "6-layer model 1", "Dropout model 1", "VGG + aug"],
        "chapter": [1, 2, 3, 4], "test_acc_mean": [72.0, NAN, 80.0, 88.0], "test_acc_std": [2.0, NAN, NAN, NAN],
        "seeds": [2, 0, 1, 1], "wall_seconds": [100.0, NAN, 200.0, 4000.0]}).set_index("experiment")


def test_accuracy_vs_time_divides_total_time_by_seeds_and_skips_missing_runs():
    table = accuracy_table()
    fig = plot_accuracy_vs_time(table)
    (ax,) = fig.axes
    points = {}
    for line in ax.lines:
        if line.get_marker() == "o":
            for x, y in zip(line.get_xdata(), line.get_ydata(), strict=True):
                points[round(float(y), 6)] = float(x)
    assert points == {72.0: 50.0, 80.0: 200.0, 88.0: 4000.0}  # 100 s over 2 seeds = 50 s per run
    assert sorted(t.get_text() for t in ax.texts) == ["17", "2", "7"]
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "training time per run (s, log scale)"
    error_bars = [c for c in ax.collections if len(c.get_segments())]
    spans = sorted(float(abs(seg[1][1] - seg[0][1])) for c in error_bars for seg in c.get_segments())
    assert spans[-1] == pytest.approx(2 * table.loc[2, "test_acc_std"])
    with pytest.raises(ValueError, match="no experiment"):
        plot_accuracy_vs_time(table.loc[[3]])


def test_every_chapter_the_registry_has_gets_a_colour(monkeypatch):
    """A registry line in a chapter ``CHAPTER_COLORS`` does not list is drawn in a fallback
    colour map: its runs never vanish from the all-curves figure."""
    from dataclasses import replace

    from cifar_utils import experiments
    from cifar_utils.plots import CHAPTER_COLORS, chapter_colormap, plot_test_accuracy_curves

    assert all(chapter_colormap(c) == CHAPTER_COLORS[c] for c in experiments.CHAPTERS)
    later = replace(experiments.get_experiment(2), number=len(experiments.EXPERIMENTS) + 1, chapter=7, study=None)
    monkeypatch.setattr(experiments, "EXPERIMENTS", (*experiments.EXPERIMENTS, later))
    assert chapter_colormap(7) not in CHAPTER_COLORS.values()
    runs = [record(2, [0.5, 0.6], [0.4, 0.5]), record(19, [0.5, 0.6], [0.3, 0.4]),
            record(later.number, [0.5, 0.6], [0.45, 0.55])]
    fig = plot_test_accuracy_curves(runs)
    (ax,) = fig.axes
    colors = {line.get_label(): tuple(line.get_color()) for line in ax.get_lines()}
    assert list(colors) == [experiments.get_experiment(n).label for n in (2, 19, later.number)]  # by chapter
    assert colors[later.label] == tuple(plt.get_cmap(chapter_colormap(7))(0.45))
    assert len(set(colors.values())) == 3
    plt.close(fig)
