"""The training batches and random draws: functions of (seed, epoch), fed without stalls.

Why not NumPy arrays straight into ``model.fit``: on TensorFlow, Keras' array adapter
builds a new ``tf.data`` iterator over the whole training array at every epoch, and on
2 CPU cores that stalled 7-10 s before the first batch of some epochs (experiment 2,
whose epoch is about 11 s: docs/benchmarks.md). Its shuffle is also drawn from the
backend's own random state, so a run resumed from a checkpoint saw other orders than the
uninterrupted run from there on.

``EpochBatches`` is a ``keras.utils.PyDataset`` whose batch ``i`` is cut from
``epoch_order(seed, epoch)``, and ``EpochDraws`` is the callback that tells it the epoch
(``fit``'s own count, so a run resumed at epoch 7 draws epoch 7's order) and sets every
layer's seed generator from (seed, epoch) as the epoch begins: Keras' ``save_weights``
leaves the seed generators' states out of a checkpoint, so a resumed run used to draw
other dropout masks and augmentations than the uninterrupted one. With both, a resumed run
ends in the same model, to the bit, on every backend (tests/test_batches.py).
"""

from __future__ import annotations

import keras
import numpy as np


def epoch_order(seed: int, epoch: int, size: int) -> np.ndarray:
    """The training images' order in ``epoch`` (counted from 0) of a run with ``seed``."""
    return np.random.default_rng([seed, epoch]).permutation(size)


class EpochBatches(keras.utils.PyDataset):
    """The training batches of one epoch, in the (seed, epoch) order; ``EpochDraws`` sets
    ``epoch`` as each epoch begins.

    ``on_device``: copy the arrays to the backend's device once and cut each batch there
    with ``keras.ops.take`` (on a GPU this saves a host-to-device copy per batch); the
    batches are the same either way.
    """

    def __init__(self, x, y, batch_size: int, seed: int, on_device: bool = False):
        super().__init__()
        if len(x) != len(y):
            raise ValueError(f"EpochBatches: {len(x)} images but {len(y)} labels")
        if batch_size < 1:
            raise ValueError(f"EpochBatches: batch_size must be >= 1, got {batch_size}")
        self.on_device = on_device
        self.x, self.y = (keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(y)) if on_device else (x, y)
        self.size, self.batch_size, self.seed = len(x), batch_size, seed
        self.epoch = 0
        self._order_of: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return -(-self.size // self.batch_size)

    def order(self) -> np.ndarray:
        if self._order_of is None or self._order_of[0] != self.epoch:
            self._order_of = (self.epoch, epoch_order(self.seed, self.epoch, self.size))
        return self._order_of[1]

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range 0..{len(self) - 1}")
        rows = self.order()[index * self.batch_size:(index + 1) * self.batch_size]
        if self.on_device:
            return keras.ops.take(self.x, rows, axis=0), keras.ops.take(self.y, rows, axis=0)
        return self.x[rows], self.y[rows]


class EpochDraws(keras.callbacks.Callback):
    """As each epoch begins: tells ``batches`` the epoch, and sets the state of every seed
    generator in the model (dropout, augmentation) from (seed, epoch)."""

    def __init__(self, seed: int, batches: EpochBatches | None = None):
        super().__init__()
        self.seed, self.batches = seed, batches

    def on_epoch_begin(self, epoch, logs=None):
        if self.batches is not None:
            self.batches.epoch = epoch
        states = [v for v in self.model.non_trainable_variables if v.path.endswith("seed_generator_state")]
        draws = np.random.default_rng([self.seed, epoch, 1]).integers(0, 2**31 - 1, size=len(states))
        for state, draw in zip(states, draws, strict=True):
            state.assign(np.array([draw, 0], dtype=keras.backend.standardize_dtype(state.dtype)))


class DeviceTestBatches(keras.utils.PyDataset):
    """The test images in order, cut on the device (``model.fit`` would copy device arrays
    back to the host on JAX)."""

    def __init__(self, x, y, batch_size: int):
        super().__init__()
        self.x, self.y = keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(y)
        self.size, self.batch_size = len(x), batch_size

    def __len__(self) -> int:
        return -(-self.size // self.batch_size)

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range 0..{len(self) - 1}")
        rows = np.arange(index * self.batch_size, min((index + 1) * self.batch_size, self.size))
        return keras.ops.take(self.x, rows, axis=0), keras.ops.take(self.y, rows, axis=0)


def fit_data(train, test, batch_size: int, seed: int, fit_batch: int | None = None,
             eval_batch_size: int | None = None, on_device: bool = False) -> dict:
    """The data arguments of ``model.fit``; pass ``EpochDraws(seed, result["x"])`` among its
    callbacks. ``fit_batch``: the batch ``backend.prepare_steps`` returned (several steps'
    worth when JAX fuses them; the order is the same)."""
    (x, y), (x_test, y_test) = train, test
    batches = EpochBatches(x, y, fit_batch or batch_size, seed, on_device)
    eval_batch = eval_batch_size or batch_size
    if on_device:
        return {"x": batches, "shuffle": False, "validation_data": DeviceTestBatches(x_test, y_test, eval_batch)}
    return {"x": batches, "shuffle": False, "validation_data": (x_test, y_test), "validation_batch_size": eval_batch}
