"""Chapter illustrations on the bundled sample: the semantics each figure claims, its data, and its cost.

Each computation is timed with ``time.perf_counter``; it takes seconds on a 2-core CPU,
and the bound asserted is a generous 60 s so a slow CI machine does not fail.
Run with ``-s`` to see the measured times.
"""

import matplotlib

matplotlib.use("Agg")

import math
import time

import keras
import matplotlib.pyplot as plt
import numpy as np
import pytest
from keras import ops

from cifar_utils import illustrations as il
from cifar_utils.augment import Augment
from cifar_utils.data import CLASS_NAMES, load_cifar10
from cifar_utils.models import build_model

# Seconds. On TensorFlow (the default, and CI's) each takes seconds on a 2-core CPU (run with -s to see);
# JAX on a CPU compiles every op on its first use, which a first model build or forward pass pays.
TIME_LIMIT = 60.0 if keras.backend.backend() == "tensorflow" else 300.0


def timed(label, compute, *args, **kwargs):
    start = time.perf_counter()
    result = compute(*args, **kwargs)
    seconds = time.perf_counter() - start
    print(f"\n[timing] {label}: {seconds:.2f} s")
    assert seconds < TIME_LIMIT, f"{label} took {seconds:.1f} s"
    return result


@pytest.fixture(scope="module")
def data():
    return load_cifar10("sample")


@pytest.fixture(scope="module")
def scale_effect(data):
    (x_train, y_train), _ = data
    return timed("input_scale_effect", il.input_scale_effect, x_train, y_train)


@pytest.fixture(scope="module")
def distributions(data):
    (x_train, y_train), _ = data
    return timed("activation_distributions", il.activation_distributions, x_train, y_train)


@pytest.fixture(scope="module")
def spread(data):
    (x_train, _), _ = data
    return timed("activation_spread", il.activation_spread, x_train)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_class_examples_show_the_chosen_images_one_row_per_class(data):
    (x_train, y_train), _ = data
    chosen = timed("class_example_indices", il.class_example_indices, y_train, per_class=8, seed=0)
    assert chosen.shape == (10, 8) and (chosen >= 0).all()
    np.testing.assert_array_equal(y_train[chosen].argmax(-1), np.repeat(np.arange(10), 8).reshape(10, 8))
    np.testing.assert_array_equal(il.class_example_indices(y_train.argmax(-1), 8, 0), chosen)  # integer labels
    assert not np.array_equal(il.class_example_indices(y_train, 8, 1), chosen)
    fig = timed("plot_class_examples", il.plot_class_examples, x_train, y_train)
    shown = fig.axes[0].images[0].get_array()
    np.testing.assert_array_equal(shown, il.class_mosaic(x_train, chosen))
    np.testing.assert_array_equal(shown[34:66, 68:100], x_train[chosen[1, 2]])  # row 1, column 2, 2-pixel gaps
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == list(CLASS_NAMES)
    as_uint8 = np.round(x_train * 255).astype(np.uint8)
    np.testing.assert_allclose(il.class_mosaic(as_uint8, chosen), shown, atol=1 / 255)
    few = il.class_example_indices(np.arange(10), per_class=3)  # one image per class: the rest blank
    assert (few[:, 0] == np.arange(10)).all() and (few[:, 1:] == -1).all()


@pytest.mark.slow
def test_raw_pixels_scale_every_preactivation_by_255_and_start_with_a_huge_loss(scale_effect):
    spread, loss, backend = scale_effect
    assert backend == keras.backend.backend()
    assert list(spread.index) == ["conv1", "conv2", "conv3", "output"]
    # zero biases, ReLU and max-pooling are positively homogeneous: exactly x255 at initialisation
    np.testing.assert_allclose(spread["ratio"], 255.0, rtol=1e-4)
    assert (spread["scaled"] < 1).all() and (spread["raw"] > 10).all()
    assert loss.shape == (20, 2) and list(loss.index) == list(range(1, 21))
    assert abs(loss["scaled"].iloc[0] - math.log(10)) < 0.3  # /255: a near-uniform first guess
    assert loss["raw"].iloc[0] > 4 * loss["scaled"].iloc[0]  # raw: saturated softmax, huge loss
    assert loss["raw"].tail(5).min() > loss["scaled"].tail(5).max()  # still far behind after 20 steps
    # cross-entropy from the logits on every backend (models.py): measured 75.5 -> 5.8 on TensorFlow.
    # Computed from clipped probabilities (JAX's and PyTorch's default) it would stay capped near 14-16.
    assert loss["raw"].iloc[0] > 30 and loss["raw"].iloc[-1] < loss["raw"].iloc[0] / 3


@pytest.mark.slow
def test_input_scale_effect_is_deterministic_and_its_figure_plots_it(data, scale_effect):
    (x_train, y_train), _ = data
    again = il.input_scale_effect(x_train, y_train, steps=3)
    np.testing.assert_allclose(again.spread, scale_effect.spread, rtol=1e-6)
    np.testing.assert_allclose(again.loss.to_numpy(), scale_effect.loss.head(3).to_numpy(), rtol=1e-5)
    fig = il.plot_input_scale_effect(scale_effect)
    ax_std, ax_loss = fig.axes
    heights = [patch.get_height() for patch in ax_std.patches]
    np.testing.assert_allclose(heights, [*scale_effect.spread["raw"], *scale_effect.spread["scaled"]])
    np.testing.assert_allclose(ax_loss.lines[0].get_ydata(), scale_effect.loss["raw"])
    np.testing.assert_allclose(ax_loss.lines[1].get_ydata(), scale_effect.loss["scaled"])
    assert ax_std.get_yscale() == "log"


def conv(k, c_in, c_out):
    return k * k * c_in * c_out + c_out


def dense(n_in, n_out):
    return n_in * n_out + n_out


def test_parameter_counts_per_layer_match_the_architecture():
    frame = timed("parameter_counts", il.parameter_counts, (3, 4, 5, 6))
    # 5 blocks of conv + MaxPool(3, stride 2, same): 32 -> 16 -> 8 -> 4 -> 2 -> 1 pixel, so Flatten = last width
    expected = {
        3: [conv(3, 3, 32)] + [conv(3, 32, 32)] * 4 + [0, dense(32, 10)],
        4: [conv(3, 3, 16), conv(3, 16, 32), conv(3, 32, 64), conv(3, 64, 128), conv(3, 128, 256), 0,
            dense(256, 10)],
        5: [conv(3, 3, 32), conv(3, 32, 64), conv(3, 64, 64), conv(3, 64, 64), conv(3, 64, 128), 0, dense(128, 10)],
        6: [conv(3, 3, 32), conv(3, 32, 64), conv(3, 64, 64), conv(3, 64, 64), conv(3, 64, 128), dense(128, 128),
            dense(128, 10)],
    }
    assert list(frame.index) == ["conv1", "conv2", "conv3", "conv4", "conv5", "dense1", "output"]
    assert list(frame.columns) == [3, 4, 5, 6]
    for number, counts in expected.items():
        assert frame[number].tolist() == counts, number
        assert frame[number].sum() == build_model(number).count_params()
    assert frame.sum().tolist() == [38_218, 395_178, 168_394, 184_906]  # the study's table
    fig = il.plot_parameter_counts(frame)
    ax = fig.axes[0]
    widths = np.array([patch.get_width() for patch in ax.patches]).reshape(len(frame), 4)
    np.testing.assert_array_equal(widths, frame.to_numpy())
    assert [t.get_text() for t in ax.get_yticklabels()] == ["3. 6-layer model 1", "4. 6-layer model 2",
                                                            "5. 6-layer model 3", "6. 7-layer model 1 (basic)"]
    assert any("395,178" in t.get_text() and "conv5, 75 %" in t.get_text() for t in ax.texts)
    assert any("conv2, conv3, conv4, conv5, 24 % each" in t.get_text() for t in ax.texts)


@pytest.mark.slow
def test_dropout_mask_drops_about_rate_and_rescales_survivors(data):
    (x_train, _), _ = data
    example = timed("dropout_example", il.dropout_example, x_train[0], rate=0.3, seed=0)
    assert example.activation.shape == example.mask.shape == (16, 16, 32)  # conv1 -> pool of experiment 7
    assert example.path == "conv (ReLU) → max-pool"
    assert il.dropout_example(x_train[0], experiment=10).path == "conv → batch norm → ReLU → max-pool"
    keras.utils.set_random_seed(0)
    model = build_model(7)
    expected = ops.convert_to_numpy(model.layers[1](model.layers[0](x_train[:1])))[0]
    np.testing.assert_allclose(example.activation, expected, rtol=1e-5, atol=1e-6)
    assert abs(example.dropped_fraction - 0.3) < 0.03 and example.dropped_fraction == 1 - example.mask.mean()
    np.testing.assert_allclose(example.output, np.where(example.mask, example.activation / 0.7, 0), rtol=1e-6)
    keras_output = keras.random.dropout(ops.convert_to_tensor(example.activation[None]), 0.3, seed=0)
    np.testing.assert_allclose(example.output, ops.convert_to_numpy(keras_output)[0], rtol=1e-5, atol=1e-7)
    assert np.isclose(example.output.sum(), example.activation.sum(), rtol=0.1)  # expected sum kept
    again = il.dropout_example(x_train[0], rate=0.3, seed=0)
    np.testing.assert_array_equal(again.mask, example.mask)
    other = il.dropout_example(x_train[0], rate=0.5, seed=1)
    assert abs(other.dropped_fraction - 0.5) < 0.03

    fig = timed("plot_dropout_mask", il.plot_dropout_mask, x_train[0], rate=0.3, seed=0)
    channel = example.channels[0]
    images = [ax.images[0].get_array() for ax in fig.axes[:4]]
    np.testing.assert_allclose(images[0], x_train[0])
    np.testing.assert_allclose(images[1], example.activation[..., channel])
    np.testing.assert_array_equal(images[2], example.mask[..., channel])
    np.testing.assert_allclose(images[3], example.output[..., channel])
    assert f"{100 * example.dropped_fraction:.1f} % of all 8,192 units dropped" in fig._suptitle.get_text()
    assert "(conv (ReLU) → max-pool, 16x16x32 units)" in fig._suptitle.get_text()
    with pytest.raises(ValueError, match="no Dropout"):
        il.dropout_example(x_train[0], experiment=6)


def test_neighbour_correlation_measures_how_alike_adjacent_values_of_a_channel_are(data):
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(64, 64, 4))
    assert abs(il.neighbour_correlation(noise)) < 0.03  # independent values
    smooth = np.cumsum(np.cumsum(noise, axis=0), axis=1)  # a random surface: neighbours alike
    assert il.neighbour_correlation(smooth) > 0.9
    channels = np.stack([np.full((8, 8), 1.0), np.full((8, 8), 5.0)], axis=-1) + 0.01 * rng.normal(size=(8, 8, 2))
    assert abs(il.neighbour_correlation(channels)) < 0.5  # each channel centred on its own mean
    checkerboard = (2.0 * (np.indices((8, 8)).sum(axis=0) % 2) - 1)[..., None]
    assert il.neighbour_correlation(checkerboard) == pytest.approx(-1.0)  # every neighbour the opposite
    (x_train, _), _ = data
    example = il.dropout_example(x_train[0])
    assert il.neighbour_correlation(example.activation) > 0.5  # the chapter's map: dropping one value is weak


@pytest.mark.slow
def test_he_keeps_the_activation_spread_and_glorot_shrinks_it(spread):
    assert len(spread) == 3 * (15 + 5)
    change = il.spread_change(spread)
    plain, basic = il.PLAIN_NETWORK, il.BASIC_NETWORK
    # measured (seed 0, TensorFlow): plain glorot x0.005, he_uniform x0.61, he_normal x0.52;
    # basic network glorot x0.20, he_uniform x1.22, he_normal x1.11; seeds 1-4 stay inside these bounds
    for initializer in ("he_uniform", "he_normal"):
        assert 1 / 5 < change.loc[(plain, initializer), "ratio"] < 5
        assert 0.8 < change.loc[(basic, initializer), "ratio"] < 3
        assert change.loc[(plain, "glorot_uniform"), "ratio"] < change.loc[(plain, initializer), "ratio"] / 20
    assert change.loc[(plain, "glorot_uniform"), "ratio"] < 0.02
    assert change.loc[(basic, "glorot_uniform"), "ratio"] < 0.5
    glorot = spread[(spread["network"] == plain) & (spread["initializer"] == "glorot_uniform")]["std"].to_numpy()
    assert (np.diff(np.log(glorot)) < 0.2).all()  # it shrinks layer after layer (no layer grows by > 22 %)

    fig = il.plot_activation_spread(spread)
    ax_plain, ax_basic = fig.axes
    assert ax_plain.get_yscale() == "log" and len(ax_plain.lines) == 3 and len(ax_basic.lines) == 3
    np.testing.assert_allclose(ax_plain.lines[0].get_ydata(), glorot)
    assert "glorot_uniform" in ax_plain.lines[0].get_label()


@pytest.mark.slow
def test_activation_spread_is_deterministic_given_a_seed(data):
    (x_train, _), _ = data
    first = il.activation_spread(x_train, depth=4, basic=False, seed=3)
    np.testing.assert_array_equal(first["std"], il.activation_spread(x_train, depth=4, basic=False, seed=3)["std"])
    assert not np.array_equal(first["std"], il.activation_spread(x_train, depth=4, basic=False, seed=4)["std"])


@pytest.mark.slow
def test_batch_norm_holds_each_layer_at_mean_0_std_1_and_without_it_the_scale_drifts(distributions):
    summary, values = distributions
    assert len(summary) == 10 and list(summary["experiment"].unique()) == [6, 11]
    with_bn = summary[summary["experiment"] == 11].set_index("layer")
    without = summary[summary["experiment"] == 6].set_index("layer")
    deeper = ["conv2", "conv3", "conv4", "conv5"]
    assert (with_bn.loc[deeper, "channel_std"].between(0.95, 1.02)).all()
    assert (with_bn.loc[deeper, "channel_mean"].abs() < 0.05).all()
    assert (with_bn["mean"].abs() < 0.05).all() and (with_bn.loc[deeper, "std"].between(0.9, 1.02)).all()
    # conv1 on [0, 1] pixels varies less than batch norm's epsilon (1e-3): std sqrt(var / (var + eps)) < 1
    var = with_bn.loc["conv1", "bn_input_var"]
    assert var < 5e-3 and with_bn.loc["conv1", "channel_std"] < 0.95
    assert abs(with_bn.loc["conv1", "channel_std"] - math.sqrt(var / (var + 1e-3))) < 0.1
    # without batch norm: ReLU outputs (never negative), each layer at its own small scale, far from 1
    assert (without["std"] < 0.3).all() and (without["mean"] > 0).all()
    assert without.loc["conv5", "std"] < without.loc["conv1", "std"]  # measured 0.10 -> 0.03 (seed 0)
    assert without["bn_input_var"].isna().all()
    assert values.groupby(["experiment", "layer"]).size().eq(4000).all()
    assert values.loc[values["experiment"] == 6, "value"].min() >= 0

    fig = il.plot_activation_distributions(distributions)
    ax_without, ax_with = fig.axes
    assert len(ax_without.collections) >= 5 and "without batch norm" in ax_without.get_title()
    stds = [t.get_text() for t in ax_with.texts]
    assert stds == [f"std {s:.2f}" for s in with_bn["std"]]


@pytest.mark.slow
def test_augment_draws_differ_and_flip_with_a_fixed_seed(data):
    (x_train, _), _ = data
    image = x_train[3]
    draws = timed("augment_draws", il.augment_draws, image, draws=8, seed=0)
    assert draws.shape == (8, 32, 32, 3)
    for i in range(8):
        assert np.abs(draws[i] - image).max() > 0.05
        for j in range(i):
            assert np.abs(draws[i] - draws[j]).max() > 0.05
    # a horizontal gradient tells a flip from a shift: shifts move it by <= 3.2 pixels, a flip mirrors it
    ramp = np.broadcast_to(np.linspace(0, 1, 32, dtype="float32")[None, :, None], (32, 32, 3))
    left_half = il.augment_draws(ramp, draws=8, seed=0)[:, :, :16].mean(axis=(1, 2, 3))
    flipped = left_half > 0.5
    assert 1 <= flipped.sum() <= 7  # seed 0: at least one flipped and one not, in 8 draws
    # without shifts every draw is the image or its mirror, exactly
    plain = il.augment_draws(image, draws=8, seed=0, augment=Augment(shift=0.0, seed=0))
    mirrored = [np.allclose(d, image[:, ::-1], atol=1e-6) for d in plain]
    same = [np.allclose(d, image, atol=1e-6) for d in plain]
    assert all(m or s for m, s in zip(mirrored, same, strict=True)) and 1 <= sum(mirrored) <= 7
    np.testing.assert_array_equal(il.augment_draws(image, 8, seed=0), draws)  # deterministic

    fig = timed("plot_augment_draws", il.plot_augment_draws, image, draws=8, seed=0)
    shown = [ax.images[0].get_array() for ax in fig.axes if ax.images]
    assert len(shown) == 9
    np.testing.assert_allclose(shown[0], image)
    np.testing.assert_allclose(np.stack(shown[1:]), np.clip(draws, 0, 1))
    assert [ax.get_title() for ax in fig.axes[:2]] == ["original", "draw 1"]


@pytest.fixture(scope="module")
def bn_momentum(data):
    (x_train, y_train), (x_test, y_test) = data
    return timed("bn_momentum_effect", il.bn_momentum_effect, x_train, y_train, x_test, y_test)


@pytest.mark.slow
def test_running_statistics_lag_the_weights_with_momentum_099_and_keep_up_with_06(bn_momentum):
    accuracy = bn_momentum.accuracy
    assert list(accuracy.index) == list(range(0, 201, 10))
    assert list(accuracy.columns) == [(0.99, "inference"), (0.99, "training"), (0.6, "inference"), (0.6, "training")]
    assert (bn_momentum.train_images, bn_momentum.test_images, bn_momentum.batch_size) == (2000, 400, 64)
    assert bn_momentum.experiment == 11 and bn_momentum.backend == keras.backend.backend()
    assert accuracy.notna().all().all() and ((accuracy >= 0) & (accuracy <= 100)).all().all()
    # the momentum changes nothing in training: one set of weights, one training-mode line
    np.testing.assert_array_equal(accuracy[(0.99, "training")], accuracy[(0.6, "training")])
    assert accuracy[(0.6, "training")].iloc[-5:].mean() > 25  # it learns (measured 41 % at step 200, seed 0)
    lag = il.momentum_lag(bn_momentum)
    assert list(lag.index) == [0.99, 0.6]
    # measured (seed 0, TensorFlow): mean |training - inference| 27.5 points with 0.99, 1.7 with 0.6
    assert lag.loc[0.6, "mean_abs_gap"] < 5 and lag.loc[0.99, "mean_abs_gap"] > 10
    assert lag.loc[0.6, "mean_abs_gap"] < lag.loc[0.99, "mean_abs_gap"] / 4
    assert abs(lag.loc[0.6, "last_gap"]) < 6 < lag.loc[0.99, "last_gap"]
    first = accuracy.loc[10:100]  # the first 100 steps: 0.99's averages still hold over a third of their start
    assert (first[(0.99, "inference")] < first[(0.6, "inference")]).mean() >= 0.9
    np.testing.assert_allclose(lag.loc[0.99, "last_training"], accuracy[(0.99, "training")].iloc[-1])

    fig = il.plot_bn_momentum(bn_momentum)
    ax = fig.axes[0]
    assert len(ax.lines) == 5  # four curves and the chance line
    for line, column in zip(ax.lines, accuracy.columns, strict=False):
        np.testing.assert_allclose(line.get_ydata(), accuracy[column])
        np.testing.assert_array_equal(line.get_xdata(), accuracy.index)
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert "memory ≈ 100 steps" in labels[0] and "memory ≈ 2.5 steps" in labels[2]
    assert "the same line for every momentum" in labels[1]


@pytest.mark.slow
def test_replayed_running_statistics_are_what_keras_computes_with_each_momentum(data, bn_momentum):
    (x_train, y_train), (x_test, y_test) = data
    # one model trained with momentum 0 and its statistics averaged by hand, against one model per momentum
    replayed = il.bn_momentum_effect(x_train, y_train, x_test, y_test, steps=20)
    trained = timed("bn_momentum_effect(replay=False)", il.bn_momentum_effect, x_train, y_train, x_test, y_test,
                    steps=20, replay=False)
    one_image = 100 / replayed.test_images
    np.testing.assert_allclose(trained.accuracy, replayed.accuracy, atol=one_image + 1e-9)
    # the same seed, the same first 20 batches: the head of the 200-step run
    np.testing.assert_allclose(replayed.accuracy, bn_momentum.accuracy.loc[[0, 10, 20]], atol=one_image + 1e-9)
    with pytest.raises(ValueError, match="no batch-norm layer"):
        il.bn_momentum_effect(x_train, y_train, x_test, y_test, steps=1, experiment=6)
    with pytest.raises(ValueError, match="momenta"):
        il.bn_momentum_effect(x_train, y_train, x_test, y_test, momenta=(1.0,))
