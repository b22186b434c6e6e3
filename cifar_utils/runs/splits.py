"""Which images a run trains on and is judged on: fixed draws, the same for every seed.

Seeds vary the training, never the data: the validation split, the small setting's
training images and the training images the final model is measured on are each one
fixed stratified draw (``data.stratified_share``). A split a dataset is too small for is
refused before anything trains, naming what asked for it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from ..data import NUM_CLASSES, stratified_share
from ..experiments import Experiment

VALIDATION_SEED = 0  # one fixed held-out set, so every run of a sweep is judged on the same images
SMALL_SETTING_SEED = 1  # one fixed set of images for ``Recipe.train_images``, whatever the run's seed
# The fixed training images the final model is measured on (``final_model``): enough for a
# binomial standard error of about 1 point on a training accuracy near 80 % and for
# per-channel batch-norm statistics (each channel pools 2,000 x height x width positions),
# small enough to cost a fifth of the test set's evaluation.
TRAIN_EVAL_IMAGES = 2_000
TRAIN_EVAL_SEED = 1  # not VALIDATION_SEED: a different draw, always from the training part


def validation_split(labels: np.ndarray, fraction: float, seed: int = VALIDATION_SEED,
                     what: str = "this recipe") -> tuple[np.ndarray, ...]:
    """Indices (train, validation): ``fraction`` of each class held out, the same every run;
    refuses (``split_problem``) labels too few for it, naming ``what`` asked for it."""
    problem = split_problem(class_sizes(labels), fraction, what)
    if problem:
        raise ValueError(problem)
    held = stratified_share(labels, fraction, seed)
    return np.setdiff1d(np.arange(len(labels)), held), held


def fewer_images(labels: np.ndarray, count: int, label: str) -> np.ndarray:
    """Indices of a fixed, stratified ``count`` of these training images (``Recipe.train_images``)."""
    if not 10 * NUM_CLASSES <= count <= len(labels):
        raise ValueError(f"{label}: train_images={count}: needs between {10 * NUM_CLASSES} (ten a class) and the "
                         f"{len(labels)} training images there are")
    return stratified_share(labels, count / len(labels), SMALL_SETTING_SEED)


def train_eval_indices(labels: np.ndarray, count: int = TRAIN_EVAL_IMAGES, seed: int = TRAIN_EVAL_SEED) -> np.ndarray:
    """Sorted indices of ``count`` training images, the same share of each class, the same
    for every run on the same training set (all of them when there are fewer)."""
    if count >= len(labels):
        return np.arange(len(labels))
    return stratified_share(labels, count / len(labels), seed)


def class_sizes(labels: np.ndarray) -> list[int]:
    """Images per class present (labels as integers or one-hot)."""
    classes = labels.argmax(axis=1) if labels.ndim == 2 else np.asarray(labels)
    return [int(n) for n in np.unique(classes, return_counts=True)[1]]


def subset_class_sizes(subset: int) -> list[int]:
    """Images per class of ``load_cifar10(subset=...)``'s stratified training subset."""
    return [subset // NUM_CLASSES + (i < subset % NUM_CLASSES) for i in range(NUM_CLASSES)]


def split_sizes(count: int, fraction: float) -> tuple[int, int]:
    """(kept, held out) of a class of ``count`` images, rounded as ``data.stratified_share`` does."""
    held = int(round(fraction * count))
    return count - held, held


def smallest_split_class(fraction: float) -> int:
    """The fewest images a class needs for ``fraction`` (in (0, 1)) to hold out one and keep one."""
    count = max(2, math.floor(0.5 / min(fraction, 1 - fraction)))
    while min(split_sizes(count, fraction)) < 1:
        count += 1
    return count


def split_problem(sizes: Sequence[int], fraction: float, what: str = "this recipe") -> str | None:
    """Why ``fraction`` of classes of these sizes cannot be held out for validation. Each side
    must keep at least one image of every class: an empty validation set failed deep in
    Keras (``UnboundLocalError``), an empty training set was recorded as "diverged". A
    batch larger than the training side is fine (one partial batch an epoch)."""
    smallest = min(sizes)
    kept, held = split_sizes(smallest, fraction)
    if min(kept, held) >= 1:
        return None
    need = smallest_split_class(fraction)
    return (f"{what} holds out {fraction:g} of the training images for validation: {held} of a class of "
            f"{smallest} images, keeping {kept}. Each side needs at least one image of every class, so this split "
            f"needs {need} training images a class: a subset of at least {need * NUM_CLASSES}")


def splits_problem(experiments: Iterable[Experiment], sizes: Sequence[int]) -> str | None:
    """``split_problem`` for the first of these experiments whose split classes of these sizes
    cannot make (checked before anything trains); names how many others share its fraction."""
    by_fraction: dict[float, list[str]] = {}
    for exp in experiments:
        if exp.recipe.validation and exp.label not in by_fraction.get(exp.recipe.validation, []):
            by_fraction.setdefault(exp.recipe.validation, []).append(exp.label)
    for fraction, labels in by_fraction.items():
        what = f"experiment {labels[0]}" + (f" (and {len(labels) - 1} more)" if len(labels) > 1 else "")
        problem = split_problem(sizes, fraction, what)
        if problem:
            return problem
    return None
