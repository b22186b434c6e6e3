"""Run identity is a contract: a run's folder name, computed before a refactor, is computed
the same after it, so finished runs and the committed reference stay valid.

The names below were computed by the code that made the reference (commit 153972d) on a
small synthetic data set; a change that renames any of them makes every finished run
unreachable and must be a deliberate, documented migration, not a side effect.
"""

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from cifar_utils.beyond import factorial_experiment, grid_experiments
from cifar_utils.experiments import get_experiment
from cifar_utils.runs.identity import plan_run
from cifar_utils.runs.settings import RunSettings

ROOT = Path(__file__).resolve().parents[1]
SOURCE = os.environ.get("CIFAR10_SOURCE")  # read at import: each test runs without it
REFERENCE_RUNS = sorted((ROOT / "results" / "reference" / "runs").glob("exp*"))

PINNED = [  # (experiment, seed, epochs, batch size) -> folder name
    ((1, 0, 30, None), "exp01-seed0-da854d5c"),  # raw pixels (0-255)
    ((2, 0, 30, None), "exp02-seed0-c17b7f93"),
    ((6, 3, 2, 256), "exp06-seed3-3c154efa"),  # both overrides
    ((15, 0, 30, None), "exp15-seed0-48ba2969"),
    ((17, 1, None, None), "exp17-seed1-e3a5b1cd"),  # the recipe's own 300 epochs, augmentation
    ((20, 0, None, None), "exp20-seed0-d1e20b37"),  # a recipe with a validation split
    ((21, 2, None, None), "exp21-seed2-fbab60cf"),  # the airbench-style spec
]


def _synthetic_data():
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (400, 32, 32, 3), dtype=np.uint8), np.repeat(np.arange(10), 40).astype(np.uint8)
    test = rng.integers(0, 256, (100, 32, 32, 3), dtype=np.uint8), np.repeat(np.arange(10), 10).astype(np.uint8)
    return train, test


@pytest.mark.parametrize(("case", "name"), PINNED, ids=[name for _, name in PINNED])
def test_registry_runs_keep_their_folder_names(case, name):
    number, seed, epochs, batch_size = case
    plan = plan_run(number, _synthetic_data(), seed=seed, settings=RunSettings(epochs, batch_size), out_dir="x")
    assert plan.run_dir.name == name


def test_variant_runs_keep_their_folder_names():
    data = _synthetic_data()
    small_cell = plan_run(factorial_experiment(3, 200), data, seed=1, out_dir="x")
    varied = plan_run(get_experiment(9).vary(learning_rate=0.003), data, settings=RunSettings(epochs=2), out_dir="x")
    grid_point = plan_run(grid_experiments([1e-3], [128], 2)[0], data, out_dir="x")
    assert small_cell.run_dir.name == "exp03-train-images200-seed1-3ee184f4"
    assert varied.run_dir.name == "exp09-learning-rate0.003-seed0-cc807d23"
    assert grid_point.run_dir.name == "exp09-lr0.001-batch128-seed0-35a7a5ef"


@pytest.mark.parametrize("run_dir", REFERENCE_RUNS, ids=[p.name for p in REFERENCE_RUNS])
def test_reference_folders_are_named_by_their_recorded_parameters(run_dir):
    """The folder name is the experiment key, the seed and a hash of the recorded identity."""
    record = json.loads((run_dir / "record.json").read_text())
    params = record["params"]
    digest = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:8]
    assert run_dir.name == f"{recorded_experiment(params).key}-seed{params['seed']}-{digest}"


def recorded_experiment(params: dict):
    """The experiment a record names: its registry entry, or the variant of it (a sweep
    point, a factorial cell at a smaller setting) whose recipe and spec fields it records."""
    from dataclasses import asdict

    base = get_experiment(params["experiment"])
    if not params.get("variant"):
        return base
    recipe, spec = (json.loads(json.dumps(asdict(part))) for part in (base.recipe, base.spec))  # as recorded
    changes = {k: v for k, v in params["recipe"].items() if k in recipe and recipe[k] != v}
    changes.update({k: v for k, v in params["spec"].items() if k in spec and spec[k] != v})
    return base.vary(params["variant"], **changes)


@pytest.mark.slow
@pytest.mark.skipif(not SOURCE, reason="needs the JPEG copy (CI sets CIFAR10_SOURCE)")
def test_reference_runs_are_found_again_from_the_data():
    """Planned afresh from the real data and their recorded settings, the reference's runs
    land in the folders they were made in."""
    from cifar_utils import load_cifar10

    if not REFERENCE_RUNS:
        pytest.skip("the committed reference holds no run yet")
    data = load_cifar10(SOURCE)
    for run_dir in REFERENCE_RUNS:
        params = json.loads((run_dir / "record.json").read_text())["params"]
        ours = plan_run(1, data, settings=RunSettings(epochs=1), out_dir="x").params["data_fingerprint"]
        if params["data_fingerprint"] != ours:
            pytest.skip("CIFAR10_SOURCE is not the data the reference was made on")
        plan = plan_run(recorded_experiment(params), data, seed=params["seed"], out_dir="x",
                        settings=RunSettings(params["epochs"], params["batch_size"], params["eval_every"]))
        assert plan.run_dir.name == run_dir.name


def test_naming_a_run_copies_no_images_and_its_arrays_are_the_split():
    """A plan made to name a run (``find_finished``) rescales and copies nothing; its arrays,
    made when first used, are the split of the experiment's pixel scale."""
    from cifar_utils.runs.splits import fewer_images, validation_split

    (x_train, y_train), (x_test, y_test) = data = _synthetic_data()
    raw = plan_run(1, data, out_dir="x")  # experiment 1: raw pixels, the test set watched
    assert "_scaled" not in vars(raw) and "train" not in vars(raw)
    assert raw.train[0] is x_train and raw.evaluation[0] is x_test  # uint8 0-255: already its scale
    split = plan_run(factorial_experiment(3, 200).vary(validation=0.1), data, out_dir="x")
    kept, held = validation_split(y_train, 0.1)
    chosen = kept[fewer_images(y_train[kept], 200, "x")]
    assert "_scaled" not in vars(split)
    np.testing.assert_array_equal(split.train[0], x_train[chosen] / np.float32(255))
    np.testing.assert_array_equal(split.evaluation[1], y_train[held])
    assert split.params["train_size"] == len(split.train[0]) == 200
    assert split.params["validation_size"] == len(split.evaluation[0]) == len(held) and split.test[1] is y_test
