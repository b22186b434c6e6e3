"""The Augment layer against the study's ImageDataGenerator semantics."""

import keras
import numpy as np
import pytest
from keras import ops

from cifar_utils import Augment
from cifar_utils.augment import shift_matrices


def reference_shift(image, dy, dx, flip):
    """ImageDataGenerator's shift: bilinear, nearest fill (np.interp clamps at the edges),
    then the horizontal flip."""
    h, w, _ = image.shape
    rows = np.stack([[np.interp(np.arange(h) - dy, np.arange(h), image[:, j, c]) for c in range(3)]
                     for j in range(w)], axis=0).transpose(2, 0, 1)  # (h, w, c)
    out = np.stack([[np.interp(np.arange(w) - dx, np.arange(w), rows[i, :, c]) for c in range(3)]
                    for i in range(h)], axis=0).transpose(0, 2, 1)
    return out[:, ::-1] if flip else out


def apply(images, dy, dx, flip):
    images = ops.convert_to_tensor(images)
    rows = shift_matrices(ops.convert_to_tensor(dy), 32)
    cols = shift_matrices(ops.convert_to_tensor(dx), 32, ops.convert_to_tensor(flip))
    out = ops.einsum("bjq,biqc->bijc", cols, ops.einsum("bip,bpqc->biqc", rows, images))
    return ops.convert_to_numpy(out)


def test_shift_matches_bilinear_nearest_reference():
    rng = np.random.default_rng(0)
    images = rng.random((4, 32, 32, 3)).astype("float32")
    dy = np.array([0.0, 1.5, -3.2, 2.7], "float32")
    dx = np.array([0.0, -2.25, 3.2, 0.6], "float32")
    flip = np.array([False, True, False, True])
    got = apply(images, dy, dx, flip)
    for i in range(4):
        np.testing.assert_allclose(got[i], reference_shift(images[i], dy[i], dx[i], flip[i]), atol=1e-5)


def test_identity_at_inference_and_in_predict():
    images = np.random.default_rng(1).random((8, 32, 32, 3)).astype("float32")
    layer = Augment(seed=0)
    np.testing.assert_array_equal(ops.convert_to_numpy(layer(images, training=False)), images)
    np.testing.assert_array_equal(ops.convert_to_numpy(layer(images)), images)
    model = keras.Sequential([keras.Input((32, 32, 3)), layer])
    np.testing.assert_array_equal(model.predict(images, verbose=0), images)


def impulse_shifts(layer, n=2000):
    """Track a single bright pixel through the layer: its centre of mass gives the shift."""
    images = np.zeros((n, 32, 32, 3), "float32")
    images[:, 16, 16, :] = 1.0
    out = ops.convert_to_numpy(layer(images, training=True))[..., 0]
    grid = np.arange(32, dtype="float32")
    mass = out.sum(axis=(1, 2))
    dy = (out.sum(axis=2) * grid).sum(1) / mass - 16
    dx = (out.sum(axis=1) * grid).sum(1) / mass - 16
    return out, mass, dy, dx


def test_shift_range_and_mass_preserved_away_from_borders():
    out, mass, dy, dx = impulse_shifts(Augment(seed=1, flip=False))
    np.testing.assert_allclose(mass, 1.0, atol=1e-5)  # bilinear weights sum to one
    for shift in (dy, dx):
        assert np.abs(shift).max() <= 3.2 + 1e-4  # +-10 % of 32 pixels
        assert np.abs(shift).max() > 3.0  # the range is used, not just its middle
        assert abs(shift.mean()) < 0.15
        assert 0.85 < shift.std() / (3.2 / np.sqrt(3)) < 1.15  # uniform: std = range / sqrt(3)
        fractional = np.abs(shift - np.round(shift))
        assert (fractional > 0.1).mean() > 0.5  # sub-pixel, not integer shifts
    assert np.corrcoef(dy, dx)[0, 1] ** 2 < 0.01  # independent axes


@pytest.mark.slow
def test_flip_ratio_is_one_half():
    images = np.zeros((4000, 32, 32, 3), "float32")
    images[:, :, :8, :] = 1.0  # left quarter bright; a flip moves it right
    out = ops.convert_to_numpy(Augment(shift=0.0, seed=2)(images, training=True))
    flipped = out[:, :, 24:, 0].mean(axis=(1, 2)) > 0.5
    assert 0.46 < flipped.mean() < 0.54
    np.testing.assert_allclose(out[~flipped], images[~flipped])
    np.testing.assert_allclose(out[flipped], images[flipped][:, :, ::-1])


def test_nearest_fill_replicates_the_edge():
    images = np.zeros((64, 32, 32, 3), "float32")
    images[:, :, 0, :] = 1.0  # left edge column bright
    out = ops.convert_to_numpy(Augment(flip=False, seed=3)(images, training=True))
    _, _, _, dx = impulse_shifts(Augment(flip=False, seed=3), n=64)
    moved_right = dx > 1.0
    assert moved_right.sum() > 5
    for image, shift in zip(out[moved_right], dx[moved_right], strict=True):
        # content moved right: the new left columns copy the edge column
        np.testing.assert_allclose(image[:, : int(shift), 0], 1.0, atol=1e-5)


@pytest.mark.slow
def test_trains_inside_a_model_and_serialises(tmp_path):
    model = keras.Sequential([keras.Input((32, 32, 3)), Augment(seed=0), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile("adam", "categorical_crossentropy")
    x = np.random.default_rng(0).random((16, 32, 32, 3)).astype("float32")
    y = np.eye(10, dtype="float32")[np.arange(16) % 10]
    model.fit(x, y, batch_size=5, epochs=1, verbose=0)  # ragged last batch on purpose
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.layers[0], Augment) and loaded.layers[0].shift == pytest.approx(0.1)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_rejects_bad_shift():
    with pytest.raises(ValueError, match="shift"):
        Augment(shift=1.5)
