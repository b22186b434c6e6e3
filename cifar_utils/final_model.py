"""The final model measured as it is used: in inference mode, with statistics that fit it.

Two figures the per-epoch history cannot give:

- **Training accuracy in inference mode.** Keras' ``accuracy`` in the history is a running
  mean over the epoch while the weights move, with dropout, augmentation and batch-norm
  batch statistics on. The train-test gap (overfitting) is a property of the final model,
  so both sides are measured the same way: the final model, in inference mode, with the
  recipe's test-time views, on a fixed stratified set of its own training images
  (``runs.splits.TRAIN_EVAL_IMAGES``).
- **Batch-norm statistics re-estimated** ("precise BN", Wu & Johnson 2021, *Rethinking
  "Batch" in BatchNorm*). At inference a batch-norm layer uses running averages
  (momentum 0.99 in Keras: a memory of about 100 steps) collected while the weights were
  changing, so they can lag the final weights. Recomputing them from the same fixed
  training images, no weight changed, and scoring the plain test images (no test-time
  views, so it costs one prediction, not one per view) shows how much of a batch-norm
  model's test score is the weights and how much the statistics. Written by hand: Keras
  has no such step.

Recipes with a weight average (EMA) need the same re-estimation to be correct at all:
the averaged weights never produced the running statistics, so the final model of such
a recipe is its averaged weights with statistics re-estimated here.
"""

from __future__ import annotations

import math

import keras
import numpy as np

STATISTICS_BATCH = 500
# An EMA's first weights must not outweigh the rest: the momentum is lowered until the
# step-1 weights count for at most this share of the average (short runs only).
EMA_FIRST_WEIGHT_SHARE = 1e-3


def batch_norm_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    """The model's batch-norm layers, in order (nested models included)."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found += batch_norm_layers(layer)
    return found


def _channel_moments(model: keras.Model, images: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (biased) variance per channel of ``model``'s output over all images and positions."""
    total, squares, count = 0.0, 0.0, 0
    for start in range(0, len(images), batch_size):
        out = keras.ops.convert_to_numpy(model(images[start:start + batch_size], training=False)).astype("float64")
        flat = out.reshape(-1, out.shape[-1])
        total, squares, count = total + flat.sum(axis=0), squares + (flat ** 2).sum(axis=0), count + len(flat)
    mean = total / count
    return mean, np.maximum(squares / count - mean ** 2, 0.0)


def reestimate_batch_norm(model: keras.Model, images: np.ndarray,
                          batch_size: int = STATISTICS_BATCH) -> list[tuple[np.ndarray, np.ndarray]]:
    """Replace every batch-norm layer's running mean and variance by those of its inputs on
    ``images``, in inference mode, layer by layer (each layer sees the inputs it will see
    at inference, its predecessors already re-estimated). No weight changes. Returns the
    old statistics, for ``restore_batch_norm``."""
    old = batch_norm_statistics(model)
    for layer in batch_norm_layers(model):
        if layer.axis not in (-1, len(layer.input.shape) - 1):
            raise ValueError(f"{layer.name}: batch norm over axis {layer.axis}; only channels-last is supported")
        prefix = keras.Model(model.inputs[0], layer.input)
        mean, variance = _channel_moments(prefix, images, batch_size)
        layer.moving_mean.assign(mean.astype(layer.moving_mean.dtype))
        layer.moving_variance.assign(variance.astype(layer.moving_variance.dtype))
    return old


def batch_norm_statistics(model: keras.Model) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every batch-norm layer's running (mean, variance), in order, as NumPy copies."""
    return [(keras.ops.convert_to_numpy(b.moving_mean), keras.ops.convert_to_numpy(b.moving_variance))
            for b in batch_norm_layers(model)]


def restore_batch_norm(model: keras.Model, statistics: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """Put back what ``reestimate_batch_norm`` replaced (or any ``batch_norm_statistics``)."""
    for layer, (mean, variance) in zip(batch_norm_layers(model), statistics, strict=True):
        layer.moving_mean.assign(mean)
        layer.moving_variance.assign(variance)


def ema_momentum(momentum: float, total_steps: int) -> float:
    """The recipe's EMA momentum, lowered for a run too short for it.

    Keras' optimizer EMA starts from the weights after step 1 and has no bias correction:
    after T steps those weights still count momentum^(T-1) (0.99 over 45 steps: 64 %, an
    untrained model). The momentum used is the recipe's, or the largest one whose step-1
    share is at most ``EMA_FIRST_WEIGHT_SHARE``, whichever is smaller. Experiment 20's full
    run (2,640 steps) keeps its 0.99."""
    if not momentum:
        return 0.0
    longest = math.exp(math.log(EMA_FIRST_WEIGHT_SHARE) / max(total_steps - 1, 1))
    return min(momentum, longest)
