"""Bad settings are refused by name before anything trains: the notebooks' parameters
(one check shared with ./run_all.sh), validation splits the data cannot make, and
variants whose fields or names are wrong (issue 17)."""

import keras
import numpy as np
import pytest

from cifar_utils import load_cifar10, run_experiment
from cifar_utils import run_all as driver
from cifar_utils.chapter import Chapter
from cifar_utils.course import chapter6_settings
from cifar_utils.models import build_model
from cifar_utils.parameters import MAX_SEED, ParameterError, check_parameters
from cifar_utils.summary import Summary

# --- notebook parameters ------------------------------------------------------------------

BAD_CHAPTER_PARAMETERS = [
    ("seeds", 0, "must be a list"),
    ("seeds", "0,1", "must be a list"),
    ("seeds", [-1], "seed -1 is outside 0..2147483647"),
    ("seeds", [MAX_SEED + 1], "is outside 0..2147483647"),
    ("seeds", [], "is empty"),
    ("seeds", [1, 1], "seeds must be distinct"),
    ("seeds", [0.5], "seed 0.5 is not a whole number"),
    ("seeds", [True], "is not a whole number"),
    ("train", "False", "must be True or False"),
    ("exercises", 1, "must be True or False"),
    ("epochs", 2.5, "must be a whole number"),
    ("epochs", 0, "must be at least 1"),
    ("batch_size", "64", "must be a whole number"),
    ("subset", 10, "need at least 20 images"),
    ("subset", True, "must be a whole number"),
    ("log_every", -1, "must be at least 1"),
    ("eval_every", None, "must be a whole number"),
    ("speed", "fast", "speed must be a Speed"),
    ("experiments", 7, "must be a list"),
    ("experiments", [99], "unknown experiment 99"),
    ("experiments", [], "is empty"),
    ("profile", "tiny", "unknown profile"),
    ("out_dir", None, "must be a folder or file path"),
    ("run_token", 5, "must be a string"),
]


@pytest.mark.parametrize("name, value, problem", BAD_CHAPTER_PARAMETERS)
def test_a_chapter_refuses_a_bad_parameter_by_name_before_anything_exists(name, value, problem, tmp_path):
    # Before issue 17: seeds=0 and "0,1" raised raw TypeErrors, train="False" trained,
    # seeds=[-1] failed mid-run leaving a run folder, seeds=[] said "not run, or its training failed".
    out = tmp_path / "out"
    settings = {"out_dir": out, "data_source": "sample", "subset": 200, "epochs": 1, name: value}
    with pytest.raises(ParameterError, match=f"parameter {name}=") as caught:
        Chapter(1, **settings)
    assert problem in str(caught.value)
    assert not out.exists() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name, value", [("seeds", "0"), ("seeds", []), ("epochs", 1.5), ("eval_every", 0)])
def test_the_summary_refuses_a_bad_parameter_by_name(name, value, tmp_path):
    with pytest.raises(ParameterError, match=f"parameter {name}="):
        Summary(tmp_path, data_source="sample", **{name: value})


@pytest.mark.parametrize("given, problem", [
    ({"factorial_seeds": [-1]}, "seed -1 is outside"),
    ({"modern_seeds": 0}, "must be a list"),
    ({"grid_epochs": "3"}, "must be a whole number"),
    ({"learning_rates": [0]}, "0 is not a number above 0"),
    ({"learning_rates": [1e-3, 1e-3]}, "learning_rates must be distinct"),
    ({"batch_sizes": [2.5]}, "2.5 is not a whole number"),
    ({"dropout_rates": [1.0]}, "1.0 is not a number in [0, 1)"),
])
def test_chapter_6_refuses_its_own_bad_parameters_by_name(given, problem):
    with pytest.raises(ParameterError, match=f"parameter {next(iter(given))}=") as caught:
        chapter6_settings(None, given)
    assert problem in str(caught.value)


def test_yaml_values_pass_and_come_back_as_python_values():
    checked = check_parameters({"seeds": (0, np.int64(3)), "epochs": np.int64(2), "train": False, "subset": None,
                                "learning_rates": [1e-3, 3], "experiments": ["exp07", 8]})
    assert checked["seeds"] == [0, 3] and type(checked["seeds"][1]) is int and type(checked["epochs"]) is int
    assert checked["learning_rates"] == [1e-3, 3.0] and checked["experiments"] == [7, 8]
    assert chapter6_settings("quick", {"fast_seeds": [4]})["fast_seeds"] == [4]


@pytest.mark.parametrize("argv, message", [
    (["--quick", "--seeds", str(MAX_SEED + 1)], f"--seeds: '{MAX_SEED + 1}': seed {MAX_SEED + 1} is outside"),
    (["--quick", "--seeds", "-1"], "--seeds: '-1': seed -1 is outside"),
    (["--quick", "--seeds", "0,1,0"], "--seeds: '0,1,0': seeds must be distinct: 0 is repeated"),
    (["--quick", "--subset", "19"], "--subset 19: need at least 20 images"),
])
def test_run_all_refuses_what_the_notebooks_refuse(argv, message, capsys):
    # Before issue 17 --seeds 5000000000 was accepted, and every run then failed on NumPy's seed range.
    with pytest.raises(SystemExit) as caught:
        driver.parse_args(argv)
    assert caught.value.code == 2 and message in capsys.readouterr().err


def test_the_largest_seed_accepted_is_one_every_backend_takes():
    assert driver.parse_args(["--quick", "--seeds", f"0,{MAX_SEED}"]).seeds == [0, MAX_SEED]
    keras.utils.set_random_seed(MAX_SEED)  # NumPy's global seed takes up to 2**32 - 1
    model = build_model(16, seed=MAX_SEED)  # its augmentation layer holds a seed generator
    assert int(keras.ops.convert_to_numpy(model.layers[0].seed_generator.state)[0]) == MAX_SEED
    with pytest.raises(ValueError):
        np.random.seed(2**32)  # the bound the check keeps runs away from


def test_a_bad_seed_given_to_a_run_leaves_no_folder(tmp_path):
    data = load_cifar10("sample", subset=50)
    for seed in (-1, 2**32, 0.5):
        with pytest.raises(ParameterError, match="parameter seed="):
            run_experiment(2, epochs=1, seed=seed, data=data, out_dir=tmp_path)
    with pytest.raises(ParameterError, match="parameter seeds="):
        run_experiment(2, epochs=1, seeds=[0, 0], data=data, out_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []
