"""``RunSettings``: the settings that name a run beside its experiment, data and seed,
refused when bad (naming the field and value), and naming the same folders as before."""

import numpy as np
import pytest

from cifar_utils.runs.identity import plan_run
from cifar_utils.runs.pool import RunTask
from cifar_utils.runs.settings import RunSettings
from cifar_utils.speed import Speed
from tests.test_run_identity import PINNED, _synthetic_data


@pytest.mark.parametrize(("fields", "message"), [
    ({"epochs": 0}, "epochs must be a positive integer or None .the recipe's., got 0"),
    ({"epochs": 2.5}, "epochs must be a positive integer or None .the recipe's., got 2.5"),
    ({"batch_size": True}, "batch_size must be a positive integer or None .the recipe's., got True"),
    ({"batch_size": -64}, "batch_size must be a positive integer or None .the recipe's., got -64"),
    ({"eval_every": 0}, "eval_every must be a positive integer, got 0"),
    ({"eval_every": "2"}, "eval_every must be a positive integer, got '2'"),
    ({"precision": "bfloat16"}, "precision must be one of .*, got 'bfloat16'"),
])
def test_run_settings_refuse_bad_values_naming_them(fields, message):
    with pytest.raises(ValueError, match=message):
        RunSettings(**fields)


def test_run_settings_are_plain_ints_and_come_from_a_speed():
    settings = RunSettings(np.int64(30), 256)
    assert settings.epochs == 30 and type(settings.epochs) is int and settings == RunSettings(30, 256)
    assert RunSettings.from_speed(None, 30, None, 2) == RunSettings(30, None, 2)
    fast = Speed(steps_per_execution=8, data_on_device=True, precision="mixed_bfloat16")  # only precision names
    assert RunSettings.from_speed(fast, 30) == RunSettings(30, precision="mixed_bfloat16")
    assert RunSettings.from_speed({"jit_compile": False}) == RunSettings()
    assert RunSettings().identity_entries() == {"eval_every": 1}  # a float32 run's parameters gain no key
    assert RunSettings(eval_every=3, precision="mixed_bfloat16").identity_entries() == {
        "eval_every": 3, "precision": "mixed_bfloat16"}


def test_precision_alone_gives_another_folder_and_the_default_the_pinned_one():
    (number, seed, epochs, batch_size), name = PINNED[1]
    data = _synthetic_data()
    plain = plan_run(number, data, seed, "x", RunSettings(epochs, batch_size))
    mixed = plan_run(number, data, seed, "x", RunSettings(epochs, batch_size, precision="mixed_bfloat16"))
    assert plain.run_dir.name == name and mixed.run_dir.name != name
    assert plain.settings == RunSettings(epochs, batch_size) and mixed.precision == "mixed_bfloat16"
    default = [(case, pinned) for case, pinned in PINNED if case[2] is None and case[3] is None][0]
    (number, seed, _, _), pinned = default
    assert plan_run(number, data, seed, "x").run_dir.name == pinned  # the default settings: the recipe's own
    with pytest.raises(TypeError, match="settings must be a RunSettings"):
        plan_run(number, data, seed, "x", 30)  # the old positional epochs


def test_a_pool_task_carries_its_settings_whole_through_json():
    settings = RunSettings(30, 256, 2, "mixed_bfloat16")
    task = RunTask(21, 3, "runs", "data.npz", 5000, settings, {"lr": 0.01}, "lr=0.01",
                   {"precision": "mixed_bfloat16"}, log_every=5)
    back = RunTask.from_json(task.to_json())
    assert back == task and back.settings == settings and type(back.settings) is RunSettings
    assert RunTask(2, 0, "runs").settings == RunSettings()  # the recipe's own, float32
    with pytest.raises(ValueError, match="exp 2 seed 0: speed's precision 'mixed_bfloat16' is not the settings'"):
        RunTask(2, 0, "runs", speed={"precision": "mixed_bfloat16"})  # the folder would not say bfloat16
    with pytest.raises(TypeError, match="settings must be a RunSettings"):
        RunTask(2, 0, "runs", None, None, 30)  # the old positional epochs


def test_the_report_compares_chapters_by_what_names_their_runs():
    """One split of a chapter's parameters: the presentation ones are chapter parameters,
    and every field that names a run survives ``numbers_settings``, speed as its precision."""
    from dataclasses import fields

    from cifar_utils.course import CHAPTER_PARAMETERS, PRESENTATION_PARAMETERS, numbers_settings

    assert set(PRESENTATION_PARAMETERS) < set(CHAPTER_PARAMETERS)
    given = {name: None for name in CHAPTER_PARAMETERS} | {"epochs": 3, "speed": {"precision": "mixed_bfloat16"}}
    kept = numbers_settings(given)
    assert {f.name for f in fields(RunSettings)} <= set(kept)
    assert not set(kept) & set(PRESENTATION_PARAMETERS)
    assert kept["precision"] == "mixed_bfloat16" and kept["epochs"] == 3
    fast = numbers_settings(given | {"speed": {"jit_compile": True}, "log_every": 5, "run_token": "x"})
    assert fast == kept | {"precision": "float32"}  # other speed levers and printing change no number
    assert numbers_settings(given | {"speed": "bad"})["precision"] == "'bad'"  # compared as given, no crash
