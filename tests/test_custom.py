"""A model written in a notebook trains through ``Chapter.try_out`` like any run, apart from the registry's."""

import matplotlib

matplotlib.use("Agg")

import json
from pathlib import Path

import keras
import matplotlib.pyplot as plt
import numpy as np
import pytest
from keras import layers

from cifar_utils import chapter as chapter_module
from cifar_utils.chapter import Chapter, as_experiment
from cifar_utils.custom import CUSTOM_NUMBER, custom_experiment, is_custom
from cifar_utils.experiments import EXPERIMENTS
from cifar_utils.model_code import model_differences
from cifar_utils.models import build_model
from cifar_utils.results import results_table
from cifar_utils.runs.record import RunRecord


def small(width: int = 8, name: str | None = None) -> keras.Sequential:
    return keras.Sequential([keras.Input((32, 32, 3)), layers.Conv2D(width, 3, activation="relu"),
                             layers.GlobalAveragePooling2D(), layers.Dense(10)], **({"name": name} if name else {}))


def test_a_custom_model_is_named_by_its_config_not_by_keras_layer_counters():
    first, again, wider = custom_experiment(small()), custom_experiment(small()), custom_experiment(small(16))
    assert first.variant == again.variant and first.spec == again.spec  # conv2d vs conv2d_1: the same network
    assert wider.variant != first.variant and wider.key != first.key
    assert first.number == CUSTOM_NUMBER not in {e.number for e in EXPERIMENTS} and is_custom(first)
    assert custom_experiment(lambda: small(name="gap")).name == "gap" and first.name == "your model"
    assert custom_experiment(lambda: small(16)).spec == wider.spec  # a builder is called for its model


def test_the_custom_experiment_builds_the_readers_network_with_fresh_weights():
    model = small(16)
    built = build_model(custom_experiment(model))
    assert model_differences(model, built) == [] and built.count_params() == model.count_params()
    assert built.layers[0] is not model.layers[0]
    mean, variance = np.array([0.49, 0.48, 0.45]), np.array([0.06, 0.06, 0.07])  # e.g. from x_train, as arrays
    standardised = build_model(custom_experiment(keras.Sequential([
        keras.Input((32, 32, 3)), layers.Normalization(mean=mean, variance=variance), layers.Flatten(),
        layers.Dense(10)])))
    image = np.full((1, 32, 32, 3), 0.5, "float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(standardised.layers[0](image))[0, 0, 0],
                               (0.5 - mean) / np.sqrt(variance), rtol=1e-5)  # the statistics travel in the config


@pytest.mark.parametrize("model, message", [
    (keras.Sequential([keras.Input((32, 32, 3)), layers.Flatten(), layers.Dense(10, activation="softmax")]),
     "without an activation"),
    (keras.Sequential([keras.Input((32, 32, 3)), layers.Flatten(), layers.Dense(5)]), "10 logits"),
    (keras.Sequential([keras.Input((28, 28, 1)), layers.Flatten(), layers.Dense(10)]), "CIFAR-10 images"),
    (keras.Sequential([keras.Input((32, 32, 3)), layers.Normalization(), layers.Flatten(), layers.Dense(10)]),
     "not what adapt"),
])
def test_a_model_the_course_cannot_train_is_refused_by_what_is_wrong(model, message):
    with pytest.raises(ValueError, match=message):
        custom_experiment(model)


def test_a_functional_model_is_refused():
    inputs = keras.Input((32, 32, 3))
    with pytest.raises(TypeError, match="keras.Sequential"):
        as_experiment(keras.Model(inputs, layers.Dense(10)(layers.Flatten()(inputs))))


@pytest.mark.slow
def test_try_out_trains_a_custom_model_records_and_plots_it_like_any_run(tmp_path, monkeypatch, capsys):
    plotted = []
    real = chapter_module.show

    def show(obj):
        if isinstance(obj, plt.Figure):
            plotted.append([(line.get_label(), list(line.get_ydata())) for line in obj.axes[0].lines])
        real(obj)

    monkeypatch.setattr(chapter_module, "show", show)
    chapter = Chapter(3, out_dir=tmp_path, data_source="sample")
    records = chapter.try_out([7, small(8, "narrow")], epochs=1, subset=300)
    out = capsys.readouterr().out
    assert "exercise runs (1 epochs on 300 images)" in out and "a model of your own" in out
    assert out.index("model of your own") < out.index("seed 0: epoch")  # the cost, said before training
    registry, mine = records
    assert isinstance(mine, RunRecord) and mine.epochs_completed == 1 and is_custom(mine) and not is_custom(registry)
    assert mine.experiment == CUSTOM_NUMBER and mine.variant.startswith("custom ") and mine.params["spec"]["kind"] \
        == "KerasSpec"
    saved = RunRecord.from_file(Path(mine.run_dir) / "record.json")
    assert saved == mine and Path(mine.run_dir).parent == tmp_path / "exercises"
    assert not (tmp_path / "runs").exists()
    assert results_table([registry, mine], [7])["seeds"].tolist() == [1]  # never in a chapter's table
    lines = dict(plotted[0])  # one axis: each model's running training curve and its test curve
    tested = [100 * v for v in mine.history["val_accuracy"]]
    assert lines[f"narrow [{mine.variant}] (test)"] == pytest.approx(tested)
    assert "7. Dropout model 1 (test)" in lines

    again = chapter.try_out([small(8, "narrow")], epochs=1, subset=300)
    assert again == [mine] and "model of your own" not in capsys.readouterr().out  # reused: no cost, no training
    other = chapter.try_out([small(4, "narrower")], epochs=1, subset=300)[0]
    assert other.run_dir != mine.run_dir and other.param_count < mine.param_count  # another model, its own run
    params = json.loads((Path(other.run_dir) / "params.json").read_text())
    assert json.loads(params["spec"]["layers"])[0]["config"]["filters"] == 4
