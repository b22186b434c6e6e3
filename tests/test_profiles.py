"""Profiles (quick, laptop, cpu, full), the rule that decides each run's epochs and batch size,
and the chapter cells that must never train: a smoke test says so and judges nothing."""

from pathlib import Path

import numpy as np
import pytest

from cifar_utils import EXPERIMENTS, get_experiment
from cifar_utils import run_all as driver
from cifar_utils.chapter import Chapter
from cifar_utils.course import chapter6_settings, run_settings
from cifar_utils.profiles import PROFILES, profile_settings
from cifar_utils.runs.settings import RunSettings
from tests.conftest import make_arrays

ROOT = Path(__file__).resolve().parents[1]


def test_laptop_profile_arguments():
    laptop = driver.parse_args(["--profile", "laptop", "--data", "x.npz"])
    assert (laptop.epochs, laptop.batch_size, laptop.subset, laptop.seeds) == (10, 64, 5000, [0])
    assert laptop.profile == "laptop" and laptop.out.name == "laptop" and laptop.data == "x.npz"
    shorter = driver.parse_args(["--profile", "laptop", "--data", "x.npz", "--epochs", "8"])
    assert shorter.epochs == 8 and shorter.batch_size == 64  # a flag beats the profile
    assert driver.parse_args(["--quick"]).profile == driver.parse_args(["--profile", "quick"]).profile == "quick"


@pytest.mark.parametrize("argv, message", [
    (["--quick", "--profile", "laptop"], "--quick and --profile laptop exclude each other"),
    (["--profile", "laptop", "--reference", "results"], "--profile laptop and --reference exclude each other"),
    (["--profile", "tiny"], "argument --profile: invalid choice: 'tiny'"),
])
def test_bad_profiles_are_refused_by_name(argv, message, capsys):
    with pytest.raises(SystemExit):
        driver.parse_args(argv)
    assert message in capsys.readouterr().err


def test_a_profile_shortens_the_study_recipe_and_leaves_the_course_recipes_alone():
    profile = RunSettings(15, 64)
    assert run_settings(get_experiment(9), profile) == profile
    assert run_settings(get_experiment(17), profile) == profile  # the study's augmentation is its recipe too
    assert run_settings(get_experiment(20), profile) == RunSettings()  # modern recipe: its 30 epochs, batch 256
    assert run_settings(get_experiment(21), profile) == RunSettings()
    assert run_settings(get_experiment(9).vary(dropout=0.5), profile) == profile  # a spec change keeps the recipe
    grid = get_experiment(9).vary(learning_rate=3e-3, batch_size=128, epochs=10, validation=0.1)
    assert run_settings(grid, profile, keep_batch_size=True) == RunSettings()
    dropout_sweep = get_experiment(9).vary(dropout=0.5, epochs=10, validation=0.1)
    assert run_settings(dropout_sweep, profile) == RunSettings(None, 64)  # its own length, the profile's batch
    assert run_settings(get_experiment(9), profile, keep_batch_size=True) == RunSettings(15)
    assert run_settings(get_experiment(21), RunSettings(2), every_recipe=True) == RunSettings(2)  # quick: a smoke test


def test_quick_shortens_every_recipe():
    args = driver.parse_args(["--quick"])
    tasks = driver.training_tasks(args, driver.chapters(ROOT / "notebooks", []))
    assert {t.settings.epochs for t in tasks if not t.variant_label or not t.variant_label.startswith("lr=")} == {2}


def test_laptop_training_tasks():
    args = driver.parse_args(["--profile", "laptop", "--data", "x.npz"])
    tasks = driver.training_tasks(args, driver.chapters(ROOT / "notebooks", []))
    by_key = {(t.experiment, t.variant_label, t.seed): t for t in tasks}
    study_recipe = [e.number for e in EXPERIMENTS if e.study_recipe]  # 1-19; 20 and 21 have recipes of their own
    assert study_recipe[:19] == list(range(1, 20))
    assert all((by_key[(e.number, None, 0)].settings.epochs, by_key[(e.number, None, 0)].settings.batch_size) ==
               ((10, 64) if e.study_recipe else (None, None)) for e in EXPERIMENTS)
    factorial = {k for k in by_key if k[0] in (6, 7, 8, 9, 11, 12, 13, 18) and k[1] is None}
    assert {seed for _, _, seed in factorial} == {0, 1} and len(factorial) == 16
    sweeps = [t for t in tasks if t.variant_label]
    assert len(sweeps) == 2 * 2 + 3 and all(t.settings.epochs is None for t in sweeps)
    assert [t.settings.batch_size for t in sweeps if t.variant_label.startswith("dropout")] == [64, 64, 64]
    assert len(tasks) == len(EXPERIMENTS) + 8 + 7  # each once, the 8 cells' second seed, 7 sweep points


def test_cpu_reference_profile_tasks():
    args = driver.parse_args(["--profile", "cpu", "--data", "x.npz"])
    assert (args.epochs, args.batch_size, args.subset, args.seeds) == (30, None, None, [0])
    tasks = driver.training_tasks(args, driver.chapters(ROOT / "notebooks", []))
    by_key = {(t.experiment, t.variant_label, t.seed): t for t in tasks}
    full = [e for e in EXPERIMENTS if e.number != 18]  # 18 is the factorial's own cell: small setting only
    assert all((by_key[(e.number, None, 0)].settings.epochs, by_key[(e.number, None, 0)].settings.batch_size) ==
               ((30, None) if e.study_recipe else (None, None)) for e in full)
    small = "train_images=10000"
    factorial = {k for k in by_key if k[0] in (6, 7, 8, 9, 11, 12, 13, 18) and k[1] == small}
    assert {seed for _, _, seed in factorial} == {0, 1, 2} and len(factorial) == 24
    assert all((by_key[k].settings.epochs, by_key[k].settings.batch_size) == (30, None) for k in factorial)
    assert {k[2] for k in by_key if k[0] == 21} == {0, 1, 2} and {k[2] for k in by_key if k[0] == 20} == {0}
    sweeps = [t for t in tasks if t.variant_label and t.variant_label != small]
    assert len(sweeps) == 2 * 2 + 3
    assert all(t.settings.epochs is None and t.variant_label.endswith(small) for t in sweeps)
    assert len(tasks) == len(full) + 2 + 24 + 7  # 21's two more seeds, the small cells, the sweep points
    assert not driver.notebook_parameters(args, ROOT / "notebooks" / "03_techniques.ipynb")["exercises"]


def test_the_small_setting_trains_on_fewer_images_and_leaves_registry_runs_named_as_before():
    from cifar_utils import load_cifar10
    from cifar_utils.beyond import factorial_experiment
    from cifar_utils.costs import cpu_seconds
    from cifar_utils.runs.identity import plan_run

    data = load_cifar10("sample", subset=300)
    two = RunSettings(epochs=2)
    plain, small = plan_run(6, data, settings=two), plan_run(factorial_experiment(6, 200), data, settings=two)
    assert "train_images" not in plain.params["recipe"] and small.params["recipe"]["train_images"] == 200
    assert len(plain.train[0]) == 300 and len(small.train[0]) == 200 and len(small.test[0]) == 60
    assert (small.train[1].argmax(axis=1) == np.arange(10)[:, None]).sum(axis=1).tolist() == [20] * 10
    again = plan_run(factorial_experiment(6, 200), data, seed=1, settings=two)
    assert again.train[1].tolist() == small.train[1].tolist()
    assert small.run_dir.name.startswith("exp06-train-images200-seed0-")
    assert plain.run_dir.name.startswith("exp06-seed0")
    assert factorial_experiment(6, 10_000).study_recipe  # the study's recipe, on fewer images
    assert cpu_seconds(factorial_experiment(6, 10_000), 30, 10_000) < cpu_seconds(factorial_experiment(6), 30, 50_000)
    with pytest.raises(ValueError, match="train_images=400: needs between 100 .ten a class. and the 300"):
        plan_run(factorial_experiment(6, 400), data, settings=RunSettings(epochs=2))


def test_chapter_parameters_take_the_profile_where_none():
    assert chapter6_settings("laptop", {"grid_epochs": None, "fast_seeds": [3]})["fast_seeds"] == [3]
    assert chapter6_settings("laptop", {})["factorial_seeds"] == [0, 1]
    with pytest.raises(ValueError, match="profile 'huge': unknown; choose one of quick, laptop, cpu, full"):
        profile_settings("huge")
    assert set(PROFILES) == {"quick", "laptop", "cpu", "full"}


@pytest.fixture
def thousand_test_images(tmp_path):
    x_train, y_train, x_test, y_test = make_arrays(per_class_train=20, per_class_test=100)
    path = tmp_path / "small.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


def test_a_smoke_test_says_so_once_and_a_judgeable_setting_does_not(thousand_test_images, tmp_path, capsys):
    Chapter(1, data_source="sample", subset=500, epochs=2, out_dir=tmp_path).setup()
    shown = capsys.readouterr().out
    assert shown.count("A smoke test, not an experiment") == 1 and "100 test images" in shown
    Chapter(1, data_source=str(thousand_test_images), epochs=15, batch_size=4, out_dir=tmp_path).setup()
    assert "smoke test" not in capsys.readouterr().out  # 1,000 test images, 15 epochs, 750 steps


def test_reuse_never_trains_and_names_what_is_missing(tmp_path, capsys):
    chapter = Chapter(3, data_source="sample", subset=200, epochs=2, out_dir=tmp_path, runs="train")
    assert chapter.reuse(6) == [] and 6 not in chapter.records
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    assert "Experiment 6 has no finished run with these settings" in capsys.readouterr().out


@pytest.mark.slow
def test_a_cell_that_trains_says_first_what_it_costs_and_a_reused_run_says_nothing(tmp_path, capsys):
    from cifar_utils.costs import CPU_AFTER_SECONDS, CPU_EPOCH_SECONDS

    chapter = Chapter(1, data_source="sample", subset=200, epochs=2, seeds=[0, 1], out_dir=tmp_path, runs="train")
    chapter.records_of(2)
    out = capsys.readouterr().out
    before, after = out.split("Training", 1)[0], out.split("Training", 1)[1]
    assert "seed 0: epoch" not in before  # said before any training
    seconds = 2 * (2 * CPU_EPOCH_SECONDS[2] * 200 / 50_000 + CPU_AFTER_SECONDS[2])
    assert f"2 runs (2 epochs on 200 images): about {seconds:.0f} seconds on 2 CPU cores by the cost table" in out
    assert "seed 0: epoch" in after and "seed 1: epoch" in after
    chapter.records.clear()
    chapter.records_of(2)
    assert "by the cost table" not in capsys.readouterr().out  # both finished: nothing to train, no cost
