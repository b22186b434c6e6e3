"""The study's augmentation, and the modern one, as model layers that run on the accelerator.

The study used ``ImageDataGenerator(width_shift_range=0.1, height_shift_range=0.1,
horizontal_flip=True)``: per image a uniform sub-pixel shift within +-10 % of each side,
bilinear interpolation, ``fill_mode='nearest'``, then a horizontal flip with p = 0.5.

Why not ``keras.layers.RandomTranslation``: its affine transform is a gather, and it
disables XLA for the whole model; measured on an H200 under JAX it made an epoch of the
VGG-like model go from 0.5 s to 48 s. A shift along one axis is a linear map, so here each
image gets two small interpolation matrices (rows and columns, the flip folded into the
column one) and the layer applies them as batched matmuls: cheap on every backend.

``Translate`` is the modern recipes' augmentation (Page's ResNet-9, airbench): whole-pixel
shifts up to +-``pixels`` with reflect padding, then a flip. Each shift is a permutation
with reflection, so the same batched matmuls apply them exactly.
"""

from __future__ import annotations

import keras
from keras import ops


def shift_matrices(shift, size: int, flip=None):
    """Per-image (size x size) bilinear interpolation matrices for a shift along one axis.

    Row ``i`` of matrix ``b`` samples the source at ``i - shift[b]`` clamped to the image,
    which is exactly bilinear interpolation with nearest-edge fill. With ``flip[b]`` true
    the output index is mirrored first (flip applied after the shift, as the generator did).
    """
    positions = ops.cast(ops.arange(size), "float32")[None, :]  # (1, size)
    if flip is not None:
        positions = ops.where(flip[:, None], size - 1 - positions, positions)
    source = ops.clip(positions - shift[:, None], 0.0, size - 1.0)  # (batch, size)
    lower = ops.floor(source)
    weight_upper = (source - lower)[..., None]
    lower = ops.cast(lower, "int32")
    upper = ops.minimum(lower + 1, size - 1)
    return (1.0 - weight_upper) * ops.one_hot(lower, size) + weight_upper * ops.one_hot(upper, size)


def reflect_matrices(shift, size: int, flip=None):
    """Per-image (size x size) selection matrices for a whole-pixel shift with reflect
    padding (numpy's ``mode="reflect"``: -1 reads 1, ``size`` reads ``size - 2``)."""
    positions = ops.arange(size)[None, :]
    if flip is not None:
        positions = ops.where(flip[:, None], size - 1 - positions, positions)
    source = ops.abs(positions - ops.cast(shift, "int32")[:, None])  # reflect below 0
    source = (size - 1) - ops.abs((size - 1) - source)  # reflect above size - 1
    return ops.one_hot(source, size)


def apply_matrices(images, rows, cols):
    """Rows then columns: (batch, H, H) and (batch, W, W) matrices on (batch, H, W, C) images."""
    shifted_rows = ops.einsum("bip,bpqc->biqc", rows, images)
    return ops.einsum("bjq,biqc->bijc", cols, shifted_rows)


def translate_images(images, dy, dx, flip=None):
    """Shift each image by whole pixels (dy, dx per image) with reflect padding, then flip.
    Test-time augmentation uses it with fixed shifts; ``Translate`` with random ones."""
    images = ops.cast(images, "float32")
    height, width = images.shape[1], images.shape[2]
    return apply_matrices(images, reflect_matrices(dy, height), reflect_matrices(dx, width, flip))


@keras.saving.register_keras_serializable(package="cifar_utils")
class Augment(keras.layers.Layer):
    """Random shift (uniform, +-``shift`` of each side) and horizontal flip, training only."""

    def __init__(self, shift: float = 0.1, flip: bool = True, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= shift < 1.0:
            raise ValueError(f"Augment shift must be a fraction in [0, 1), got {shift}")
        self.shift = float(shift)
        self.flip = bool(flip)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        if not training:
            return inputs
        images = ops.cast(inputs, "float32")
        shape = ops.shape(images)
        batch, height, width = shape[0], images.shape[1], images.shape[2]
        dy = keras.random.uniform((batch,), -self.shift, self.shift, seed=self.seed_generator) * height
        dx = keras.random.uniform((batch,), -self.shift, self.shift, seed=self.seed_generator) * width
        flip = None
        if self.flip:
            flip = keras.random.uniform((batch,), 0.0, 1.0, seed=self.seed_generator) < 0.5
        rows = shift_matrices(dy, height)  # (batch, H, H)
        cols = shift_matrices(dx, width, flip)  # (batch, W, W)
        return ops.cast(apply_matrices(images, rows, cols), inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "shift": self.shift, "flip": self.flip, "seed": self.seed}


@keras.saving.register_keras_serializable(package="cifar_utils")
class Translate(keras.layers.Layer):
    """Random whole-pixel translation up to +-``pixels`` (reflect padding) and horizontal
    flip, per image, training only."""

    def __init__(self, pixels: int = 4, flip: bool = True, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(pixels, int) or not 0 <= pixels < 16:
            raise ValueError(f"Translate pixels must be an integer in [0, 16), got {pixels!r}")
        self.pixels = pixels
        self.flip = bool(flip)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        if not training:
            return inputs
        batch = ops.shape(inputs)[0]
        dy = keras.random.randint((batch,), -self.pixels, self.pixels + 1, seed=self.seed_generator)
        dx = keras.random.randint((batch,), -self.pixels, self.pixels + 1, seed=self.seed_generator)
        flip = None
        if self.flip:
            flip = keras.random.uniform((batch,), 0.0, 1.0, seed=self.seed_generator) < 0.5
        return ops.cast(translate_images(inputs, dy, dx, flip), inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "pixels": self.pixels, "flip": self.flip, "seed": self.seed}
