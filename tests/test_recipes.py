"""Recipes made concrete: schedules, optimizers, test-time augmentation, the fast network's parts."""

import dataclasses
import importlib.util
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from keras import ops

from cifar_utils import build_model, get_experiment, load_cifar10
from cifar_utils.augment import Translate, translate_images
from cifar_utils.experiments import MODERN_RECIPE, STUDY_RECIPE, Recipe
from cifar_utils.fastnet import PartialIdentity, PatchWhitening, image_patches, whitening_weights
from cifar_utils.recipes import TTA_VIEWS, TriangularSchedule, learning_rate, make_optimizer, predict_views


@pytest.fixture(scope="module")
def sample():
    return load_cifar10("sample")


def test_triangular_schedule_shape():
    schedule = TriangularSchedule(peak=1.0, total_steps=100, warmup_steps=20, final_fraction=0.1)
    values = np.array([float(schedule(step)) for step in range(101)])
    assert values[0] == pytest.approx(0.2) and values[20] == pytest.approx(1.0)
    assert np.all(np.diff(values[:21]) > 0) and np.all(np.diff(values[20:]) < 0)
    assert values[100] == pytest.approx(0.1) and values.argmax() == 20
    restored = TriangularSchedule.from_config(schedule.get_config())
    assert float(restored(57)) == pytest.approx(float(schedule(57)))


def test_cosine_warmup_peaks_at_the_recipe_rate():
    recipe = Recipe(optimizer="sgd", learning_rate=0.1, schedule="cosine", warmup=0.1)
    schedule = learning_rate(recipe, steps_per_epoch=10, epochs=10)  # 100 steps, 10 warm-up
    values = np.array([float(schedule(step)) for step in range(101)])
    assert values[10] == pytest.approx(0.1, rel=1e-4) and values.argmax() == 10
    assert values[0] < 0.05 and values[100] < 1e-3
    assert learning_rate(STUDY_RECIPE, 10, 10) == 1e-3  # the study's: a constant


def test_optimizers_carry_the_recipe():
    recipe = dataclasses.replace(MODERN_RECIPE, ema=0.99)
    sgd = make_optimizer(recipe, steps_per_epoch=88, epochs=30)  # experiment 20's full run: 2,640 steps
    assert isinstance(sgd, keras.optimizers.SGD) and sgd.nesterov and sgd.momentum == recipe.momentum
    assert sgd.use_ema and sgd.ema_momentum == 0.99 and sgd.weight_decay == recipe.weight_decay
    short = make_optimizer(recipe, steps_per_epoch=10, epochs=3)  # 30 steps: 0.99 would keep 75 % step-1 weights
    assert short.use_ema and short.ema_momentum ** 29 == pytest.approx(1e-3)
    assert not make_optimizer(dataclasses.replace(recipe, ema=0.0), 10, 3).use_ema
    adam = make_optimizer(STUDY_RECIPE, 10, 3)
    assert isinstance(adam, keras.optimizers.Adam) and not adam.use_ema and adam.weight_decay is None
    assert float(adam.learning_rate) == pytest.approx(1e-3)


def test_translate_matches_numpy_reflect_padding():
    rng = np.random.default_rng(0)
    images = rng.random((3, 32, 32, 3)).astype("float32")
    dy, dx, flip = np.array([2, -3, 0]), np.array([-1, 4, 0]), np.array([False, True, False])
    got = ops.convert_to_numpy(translate_images(images, dy, dx, flip))
    for i in range(3):
        padded = np.pad(images[i], ((4, 4), (4, 4), (0, 0)), mode="reflect")
        expected = padded[4 - dy[i]:36 - dy[i], 4 - dx[i]:36 - dx[i]]
        np.testing.assert_array_equal(got[i], expected[:, ::-1] if flip[i] else expected)


def test_translate_layer_draws_whole_pixel_shifts_per_image():
    images = np.zeros((400, 32, 32, 3), "float32")
    images[:, 16, 16, :] = 1.0
    out = ops.convert_to_numpy(Translate(2, flip=False, seed=0)(images, training=True))[..., 0]
    rows, cols = np.unravel_index(out.reshape(400, -1).argmax(axis=1), (32, 32))
    assert np.allclose(out.sum(axis=(1, 2)), 1.0)  # a permutation: nothing blurred or lost
    assert set(rows - 16) == set(range(-2, 3)) == set(cols - 16)  # every shift in +-2 occurs
    np.testing.assert_array_equal(ops.convert_to_numpy(Translate(2, seed=0)(images, training=False)), images)


def test_flip_tta_averages_the_image_and_its_mirror(sample):
    model = build_model(2)
    images = sample[1][0][:16]
    def probabilities(x):  # the networks output logits
        return ops.convert_to_numpy(ops.softmax(model.predict(x, verbose=0), axis=-1))
    plain, mirrored = probabilities(images), probabilities(images[:, :, ::-1])
    np.testing.assert_allclose(predict_views(model, images, "flip"), (plain + mirrored) / 2, atol=1e-5)
    np.testing.assert_allclose(predict_views(model, images, "none"), plain, atol=1e-6)
    assert len(TTA_VIEWS["flip_shift"]) == 6


@pytest.mark.slow
def test_whitening_decorrelates_patches(sample):
    train, held_out = sample[0][0][:1000], sample[1][0]
    kernel, bias = whitening_weights(train, size=2)
    assert kernel.shape == (2, 2, 3, 24) and bias.shape == (24,)
    layer = PatchWhitening(2)
    layer.adapt(train)
    out = ops.convert_to_numpy(layer(held_out)).reshape(-1, 24)[:, :12]  # the + half; the - half mirrors it
    covariance = np.cov(out, rowvar=False)
    # unit variance along the dominant directions, no correlation between filters
    assert np.allclose(np.diag(covariance)[:6], 1.0, atol=0.25)
    off = covariance - np.diag(np.diag(covariance))
    assert np.abs(off).max() < 0.2 * np.diag(covariance).max()
    assert abs(out.mean()) < 0.2  # centred
    # the layer equals its definition: patches projected on the filters
    patches = image_patches(held_out[:2], 2)
    expected = patches @ kernel.reshape(12, 24) + bias
    np.testing.assert_allclose(ops.convert_to_numpy(layer(held_out[:2])).reshape(-1, 24), expected, atol=1e-3)
    assert not layer.trainable_weights  # frozen


def test_partial_identity_starts_as_a_pass_through():
    kernel = ops.convert_to_numpy(PartialIdentity(seed=0)((3, 3, 8, 12)))
    conv = keras.layers.Conv2D(12, 3, padding="same", use_bias=False)
    conv.build((None, 6, 6, 8))
    conv.kernel.assign(kernel)
    x = np.random.default_rng(0).random((2, 6, 6, 8)).astype("float32")
    out = ops.convert_to_numpy(conv(x))
    np.testing.assert_allclose(out[..., :8], x, atol=1e-6)  # the first 8 filters pass their channel on
    assert np.abs(kernel[..., 8:]).max() > 0 and np.abs(kernel[..., 8:]).max() <= 1 / np.sqrt(72) + 1e-6
    with pytest.raises(ValueError, match="odd square"):
        PartialIdentity()((2, 2, 3, 4))


@pytest.mark.slow
def test_new_networks_learn_on_real_images(sample, tmp_path):
    """The DNN baseline and the fast network learn above chance in a few epochs on real images."""
    from cifar_utils import run_experiment

    data = load_cifar10("sample", subset=1000)  # 3 epochs of the fast network: 27.5 % here, chance is 10 %
    fast = run_experiment(21, epochs=3, batch_size=64, data=data, out_dir=tmp_path)
    assert fast.evaluated_on == "validation" and fast.params["validation_size"] == 100
    assert fast.params["train_size"] == 900 and fast.test_acc > 20.0, fast.history["val_accuracy"]
    assert np.isnan(fast.best_test_acc) and fast.best_val_acc >= fast.history["val_accuracy"][-1] * 100 - 1e-6
    dense = run_experiment(19, epochs=4, batch_size=128, data=sample, out_dir=tmp_path)
    assert dense.evaluated_on == "test" and dense.test_acc > 15.0


BACKEND_CHECK = textwrap.dedent("""
    import numpy as np
    from cifar_utils import build_model, load_cifar10
    from cifar_utils.models import compile_model, prepare_model
    from cifar_utils.experiments import get_experiment
    from cifar_utils.recipes import predict_views

    (x, y), (xt, yt) = load_cifar10("sample", subset=200)
    for number in (21,):  # the fast network, its whitening, identity init, schedule and multi-view TTA
        exp = get_experiment(number)
        model = build_model(exp, seed=0)
        prepare_model(model, x)
        compile_model(model, exp.recipe, steps_per_epoch=4, epochs=1)
        history = model.fit(x, y, batch_size=64, epochs=1, verbose=0)
        probabilities = predict_views(model, xt[:8], exp.recipe.tta)
        assert probabilities.shape == (8, 10) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-4)
        assert np.isfinite(history.history["loss"][0])
        print(number, model.count_params())
""")


@pytest.mark.slow
@pytest.mark.parametrize("backend", [
    "jax",
    pytest.param("torch", marks=pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                                   reason="PyTorch is not installed (not in requirements.txt: "
                                                          "pip install torch==2.13.0 to run this)")),
])
def test_new_recipes_and_networks_run_on_other_backends(backend):
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", BACKEND_CHECK], capture_output=True, text=True, env=env,
                            timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    counts = dict(line.split() for line in result.stdout.splitlines() if line[:2] == "21")
    assert counts == {"21": str(build_model(21).count_params())}


@pytest.mark.slow
def test_ema_weights_are_the_final_model(sample):
    """Keras swaps the moving average into the weights at the end of fit: the final model is the EMA."""
    exp = get_experiment(2).vary(ema=0.5)  # the smallest network: the EMA is the optimizer's, any model will do
    model = build_model(exp, seed=0)
    from cifar_utils.models import compile_model

    compile_model(model, exp.recipe, steps_per_epoch=4, epochs=1)
    (x, y), _ = sample
    model.fit(x[:256], y[:256], batch_size=64, epochs=1, verbose=0)
    averages = [ops.convert_to_numpy(v) for v in model.optimizer._model_variables_moving_average]
    for variable, average in zip(model.trainable_variables, averages, strict=True):
        np.testing.assert_allclose(ops.convert_to_numpy(variable), average, atol=1e-6)
