"""A recipe as the Keras code that trains with it: schedule, optimizer, loss, compile, fit.

The listing is generated from the same ``Recipe`` that ``recipes.make_optimizer`` and
``make_loss`` turn into objects, and tests/test_recipe_code.py executes it and compares
the optimizer and loss it builds with those that train, for every recipe in the registry:
the code a reader sees is the code that runs (as ``model_code`` does for networks).
"""

from __future__ import annotations

from .experiments import Recipe
from .final_model import ema_momentum


def _number(value: float) -> str:
    return f"{value:g}"


def schedule_code(recipe: Recipe, steps_per_epoch: int, epochs: int) -> tuple[list[str], str]:
    """Lines that define the learning rate, and the expression that names it."""
    if recipe.schedule == "constant":
        return [], _number(recipe.learning_rate)
    warmup = int(round(recipe.warmup * max(steps_per_epoch * epochs, 1)))
    lines = [f"total_steps = {steps_per_epoch} * {epochs}  # steps per epoch x epochs"]
    if recipe.schedule == "cosine":
        start = recipe.learning_rate / 10 if warmup else recipe.learning_rate
        warm = (f", warmup_target={_number(recipe.learning_rate)}, warmup_steps={warmup}" if warmup else "")
        lines += ["schedule = keras.optimizers.schedules.CosineDecay(",
                  f"    initial_learning_rate={_number(start)}, decay_steps=total_steps - {warmup}{warm})"]
        return lines, "schedule"
    lines += ["# linear warm-up to the peak, then linear decay (airbench's shape; cifar_utils.recipes)",
              f"schedule = TriangularSchedule(peak={_number(recipe.learning_rate)}, total_steps=total_steps, "
              f"warmup_steps={warmup}, final_fraction={_number(recipe.final_lr_fraction)})"]
    return lines, "schedule"


def recipe_code(recipe: Recipe, steps_per_epoch: int, epochs: int | None = None) -> str:
    """The Keras code of ``recipe`` for a run of ``epochs`` (its own by default) epochs of
    ``steps_per_epoch`` steps: what ``compile_model`` builds, then the ``fit`` call."""
    epochs = epochs or recipe.epochs
    lines, rate = schedule_code(recipe, steps_per_epoch, epochs)
    arguments = [f"learning_rate={rate}"]
    if recipe.optimizer == "sgd":
        arguments += [f"momentum={_number(recipe.momentum)}", f"nesterov={recipe.nesterov}"]
    if recipe.weight_decay:
        arguments.append(f"weight_decay={_number(recipe.weight_decay)}")
    if recipe.ema:
        momentum = ema_momentum(recipe.ema, steps_per_epoch * epochs)  # lowered for short runs
        arguments += ["use_ema=True", f"ema_momentum={momentum!r}"]
    name = {"sgd": "SGD", "adamw": "AdamW"}.get(recipe.optimizer, "Adam")
    lines.append(f"optimizer = keras.optimizers.{name}({', '.join(arguments)})")
    smoothing = f", label_smoothing={_number(recipe.label_smoothing)}" if recipe.label_smoothing else ""
    lines.append(f"loss = keras.losses.CategoricalCrossentropy(from_logits=True{smoothing})  # the nets end in logits")
    lines.append('model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])')
    held = (f"  # {recipe.validation:.0%} of the training images held out for validation"
            if recipe.validation else "  # the study's: the test set as validation data")
    data = "validation_data=(x_val, y_val)" if recipe.validation else "validation_data=(x_test, y_test)"
    lines.append(f"model.fit(x_train, y_train, batch_size={recipe.batch_size}, epochs={epochs}, {data}){held}")
    if recipe.tta != "none":
        lines.append(f"# then the test set is predicted with test-time views ({recipe.tta!r}), their probabilities "
                     "averaged: cifar_utils.recipes.predict_views")
    return "\n".join(lines)
