"""The recipe listing is the code that trains: executed, it builds the optimizer and loss
``compile_model`` gives every recipe in the registry."""

import keras
import pytest

from cifar_utils import EXPERIMENTS, get_experiment
from cifar_utils.recipe_code import recipe_code
from cifar_utils.recipes import TriangularSchedule, make_loss, make_optimizer


class Recorder:
    """Stands in for the model: keeps what ``compile`` and ``fit`` were given."""

    def compile(self, **kwargs):
        self.compiled = kwargs

    def fit(self, *args, **kwargs):
        self.fitted = kwargs


def _run(code: str) -> Recorder:
    model = Recorder()
    names = {"keras": keras, "TriangularSchedule": TriangularSchedule, "model": model, "x_train": None,
             "y_train": None, "x_val": None, "y_val": None, "x_test": None, "y_test": None}
    exec(code, names)  # noqa: S102 - the listing is generated here and run to check it
    return model


def _config(optimizer) -> dict:
    config = keras.optimizers.serialize(optimizer)["config"]
    return {k: v for k, v in config.items() if k != "name"}  # the name only counts optimizers made


RECIPES = {e.recipe: e.number for e in EXPERIMENTS}  # each distinct recipe once


@pytest.mark.parametrize("number", sorted(RECIPES.values()))
def test_listing_builds_the_optimizer_and_loss_that_train(number):
    recipe, steps = get_experiment(number).recipe, 98
    model = _run(recipe_code(recipe, steps, epochs=7))
    built, trained = model.compiled["optimizer"], make_optimizer(recipe, steps, 7)
    assert type(built) is type(trained)
    assert _config(built) == _config(trained)
    assert model.compiled["loss"].get_config() == make_loss(recipe).get_config()
    assert model.fitted["batch_size"] == recipe.batch_size and model.fitted["epochs"] == 7


def test_listing_reads_like_the_recipe():
    study = recipe_code(get_experiment(17).recipe, 98, epochs=300)
    assert "keras.optimizers.Adam(learning_rate=0.001)" in study and "schedule" not in study
    assert "validation_data=(x_test, y_test)" in study and "label_smoothing" not in study
    modern = recipe_code(get_experiment(20).recipe, 176)
    assert "CosineDecay(" in modern and "nesterov=True" in modern and "label_smoothing=0.1" in modern
    assert "epochs=30" in modern and "validation_data=(x_val, y_val)" in modern and "'flip'" in modern
    assert "TriangularSchedule(peak=1.5" in recipe_code(get_experiment(21).recipe, 44)


@pytest.mark.slow
def test_a_chapter_shows_the_recipe_its_run_compiled(tmp_path, capsys):
    from cifar_utils import load_cifar10, run_experiment
    from cifar_utils.chapter import Chapter

    data = load_cifar10("sample", subset=300)
    chapter = Chapter(6, epochs=1, data_source="sample", subset=300, out_dir=tmp_path, profile="quick")
    chapter.show_recipe(21)
    shown = capsys.readouterr().out
    recipe = get_experiment(21).recipe
    # quick shortens every recipe: 1 epoch of 270 training images (30 held out) at batch 1024 is 1 step
    assert "270 training images, 1 step an epoch" in shown
    code = shown.split("```python")[1].split("```")[0]
    compiled = _run(code).compiled["optimizer"]
    record = run_experiment(21, epochs=1, data=data, out_dir=tmp_path / "runs")
    assert record.params["train_size"] == 270
    assert _config(compiled) == _config(make_optimizer(recipe, 1, 1))
