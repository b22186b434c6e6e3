"""Chapter 6's ingredient figures: each one's data is what the training code uses, and the figure plots it."""

import matplotlib

matplotlib.use("Agg")

import math

import keras
import matplotlib.pyplot as plt
import numpy as np
import pytest

from cifar_utils import ingredients as ing
from cifar_utils.chapter import Chapter
from cifar_utils.course import run_settings
from cifar_utils.data import load_cifar10
from cifar_utils.experiments import STUDY_RECIPE, get_experiment
from cifar_utils.fastnet import PatchWhitening
from cifar_utils.models import build_model
from cifar_utils.recipes import TTA_WEIGHTS, make_optimizer, predict_views, steps_per_epoch
from cifar_utils.runs.identity import plan_run


@pytest.fixture(scope="module")
def data():
    return load_cifar10("sample")


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.mark.slow
@pytest.mark.parametrize("number, steps, epochs", [(20, 8, 30), (21, 5, 12)])
def test_the_schedule_curve_is_the_rate_the_optimizer_applies_at_each_step(number, steps, epochs):
    recipe = get_experiment(number).recipe
    schedule = ing.schedule_curve(recipe, steps, epochs, f"exp {number}")
    optimizer = make_optimizer(recipe, steps, epochs)
    applied = []
    for step in range(steps * epochs):
        optimizer.iterations.assign(step)
        applied.append(float(keras.ops.convert_to_numpy(optimizer.learning_rate)))
    np.testing.assert_allclose(schedule.rates, applied, rtol=1e-6)
    assert schedule.rates.max() == pytest.approx(recipe.learning_rate)
    assert schedule.warmup_steps == round(recipe.warmup * steps * epochs)
    assert int(np.argmax(schedule.rates)) == schedule.warmup_steps  # the peak where the warm-up ends
    line = ing.plot_schedules([schedule]).axes[0].lines[0]
    np.testing.assert_allclose(line.get_ydata(), schedule.rates)
    np.testing.assert_allclose(line.get_xdata(), np.arange(steps * epochs) / steps)  # x in epochs


def test_the_studys_rate_is_flat():
    np.testing.assert_array_equal(ing.schedule_curve(STUDY_RECIPE, 4, 3).rates, np.full(12, 1e-3))


def test_the_chapters_schedule_uses_the_steps_its_runs_train(tmp_path):
    chapter = Chapter(6, data_source="sample", out_dir=tmp_path, profile="quick")
    for number in (20, 21):
        recipe, steps, images = chapter.trained_recipe(number)
        exp = get_experiment(number)
        plan = plan_run(exp, chapter.data, 0, tmp_path, run_settings(exp, chapter.settings,
                                                                   every_recipe=chapter.every_recipe))
        assert recipe == plan.recipe and images == len(plan.train[0])
        assert steps == steps_per_epoch(len(plan.train[0]), plan.recipe.batch_size)


def test_label_smoothing_targets_are_read_off_the_training_loss():
    np.testing.assert_allclose(ing.smoothed_targets(0.1), [0.91] + [0.01] * 9, atol=1e-5)
    np.testing.assert_allclose(ing.smoothed_targets(0.2, true_class=3), [0.02] * 3 + [0.82] + [0.02] * 6, atol=1e-5)
    np.testing.assert_allclose(ing.smoothed_targets(0.0), np.eye(10)[0], atol=1e-5)
    assert ing.best_margin(0.1) == pytest.approx(math.log(91), rel=1e-4) and ing.best_margin(0.0) == math.inf
    losses = ing.loss_against_margin(0.1, ing.MARGINS)
    assert abs(ing.MARGINS[np.argmin(losses)] - math.log(91)) <= ing.MARGINS[1] - ing.MARGINS[0]
    assert np.all(np.diff(ing.loss_against_margin(0.0, ing.MARGINS)) < 0)  # without smoothing: lower for ever
    fig = ing.plot_label_smoothing([0.1], ["exp 20"])
    heights = [patch.get_height() for patch in fig.axes[0].patches]
    np.testing.assert_allclose(heights[10:], ing.smoothed_targets(0.1))


@pytest.mark.slow
def test_the_whitening_figure_shows_the_kernel_experiment_21_trains_with(data):
    (x_train, _), _ = data
    result = ing.whitening_example(x_train, count=300)
    layer = next(layer for layer in build_model(21).layers if isinstance(layer, PatchWhitening))
    layer.adapt(x_train[:300])
    np.testing.assert_allclose(result.kernel, keras.ops.convert_to_numpy(layer.kernel), rtol=1e-5, atol=1e-6)
    assert result.kernel.shape == (2, 2, 3, 24) and result.images == 300
    assert np.all(np.diff(result.eigenvalues) <= 0)
    variances = np.diag(result.output_covariance)
    assert np.all(variances[:6] > 0.95) and np.all(variances <= 1.0 + 1e-6)  # whitened; eps damps the smallest
    off = result.output_covariance - np.diag(variances)
    assert np.abs(off).max() < 1e-4  # decorrelated
    fig = ing.plot_whitening(result)
    first = next(ax for ax in fig.axes if ax.images)
    np.testing.assert_allclose(first.images[0].get_array(), ing._filter_tile(result.kernel[..., 0]))


@pytest.fixture(scope="module")
def tiny(data):
    (x_train, y_train), _ = data
    return ing.tiny_model(x_train, y_train, epochs=4)


@pytest.mark.slow
def test_tta_effect_pairs_each_kind_with_no_views_on_the_same_images(data, tiny):
    _, (x_test, y_test) = data
    chosen = ing.tta_images(y_test, 200)
    images, labels = x_test[chosen], y_test[chosen]
    result = ing.tta_effect(tiny, images, labels, "tiny")
    truth = labels.argmax(axis=1)
    plain = np.mean(predict_views(tiny, images, "none").argmax(axis=1) == truth)
    assert result.table.loc["none", "accuracy (%)"] == pytest.approx(100 * plain)
    assert result.table.loc["none", "accuracy (%)"] > 15  # trained in seconds, above chance
    for _, row in result.table.iterrows():
        assert row["accuracy (%)"] - 100 * plain == pytest.approx(100 * (row["fixed"] - row["broken"]) / len(images))
    assert list(result.table["views"]) == [1, 2, 6]
    averaged = float(np.dot(TTA_WEIGHTS["flip_shift"], result.view_probabilities))
    assert averaged == pytest.approx(result.averaged["flip_shift"], abs=1e-5)
    np.testing.assert_allclose(result.views[3], images[result.example][:, ::-1], atol=1e-6)  # the mirror view
    fig = ing.plot_tta(result)
    heights = [p.get_height() for p in fig.axes[-1].patches]
    np.testing.assert_allclose(heights, result.table["accuracy (%)"])
    assert len(ing.tta_images(y_test, 200)) == 200 and len(ing.tta_images(y_test, 10_000)) == len(y_test)


@pytest.mark.slow
def test_tta_uses_a_stored_run_that_can_carry_a_verdict_else_a_tiny_model_said_first(data, tiny, tmp_path,
                                                                                     monkeypatch):
    from cifar_utils.runs.train import run_experiment

    short = load_cifar10("sample", subset=300)
    record = run_experiment(2, epochs=1, batch_size=128, data=short, out_dir=tmp_path)
    said, trained = [], []
    monkeypatch.setattr(ing, "tiny_model", lambda *args, **kwargs: trained.append(len(said)) or tiny)
    viewed = ing.tta_model([record], short, say=said.append)  # 1 epoch on 300 images: no verdict, so tiny
    assert viewed.model is tiny and trained == [1] and "by the cost table" in said[0]  # the cost, said first
    assert len(viewed.images) == len(data[1][0]) and "tiny model" in viewed.note
    monkeypatch.setattr(ing, "carry_problem", lambda runs: None)  # as if it could carry one
    stored = ing.tta_model([record], short, count=50, say=said.append)
    assert stored.label == "experiment 2, seed 0" and len(stored.images) == 50 and len(said) == 1
    (_, _), (x_test, y_test) = short
    final = 100 * np.mean(predict_views(stored.model, x_test).argmax(axis=1) == y_test.argmax(axis=1))
    assert final == pytest.approx(record.test_acc)  # the run's own final weights
    result = ing.tta_effect(stored.model, stored.images, stored.labels, stored.label)
    sentence = ing.describe_tta(stored, result)
    row = result.table.loc["flip"]
    assert f"flip (2 views) **{row['accuracy (%)']:.1f} %**, fixing {int(row['fixed'])} images" in sentence
    assert sentence.startswith("The final model of experiment 2, seed 0") and ("within noise" in sentence or
                                                                               "real" in sentence)
