"""The parts of the airbench-style network that Keras does not have: a patch-whitening
first layer computed from the training images, and identity ("Dirac") initialisation.

Both come from Keller Jordan's airbench94 ablations, where each saved epochs: whitening
gives the first layer decorrelated, unit-variance inputs from the start (34 -> 21 epochs
to 94 %), and identity initialisation lets each conv start as a pass-through, so a deep
stack trains like a shallow one at first (21 -> 18). The third piece is a batch-norm bias
that learns 64 times faster than the other weights (18 -> 13.5 epochs): Keras has no
per-variable learning rate before ``MultiOptimizer`` (3.15), so ``ScaledBias`` gets the
same effect from any optimizer by how it stores the bias. Written here from their
description.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

WHITENING_IMAGES = 5000  # images the patch statistics are estimated from
# Added to the eigenvalues so that tiny directions are not blown up into noise; airbench's
# value, in its units: pixels normalised to unit variance per channel. Images here are in
# [0, 1] (variance ~0.06), so it is scaled by the pixel variance: used as it was, in [0, 1]
# units, it was 16 times too strong and half of the 12 output directions of a 2x2 patch
# stayed at 1-40 % of unit variance instead of being whitened.
WHITENING_EPS = 5e-4
BN_BIAS_LR_SCALE = 64.0  # airbench94's bias_scaler: batch-norm biases learn 64x faster


def image_patches(images: np.ndarray, size: int) -> np.ndarray:
    """Every ``size`` x ``size`` patch of every image (valid positions), flattened in the
    (row, column, channel) order of a Keras conv kernel."""
    images = np.asarray(images, dtype=np.float64)
    windows = np.lib.stride_tricks.sliding_window_view(images, (size, size), axis=(1, 2))  # N,H',W',C,s,s
    return windows.transpose(0, 1, 2, 4, 5, 3).reshape(-1, size * size * images.shape[-1])


def whitening_weights(images: np.ndarray, size: int, eps: float = WHITENING_EPS) -> tuple[np.ndarray, np.ndarray]:
    """Kernel and bias of a conv whose outputs are the image patches projected on the
    eigenvectors of their covariance, each scaled to unit variance, and the negatives of
    those (so a ReLU/GELU after it loses no sign). Shapes (size, size, C, 2K) and (2K,).

    ``eps`` is in units of per-channel-standardised pixels (airbench's), whatever the scale
    of ``images``: it damps only the directions with almost no variance (on this JPEG copy,
    the finest colour detail that 4:2:0 chroma subsampling removed)."""
    patches = image_patches(images, size)
    mean = patches.mean(axis=0)
    covariance = np.cov(patches - mean, rowvar=False)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)  # ascending
    order = np.argsort(eigenvalues)[::-1]
    pixel_variance = float(np.asarray(images, dtype=np.float64).reshape(-1, images.shape[-1]).var(axis=0).mean())
    filters = eigenvectors[:, order] / np.sqrt(eigenvalues[order] + eps * pixel_variance)  # one column per filter
    filters = np.concatenate([filters, -filters], axis=1)
    channels = images.shape[-1]
    kernel = filters.reshape(size, size, channels, -1)
    bias = -(mean @ filters)  # zero-mean outputs
    return kernel.astype("float32"), bias.astype("float32")


@keras.saving.register_keras_serializable(package="cifar_utils")
class PatchWhitening(keras.layers.Layer):
    """A frozen ``size`` x ``size`` conv (valid padding) that whitens image patches.

    Call ``adapt(x_train)`` once before training (``run_experiment`` does): the filters are
    the eigenvectors of the patch covariance of the first 5,000 training images. Its
    weights are not trained, but they are saved and restored with the model."""

    def __init__(self, size: int = 2, channels: int = 3, **kwargs):
        super().__init__(**kwargs)
        self.size, self.channels = int(size), int(channels)
        self.filters = 2 * self.size * self.size * self.channels

    def build(self, input_shape):
        if input_shape[-1] != self.channels:
            raise ValueError(f"PatchWhitening expects {self.channels} input channels, got {input_shape[-1]}")
        self.kernel = self.add_weight(shape=(self.size, self.size, self.channels, self.filters),
                                      initializer="zeros", trainable=False, name="kernel")
        self.bias = self.add_weight(shape=(self.filters,), initializer="zeros", trainable=False, name="bias")

    def adapt(self, images: np.ndarray) -> None:
        if not self.built:
            self.build((None, None, None, self.channels))
        kernel, bias = whitening_weights(np.asarray(images)[:WHITENING_IMAGES], self.size)
        self.kernel.assign(kernel)
        self.bias.assign(bias)

    def call(self, inputs):
        return ops.conv(inputs, self.kernel, strides=1, padding="valid") + self.bias

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        shrink = self.size - 1
        return (batch, None if height is None else height - shrink, None if width is None else width - shrink,
                self.filters)

    def get_config(self):
        return {**super().get_config(), "size": self.size, "channels": self.channels}


@keras.saving.register_keras_serializable(package="cifar_utils")
class PartialIdentity(keras.initializers.Initializer):
    """A conv kernel whose first ``min(in, out)`` filters start as the identity (each
    passes its own input channel through, unchanged), the others as PyTorch's default
    uniform draw (Keras ``VarianceScaling(1/3, "fan_in", "uniform")``)."""

    def __init__(self, seed: int | None = None):
        self.seed = seed

    def __call__(self, shape, dtype=None):
        if len(shape) != 4 or shape[0] != shape[1] or shape[0] % 2 == 0:
            raise ValueError(f"PartialIdentity needs an odd square conv kernel (k, k, in, out), got {shape}")
        size, _, inputs, outputs = shape
        base = keras.initializers.VarianceScaling(1 / 3, "fan_in", "uniform", seed=self.seed)(shape, dtype)
        identity = np.zeros(shape, dtype="float32")
        keep = np.ones(shape, dtype="float32")
        n = min(inputs, outputs)
        identity[size // 2, size // 2, np.arange(n), np.arange(n)] = 1.0
        keep[..., :n] = 0.0
        return base * ops.convert_to_tensor(keep, dtype) + ops.convert_to_tensor(identity, dtype)

    def get_config(self):
        return {"seed": self.seed}


@keras.saving.register_keras_serializable(package="cifar_utils")
class ScaledBias(keras.layers.Layer):
    """A per-channel bias that trains ``lr_scale`` times faster than the other weights,
    under any optimizer: it is stored divided by ``sqrt(lr_scale)`` and multiplied back in
    ``call``, so its gradient is ``sqrt(lr_scale)`` times larger and each step moves it
    ``lr_scale`` times further (exact for SGD with momentum; decoupled weight decay shrinks
    it by the same fraction as every other weight, as in airbench). Follows a batch norm
    built with ``center=False``: the pair is airbench's BN with a fast bias."""

    def __init__(self, lr_scale: float = BN_BIAS_LR_SCALE, **kwargs):
        super().__init__(**kwargs)
        if lr_scale <= 0:
            raise ValueError(f"ScaledBias lr_scale must be positive, got {lr_scale}")
        self.lr_scale = float(lr_scale)

    def build(self, input_shape):
        self.bias = self.add_weight(shape=(input_shape[-1],), initializer="zeros", name="bias")

    def call(self, inputs):
        return inputs + ops.cast(self.bias, inputs.dtype) * float(np.sqrt(self.lr_scale))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "lr_scale": self.lr_scale}
