"""Chapter 6's recipe ingredients, one figure each, computed in seconds from the code that trains.

- the learning-rate schedules of experiments 20 and 21, step by step, from
  ``recipes.learning_rate`` (what ``make_optimizer`` gives the optimizer);
- the targets of label smoothing, read off ``recipes.make_loss`` itself;
- experiment 21's patch-whitening filters, from ``fastnet.whitening_weights`` (what
  ``PatchWhitening.adapt`` assigns) on a sample of training images;
- test-time augmentation on and off, with the views of ``recipes.tta_views`` (what
  ``predict_views`` averages), on a trained model.

As in ``illustrations``, each figure is a function that computes its numbers and one that
plots them, so a chapter prints sentences from the same numbers the figure shows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import keras
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats

from .costs import cpu_seconds, duration
from .data import load_cifar10, stratified_share
from .experiments import TTA_KINDS, Recipe, get_experiment
from .fastnet import WHITENING_IMAGES, image_patches, whitening_weights
from .models import build_model, compile_model
from .noise import carry_problem
from .recipes import learning_rate, make_loss, predict_views, tta_views
from .runs.folder import WEIGHTS_FILE
from .runs.record import RunRecord
from .runs.train import load_trained_model

NUM_CLASSES = 10

# ---------------------------------------------------------------------------- learning-rate schedules


class Schedule(NamedTuple):
    """The learning rate at every optimizer step of one run."""

    label: str
    rates: np.ndarray  # one per step, 0 .. total - 1
    steps_per_epoch: int
    epochs: int
    warmup_steps: int


def schedule_curve(recipe: Recipe, steps_per_epoch: int, epochs: int, label: str = "") -> Schedule:
    """The rate the optimizer applies at each step: ``recipes.learning_rate`` (a float, or the
    ``LearningRateSchedule`` that ``make_optimizer`` hands to Keras) called on the step."""
    rate = learning_rate(recipe, steps_per_epoch, epochs)
    total = max(steps_per_epoch * epochs, 1)
    if isinstance(rate, float):
        rates = np.full(total, rate)
    else:
        rates = np.array([float(keras.ops.convert_to_numpy(rate(step))) for step in range(total)])
    return Schedule(label, rates, steps_per_epoch, epochs, int(round(recipe.warmup * total)))


def plot_schedules(schedules: Sequence[Schedule]) -> Figure:
    """One panel per run: its learning rate against the epoch, step by step."""
    fig, axes = plt.subplots(1, len(schedules), figsize=(5 * len(schedules), 3.6), squeeze=False, layout="constrained")
    for ax, schedule in zip(axes[0], schedules, strict=True):
        epochs = np.arange(len(schedule.rates)) / schedule.steps_per_epoch
        ax.plot(epochs, schedule.rates, color="tab:blue")
        if schedule.warmup_steps:
            ax.axvline(schedule.warmup_steps / schedule.steps_per_epoch, color="gray", linestyle=":",
                       label=f"end of warm-up (step {schedule.warmup_steps:,})")
            ax.legend(fontsize=8)
        ax.set(xlabel="epoch", ylabel="learning rate", ylim=(0, 1.08 * schedule.rates.max()),
               title=f"{schedule.label}: {len(schedule.rates):,} steps, peak {schedule.rates.max():g}")
        ax.grid(alpha=0.3)
    fig.suptitle("The learning rate at every step, from the schedule object the optimizer is given", fontsize=10)
    return fig


# ---------------------------------------------------------------------------- label smoothing


def smoothed_targets(label_smoothing: float, true_class: int = 0) -> np.ndarray:
    """The target distribution ``make_loss`` trains towards, read off the loss itself.

    Cross-entropy on logits z is -sum_k t_k log softmax(z)_k, linear in the target t; for
    z = e_k (1 on class k, 0 elsewhere) log softmax(z)_k = 1 - logsumexp(z), so
    t_k = logsumexp(e_k) - loss(e_k): ten loss evaluations give the ten targets."""
    loss = make_loss(Recipe(label_smoothing=label_smoothing))
    y_true = np.eye(NUM_CLASSES, dtype="float32")[[true_class]]
    offset = math.log(math.e + NUM_CLASSES - 1)
    return np.array([offset - float(keras.ops.convert_to_numpy(loss(y_true, np.eye(NUM_CLASSES, dtype="float32")[[k]])))
                     for k in range(NUM_CLASSES)])


def loss_against_margin(label_smoothing: float, margins: np.ndarray) -> np.ndarray:
    """``make_loss``'s loss on an image whose true-class logit exceeds the nine others by
    each margin: it falls for ever without smoothing, and has a minimum with it."""
    loss = make_loss(Recipe(label_smoothing=label_smoothing))
    y_true = np.eye(NUM_CLASSES, dtype="float32")[[0] * len(margins)]
    logits = np.zeros((len(margins), NUM_CLASSES), "float32")
    logits[:, 0] = margins
    loss.reduction = None
    return keras.ops.convert_to_numpy(loss(y_true, logits)).astype(float)


def best_margin(label_smoothing: float) -> float:
    """Where the smoothed loss is lowest: softmax equal to the targets, so the true class's
    logit exceeds each other by log(target true / target other); infinite without smoothing."""
    targets = smoothed_targets(label_smoothing)
    return math.inf if targets[1] < 1e-5 else math.log(targets[0] / targets[1])  # float32: 0 reads as ~2e-7


MARGINS = np.linspace(0, 12, 241)


def plot_label_smoothing(smoothings: Sequence[float], labels: Sequence[str], margins: np.ndarray = MARGINS) -> Figure:
    """The targets (one-hot and each smoothing), and the loss against the logit margin."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
    width = 0.8 / (len(smoothings) + 1)
    for i, (smoothing, label) in enumerate(zip([0.0, *smoothings], ["one-hot (the study)", *labels], strict=True)):
        targets = smoothed_targets(smoothing)
        left.bar(np.arange(NUM_CLASSES) + (i - len(smoothings) / 2) * width, targets, width,
                 label=f"{label}: {targets[0]:.2f} / {targets[1]:.2f}")
        losses = loss_against_margin(smoothing, margins)
        line, = right.plot(margins, losses, label=label)
        if smoothing:
            best = margins[np.argmin(losses)]
            right.axvline(best, color=line.get_color(), linestyle=":", label=f"minimum at margin {best:.2f}")
    left.set(xlabel="class (0: the true class)", ylabel="target probability", xticks=range(NUM_CLASSES),
             title="What the loss asks the softmax for")
    left.legend(fontsize=8)
    right.set(xlabel="true-class logit minus each other logit", ylabel="loss",
              title="The loss on one image against its margin")
    right.legend(fontsize=8)
    right.grid(alpha=0.3)
    return fig


# ---------------------------------------------------------------------------- patch whitening


class Whitening(NamedTuple):
    """Experiment 21's first layer computed on ``images`` images: its frozen kernel, the
    variances of the patch covariance's eigen-directions it whitens, and what it outputs."""

    kernel: np.ndarray  # (size, size, channels, 2K): K filters and their negatives
    eigenvalues: np.ndarray  # K, descending: the patch variance along each filter's direction
    output_covariance: np.ndarray  # K x K, of the K outputs on the sample's patches
    images: int


def whitening_example(images: np.ndarray, size: int = 2, count: int = 500) -> Whitening:
    """The whitening kernel ``PatchWhitening.adapt`` would compute from the first ``count``
    images (it uses the first ``WHITENING_IMAGES`` of the training set), and its effect."""
    sample = np.asarray(images)[:min(count, WHITENING_IMAGES)]
    kernel, bias = whitening_weights(sample, size)
    patches = image_patches(sample, size)
    half = kernel.shape[-1] // 2
    eigenvalues = np.sort(np.linalg.eigvalsh(np.cov(patches, rowvar=False)))[::-1]
    outputs = patches @ kernel.reshape(-1, kernel.shape[-1])[:, :half].astype(np.float64) + bias[:half]
    return Whitening(kernel, eigenvalues, np.cov(outputs, rowvar=False), len(sample))


def _filter_tile(weights: np.ndarray) -> np.ndarray:
    """A (size, size, 3) filter as an image: grey is 0, brighter is positive."""
    return 0.5 + weights / (2 * np.abs(weights).max())


def plot_whitening(result: Whitening) -> Figure:
    """The filters as colour tiles, the variance each direction had, and the output covariance."""
    half = result.kernel.shape[-1] // 2
    fig = plt.figure(figsize=(12, 4.2), layout="constrained")
    tiles, right = fig.subfigures(1, 2, width_ratios=[1.3, 1])
    columns = 6
    axes = tiles.subplots(math.ceil(half / columns), columns, squeeze=False)
    share = result.eigenvalues / result.eigenvalues.sum()
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k < half:
            ax.imshow(_filter_tile(result.kernel[..., k]), interpolation="nearest")
            ax.set_title(f"{k + 1}: {100 * share[k]:.2g} %", fontsize=8)
    size = result.kernel.shape[0]
    tiles.suptitle(f"The {half} {size}x{size} filters (their negatives are the other {half}), "
                   "with each direction's share of the patch variance", fontsize=9)
    spectrum, covariance = right.subplots(1, 2)
    spectrum.semilogy(np.arange(1, half + 1), result.eigenvalues, "o-", label="patches")
    spectrum.semilogy(np.arange(1, half + 1), np.diag(result.output_covariance), "s-", label="after the filters")
    spectrum.set(xlabel="direction (filter)", ylabel="variance")
    spectrum.set_title("variance per direction", fontsize=9)
    spectrum.legend(fontsize=8)
    shown = covariance.imshow(result.output_covariance, cmap="RdBu_r", vmin=-1, vmax=1)
    covariance.set(xticks=[], yticks=[])
    covariance.set_title("output covariance", fontsize=9)
    right.colorbar(shown, ax=covariance, shrink=0.7)
    fig.suptitle(f"Experiment 21's first layer, computed (not trained) from {result.images:,} training images",
                 fontsize=10)
    return fig


# ---------------------------------------------------------------------------- test-time augmentation


class ViewsEffect(NamedTuple):
    """Accuracy with each kind of test-time views on the same images, paired against none."""

    table: pd.DataFrame  # index: kind; accuracy (%), views, fixed, broken, p (exact McNemar)
    example: int  # the image the figure shows
    views: list[np.ndarray]  # that image's views
    view_probabilities: np.ndarray  # p(true class) per view
    averaged: dict[str, float]  # p(true class) per kind, averaged as predict_views does
    model: str


TINY_EPOCHS = 8
TINY_BATCH = 64


def _tiny_experiment():
    return get_experiment(2).vary("translate_flip", augment="translate_flip", translate=2)


def tiny_model(x_train: np.ndarray, y_train: np.ndarray, epochs: int = TINY_EPOCHS, seed: int = 0) -> keras.Model:
    """Experiment 2's small network (24,522 parameters) trained in seconds with whole-pixel
    translations and flips, so that its mirror images are images it was trained on."""
    keras.utils.set_random_seed(seed)
    exp = _tiny_experiment()
    model = build_model(exp, seed=seed)
    compile_model(model, exp.recipe, steps_per_epoch=math.ceil(len(x_train) / TINY_BATCH), epochs=epochs)
    model.fit(x_train, y_train, batch_size=TINY_BATCH, epochs=epochs, verbose=0)
    return model


class ViewedModel(NamedTuple):
    """The model the test-time views are tried on, its test images, and what it is."""

    model: keras.Model
    label: str
    images: np.ndarray
    labels: np.ndarray
    note: str


def tta_model(records: Sequence[RunRecord], data, count: int = 1000, say: Callable[[str], None] = print
              ) -> ViewedModel:
    """The final model of the first of ``records`` that can carry a verdict and kept its
    weights, on a stratified ``count`` of ``data``'s test images; else a tiny model trained
    here in seconds on the bundled sample (``say`` tells its cost first), on the sample's
    test images. A run too short to judge a technique by shows nothing about its views."""
    for record in records:
        if carry_problem({record.name: [record]}) is None and (Path(record.run_dir) / WEIGHTS_FILE).exists():
            (_, _), (x_test, y_test) = data
            chosen = tta_images(y_test, count)
            label = f"experiment {record.experiment}, seed {record.seed}"
            return ViewedModel(load_trained_model(record), label, x_test[chosen], y_test[chosen],
                               f"The final model of {label}, trained in this chapter ({record.test_acc:.2f} % "
                               f"with its own views), on {len(chosen):,} of its test images.")
    (x_train, y_train), (x_test, y_test) = load_cifar10("sample")
    exp = _tiny_experiment()
    say(f"*No run here can carry a verdict with its weights kept, so a tiny model stands in: experiment 2's network "
        f"trained {TINY_EPOCHS} epochs on the bundled sample's {len(x_train):,} images with translations and flips, "
        f"{duration(cpu_seconds(exp, TINY_EPOCHS, len(x_train)))} on 2 CPU cores by the cost table (measured at "
        f"batch 512; it trains at {TINY_BATCH}).*")
    model = tiny_model(x_train, y_train)
    return ViewedModel(model, "a tiny model (experiment 2's network)", x_test, y_test,
                       f"A tiny model trained in this cell (experiment 2's network, {TINY_EPOCHS} epochs on "
                       f"{len(x_train):,} sample images), on the sample's {len(x_test):,} test images.")


def tta_effect(model: keras.Model, images: np.ndarray, labels: np.ndarray, model_label: str,
               kinds: Sequence[str] = TTA_KINDS) -> ViewsEffect:
    """Each kind's accuracy on the same images; ``fixed`` / ``broken``: images right with
    it and wrong without, and the reverse; ``p``: an exact McNemar test of the two counts."""
    truth = labels.argmax(axis=1)
    probabilities = {kind: predict_views(model, images, kind) for kind in kinds}
    plain = probabilities["none"].argmax(axis=1) == truth
    rows = {}
    for kind, probs in probabilities.items():
        right = probs.argmax(axis=1) == truth
        fixed, broken = int(np.sum(right & ~plain)), int(np.sum(plain & ~right))
        p = stats.binomtest(fixed, fixed + broken).pvalue if fixed + broken else 1.0
        rows[kind] = {"accuracy (%)": 100 * right.mean(), "views": len(tta_views(images[:1], kind)),
                      "fixed": fixed, "broken": broken, "p": p}
    last = kinds[-1]
    changed = np.flatnonzero((probabilities[last].argmax(axis=1) == truth) & ~plain)
    example = int(changed[0]) if len(changed) else 0
    views = [view[0] for view, _ in tta_views(images[example:example + 1], last)]
    per_view = keras.ops.convert_to_numpy(keras.ops.softmax(model.predict(np.stack(views), verbose=0), axis=-1))
    averaged = {kind: float(probs[example, truth[example]]) for kind, probs in probabilities.items()}
    return ViewsEffect(pd.DataFrame.from_dict(rows, orient="index"), example, views,
                       per_view[:, truth[example]], averaged, model_label)


def plot_tta(result: ViewsEffect) -> Figure:
    """One image's views and the true class's probability in each, and accuracy per kind."""
    fig = plt.figure(figsize=(12, 3.8), layout="constrained")
    left, right = fig.subfigures(1, 2, width_ratios=[1.4, 1])
    axes = left.subplots(2, math.ceil(len(result.views) / 2), squeeze=False)
    for ax, view, p in zip(axes.flat, result.views, result.view_probabilities, strict=False):
        ax.imshow(np.clip(view, 0, 1), interpolation="nearest")
        ax.set_title(f"p(true) {p:.2f}", fontsize=8)
        ax.set_axis_off()
    averaged = ", ".join(f"{kind} {p:.2f}" for kind, p in result.averaged.items())
    left.suptitle(f"Test image {result.example}: its views; averaged p(true): {averaged}", fontsize=9)
    ax = right.subplots()
    table = result.table
    bars = ax.bar(table.index, table["accuracy (%)"], color=["tab:gray", "tab:blue", "tab:green"][:len(table)])
    for bar, (kind, row) in zip(bars, table.iterrows(), strict=True):
        note = "" if kind == "none" else f"+{int(row['fixed'])} / -{int(row['broken'])}"
        ax.annotate(f"{row['accuracy (%)']:.1f} %\n{note}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=8)
    ax.set(ylabel="test accuracy (%)", ylim=(0, min(100, 1.25 * table["accuracy (%)"].max())),
           title=f"{result.model}: same images, paired")
    return fig


def describe_tta(viewed: ViewedModel, result: ViewsEffect, level: float = 0.05) -> str:
    """The figure in a sentence: each kind's accuracy, what it fixed and broke, and whether
    the difference is beyond chance by the exact McNemar test at ``level``."""
    table = result.table

    def paired(kind: str) -> str:
        row = table.loc[kind]
        verdict = ("within noise" if row["p"] >= level else
                   "a real gain" if row["fixed"] > row["broken"] else "a real loss")
        return (f"{kind} ({int(row['views'])} views) **{row['accuracy (%)']:.1f} %**, fixing {int(row['fixed'])} "
                f"images and breaking {int(row['broken'])} (exact McNemar p = {row['p']:.2f}: {verdict})")

    return (f"{viewed.note} Without views **{table.loc['none', 'accuracy (%)']:.1f} %**; "
            + "; ".join(paired(kind) for kind in table.index if kind != "none") + ".")


def tta_images(labels: np.ndarray, count: int = 1000, seed: int = 0) -> np.ndarray:
    """Indices of a stratified ``count`` of the test images (all when there are fewer):
    six views of a network on a CPU cost seconds per thousand images."""
    if count >= len(labels):
        return np.arange(len(labels))
    return stratified_share(labels, count / len(labels), seed)
