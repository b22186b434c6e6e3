"""Bad settings are refused by name before anything trains: the notebooks' parameters
(one check shared with ./run_all.sh), validation splits the data cannot make, and
variants whose fields or names are wrong (issue 17)."""

import keras
import numpy as np
import pytest

from cifar_utils import get_experiment, load_cifar10, run_experiment
from cifar_utils import run_all as driver
from cifar_utils.beyond import dropout_experiments, grid_experiments
from cifar_utils.chapter import Chapter
from cifar_utils.course import CHAPTER_PARAMETERS, chapter6_settings
from cifar_utils.data import stratified_share
from cifar_utils.experiments import distinct_variants
from cifar_utils.models import build_model
from cifar_utils.parameters import CHECKS, MAX_SEED, ParameterError, check_parameters
from cifar_utils.profiles import CHAPTER6_DEFAULTS
from cifar_utils.runs.identity import plan_run
from cifar_utils.runs.splits import (
    class_sizes,
    smallest_split_class,
    split_sizes,
    subset_class_sizes,
    validation_split,
)
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
    ("runs", True, "must be 'reference', 'train', 'read' or a reference folder's path"),
    ("runs", "refrence", "not a mode ('reference', 'train', 'read') nor a folder here"),
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
    ({"small_subset": 50}, "at least 100 (ten images a class)"),
    ({"small_subset": True}, "must be None, 0"),
])
def test_chapter_6_refuses_its_own_bad_parameters_by_name(given, problem):
    with pytest.raises(ParameterError, match=f"parameter {next(iter(given))}=") as caught:
        chapter6_settings(None, given)
    assert problem in str(caught.value)


def test_every_notebook_parameter_has_a_check():
    assert set(CHECKS) == set(CHAPTER_PARAMETERS) | set(CHAPTER6_DEFAULTS)


def test_yaml_values_pass_and_come_back_as_python_values():
    checked = check_parameters({"seeds": (0, np.int64(3)), "epochs": np.int64(2), "runs": "read", "subset": None,
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


# --- validation splits --------------------------------------------------------------------

@pytest.mark.parametrize("subset", [30, 50, 59])
def test_run_all_refuses_a_subset_too_small_for_the_validation_split(subset, capsys):
    # Before issue 17 experiments 20, 21 and the sweeps held out 0 images and failed deep in
    # Keras with UnboundLocalError.
    with pytest.raises(SystemExit):
        driver.parse_args(["--quick", "--subset", str(subset)])
    error = capsys.readouterr().err
    assert f"--subset {subset}: experiment 20. VGG-like, modern recipe" in error
    assert "a subset of at least 60" in error
    assert driver.parse_args(["--quick", "--subset", "60"]).subset == 60
    assert driver.parse_args(["--quick", "--subset", "30", "--only", "01"]).subset == 30  # no split there


@pytest.mark.parametrize("experiment, subset, smallest", [
    (get_experiment(20), 50, 60), (get_experiment(21), 40, 60),
    (get_experiment(9).vary(validation=0.99), 500, 510),  # before: no training images, recorded "diverged"
    (get_experiment(9).vary(validation=0.5), 20, None),
])
def test_a_run_refuses_a_split_its_data_cannot_make_and_names_the_smallest_subset(experiment, subset, smallest,
                                                                                  tmp_path):
    data = load_cifar10("sample", subset=subset)
    if smallest is None:
        plan = plan_run(experiment, data, out_dir=tmp_path)
        assert plan.params["train_size"] == plan.params["validation_size"] == 10
        return
    with pytest.raises(ValueError, match=f"a subset of at least {smallest}") as caught:
        run_experiment(experiment, epochs=1, data=data, out_dir=tmp_path)
    assert experiment.label in str(caught.value)
    assert list(tmp_path.iterdir()) == []
    assert plan_run(experiment, load_cifar10("sample", subset=smallest), out_dir=tmp_path).params["train_size"] >= 10


def test_chapter_6_refuses_a_subset_too_small_for_its_splits_before_anything_trains(tmp_path):
    chapter = Chapter(6, data_source="sample", subset=30, epochs=1, out_dir=tmp_path / "out", experiments=[18, 19])
    with pytest.raises(ValueError, match="the sweeps.*a subset of at least 60"):
        chapter.setup()
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("fraction", [0.1, 0.25, 1 / 3, 0.5, 0.9, 0.99, 0.01])
def test_the_split_rule_is_the_one_the_data_is_split_by(fraction):
    smallest = smallest_split_class(fraction)
    assert min(split_sizes(smallest, fraction)) >= 1 and min(split_sizes(smallest - 1, fraction)) < 1
    for per_class in (smallest - 1, smallest, smallest + 7):
        labels = np.repeat(np.arange(10), per_class)
        held = len(stratified_share(labels, fraction, 0))
        assert held == 10 * split_sizes(per_class, fraction)[1]
    validation_split(np.repeat(np.arange(10), smallest), fraction)
    with pytest.raises(ValueError, match=f"a subset of at least {10 * smallest}"):
        validation_split(np.repeat(np.arange(10), smallest - 1), fraction)


@pytest.mark.parametrize("subset", [20, 55, 137])
def test_subset_class_sizes_are_those_of_the_loaded_subset(subset):
    assert sorted(subset_class_sizes(subset)) == sorted(class_sizes(load_cifar10("sample", subset=subset)[0][1]))


# --- variants -----------------------------------------------------------------------------

@pytest.mark.parametrize("changes, field", [
    ({"dropout": "0.5"}, "ArchSpec.dropout must be a finite number"),
    ({"batch_size": 2.5}, "Recipe.batch_size must be a whole number"),
    ({"epochs": True}, "Recipe.epochs must be a whole number"),
    ({"validation": "0.1"}, "Recipe.validation must be a finite number"),
    ({"learning_rate": float("nan")}, "Recipe.learning_rate must be a finite number"),
    ({"nesterov": 1}, "Recipe.nesterov must be True or False"),
    ({"dense_units": 0}, "ArchSpec.dense_units must be at least 1"),
    ({"blocks": ((1, "32"),)}, "ArchSpec block"),
    ({"weight_decay": -1e-4}, "weight_decay >= 0"),
])
def test_vary_refuses_a_field_of_the_wrong_type_by_name(changes, field):
    # Before issue 17 dropout="0.5" raised a raw TypeError and batch_size=2.5 trained at batch 2.
    with pytest.raises(ValueError, match="experiment 9: cannot vary") as caught:
        get_experiment(9).vary(**changes)
    assert field in str(caught.value)
    with pytest.raises(ValueError, match="label must be a string"):
        get_experiment(9).vary(0.5)


def test_numpy_values_become_python_values_in_a_recipe():
    exp = get_experiment(9).vary(batch_size=np.int64(128), learning_rate=np.float32(0.5))
    assert type(exp.recipe.batch_size) is int and type(exp.recipe.learning_rate) is float


def test_distinct_values_get_distinct_exact_labels_and_keys():
    # Before issue 17 learning_rate=1e+06 was named "1e-06" in folders and keys, and :g
    # wrote 0.1 + 0.2 as 0.3.
    base = get_experiment(9)
    pairs = [(base.vary(learning_rate=1e6), base.vary(learning_rate=1e-6)),
             (base.vary(learning_rate=0.1 + 0.2), base.vary(learning_rate=0.3)),
             (base.vary(learning_rate=1e-3), base.vary(learning_rate=1.0000001e-3))]
    for one, other in pairs:
        assert one.variant != other.variant and one.key != other.key
    assert base.vary(learning_rate=1e6).key == "exp09-learning-rate1e+06"
    grid = grid_experiments([1e6, 1e-6, 0.1 + 0.2, 0.3], [128], 2)
    assert len({e.key for e in grid}) == len({e.variant for e in grid}) == 4
    # the labels the reference results were made with stay as they were
    assert grid_experiments([1e-3], [128], 2)[0].variant == "lr=0.001, batch=128"
    assert [e.variant for e in dropout_experiments([0.0, 0.5], 2)] == ["dropout=0", "dropout=0.5"]


def test_two_variants_with_one_name_and_different_settings_are_refused(tmp_path):
    base = get_experiment(9)
    mine, other = base.vary("mine", dropout=0.1), base.vary("mine", dropout=0.2)
    with pytest.raises(ValueError, match="different settings but one name"):
        distinct_variants([mine, other])
    with pytest.raises(ValueError, match="different settings but one name"):
        distinct_variants([base.vary("lr 0.1", learning_rate=0.1), base.vary("lr-0.1", learning_rate=0.2)])
    assert distinct_variants([mine, base.vary("mine", dropout=0.1)]) == [mine, mine]
    chapter = Chapter(3, data_source="sample", subset=200, epochs=1, out_dir=tmp_path, exercises=False)
    with pytest.raises(ValueError, match="give each its own label"):
        chapter.try_out([mine, other])
