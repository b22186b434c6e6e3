"""A ``Recipe`` made concrete: optimizer, learning-rate schedule, loss, and the final
evaluation with test-time augmentation. Keras has almost all of it built in; written here
is only what it lacks (a triangular schedule, multi-view prediction)."""

from __future__ import annotations

import math

import keras
import numpy as np

from .augment import translate_images
from .experiments import Recipe
from .final_model import ema_momentum

# Views of test-time augmentation: (flip, dy, dx). "flip_shift" adds one-pixel shifts
# (reflect padding) of both the image and its mirror, as airbench's multi-crop TTA does.
TTA_VIEWS = {
    "none": ((False, 0, 0),),
    "flip": ((False, 0, 0), (True, 0, 0)),
    "flip_shift": tuple((flip, d, d) for flip in (False, True) for d in (0, 1, -1)),
}
# How much each view counts, in the order above. airbench94 weighs its views the same way:
# half on the image and its mirror, half on the four shifted views.
TTA_WEIGHTS = {
    "none": (1.0,),
    "flip": (0.5, 0.5),
    "flip_shift": tuple(0.25 if d == 0 else 0.125 for _flip, d, _ in TTA_VIEWS["flip_shift"]),
}


@keras.saving.register_keras_serializable(package="cifar_utils")
class TriangularSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from ``start_fraction`` x peak to the peak over ``warmup_steps``,
    then linear decay to ``final_fraction`` x peak at ``total_steps`` (airbench's shape)."""

    def __init__(self, peak: float, total_steps: int, warmup_steps: int, final_fraction: float = 0.0,
                 start_fraction: float = 0.2):
        self.peak, self.total_steps, self.warmup_steps = float(peak), int(total_steps), int(warmup_steps)
        self.final_fraction, self.start_fraction = float(final_fraction), float(start_fraction)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warm = max(self.warmup_steps, 1)
        rise = self.start_fraction + (1.0 - self.start_fraction) * step / warm
        fall_steps = max(self.total_steps - self.warmup_steps, 1)
        fall = 1.0 - (1.0 - self.final_fraction) * keras.ops.minimum((step - warm) / fall_steps, 1.0)
        return self.peak * keras.ops.where(step < warm, rise, fall)

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps,
                "final_fraction": self.final_fraction, "start_fraction": self.start_fraction}


def learning_rate(recipe: Recipe, steps_per_epoch: int, epochs: int):
    """A float for the constant schedule, else a per-step ``LearningRateSchedule``."""
    total = max(steps_per_epoch * epochs, 1)
    warmup = int(round(recipe.warmup * total))
    if recipe.schedule == "constant":
        return recipe.learning_rate
    if recipe.schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=recipe.learning_rate / 10 if warmup else recipe.learning_rate,
            decay_steps=max(total - warmup, 1), warmup_target=recipe.learning_rate if warmup else None,
            warmup_steps=warmup)
    return TriangularSchedule(recipe.learning_rate, total, warmup, recipe.final_lr_fraction)


def make_optimizer(recipe: Recipe, steps_per_epoch: int, epochs: int) -> keras.optimizers.Optimizer:
    """The recipe's optimizer with its schedule, weight decay and weight EMA (its momentum
    lowered for runs too short for it: ``final_model.ema_momentum``)."""
    common = {"learning_rate": learning_rate(recipe, steps_per_epoch, epochs)}
    if recipe.weight_decay:
        common["weight_decay"] = recipe.weight_decay
    if recipe.ema:
        common.update(use_ema=True, ema_momentum=ema_momentum(recipe.ema, steps_per_epoch * epochs))
    if recipe.optimizer == "sgd":
        return keras.optimizers.SGD(momentum=recipe.momentum, nesterov=recipe.nesterov, **common)
    if recipe.optimizer == "adamw":
        return keras.optimizers.AdamW(**common)
    return keras.optimizers.Adam(**common)


def make_loss(recipe: Recipe) -> keras.losses.Loss:
    """Cross-entropy on the networks' logits (see ``models``), with the recipe's smoothing."""
    return keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=recipe.label_smoothing)


def steps_per_epoch(train_size: int, batch_size: int) -> int:
    return math.ceil(train_size / batch_size)


def tta_views(images: np.ndarray, tta: str = "none") -> list[tuple[np.ndarray, float]]:
    """The test-time views of ``images`` (``TTA_VIEWS``: flips and whole-pixel shifts with
    reflect padding) with the weight each gets (``TTA_WEIGHTS``); ``none``: the images."""
    views = []
    for (flip, dy, dx), weight in zip(TTA_VIEWS[tta], TTA_WEIGHTS[tta], strict=True):
        if (flip, dy, dx) == (False, 0, 0):
            views.append((images, weight))
            continue
        shifts = np.full(len(images), dy, "int32"), np.full(len(images), dx, "int32")
        views.append((keras.ops.convert_to_numpy(translate_images(images, *shifts, np.full(len(images), flip))),
                      weight))
    return views


def predict_views(model: keras.Model, images: np.ndarray, tta: str = "none", batch_size: int = 512) -> np.ndarray:
    """Class probabilities (the softmax of the networks' logits) averaged over the
    test-time views with their ``TTA_WEIGHTS`` (one view: plain ``predict``)."""
    return predict_each_view(model, images, tta, batch_size)[0]


def predict_each_view(model: keras.Model, images: np.ndarray, tta: str = "none",
                      batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(the views' weighted average, the plain view's own probabilities): one pass over the
    views gives both the recipe's test score and the score without test-time views."""
    total = plain = None
    for (view, weight), key in zip(tta_views(images, tta), TTA_VIEWS[tta], strict=True):
        logits = model.predict(view, batch_size=batch_size, verbose=0)
        probabilities = keras.ops.convert_to_numpy(keras.ops.softmax(logits, axis=-1))
        if key == (False, 0, 0):
            plain = probabilities
        total = weight * probabilities if total is None else total + weight * probabilities
    return total, plain


def evaluate_views(model: keras.Model, images: np.ndarray, labels: np.ndarray, tta: str = "none",
                   batch_size: int = 512) -> tuple[float, float]:
    """(cross-entropy loss, accuracy in [0, 1]) of the averaged prediction."""
    return scores(predict_views(model, images, tta, batch_size), labels)


def scores(probabilities: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(cross-entropy loss, accuracy in [0, 1]); the loss is the plain one (no label
    smoothing), so it compares across recipes."""
    truth = labels.argmax(axis=1)
    loss = float(-np.mean(np.log(np.clip(probabilities[np.arange(len(truth)), truth], 1e-7, 1.0))))
    return loss, float(np.mean(probabilities.argmax(axis=1) == truth))
