"""Speed settings: each lever leaves the computation alone, on every backend it claims to; the
one that does not (bfloat16 precision) names its runs."""

import argparse
import json
import os
import subprocess
import sys
import textwrap
import warnings

import keras
import numpy as np
import pytest

from cifar_utils import Speed, build_model, load_cifar10, run_experiment
from cifar_utils.plots import plot_history
from cifar_utils.run_all import parse_args
from cifar_utils.runs.identity import evaluation_epochs, find_finished, plan_run
from cifar_utils.runs.settings import RunSettings
from cifar_utils.speed import add_speed_arguments, speed_flags, speed_from_arguments


@pytest.fixture(scope="module")
def tiny():
    return load_cifar10("sample", subset=200)


def test_speed_accepts_dicts_and_names_bad_values():
    assert Speed.coerce(None) == Speed()
    assert Speed.coerce({"steps_per_execution": 4}) == Speed(steps_per_execution=4)
    assert Speed(steps_per_execution=4, data_on_device=True).describe() == "steps_per_execution=4, data_on_device"
    assert Speed().describe() == "Keras defaults"
    with pytest.raises(ValueError, match=r"unknown speed setting\(s\) \['mixed_precision'\]"):
        Speed.coerce({"mixed_precision": True})
    for bad in ({"steps_per_execution": 0}, {"eval_batch_size": -1}, {"jit_compile": "yes"},
                {"data_on_device": 1}, {"steps_per_execution": 2.0}, {"precision": "float16"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            Speed.coerce(bad)
    with pytest.raises(TypeError, match="speed must be"):
        Speed.coerce("fast")


def test_evaluation_epochs_keep_first_and_last():
    assert evaluation_epochs(5) == [1, 2, 3, 4, 5]
    assert evaluation_epochs(10, 4) == [1, 4, 8, 10]
    assert evaluation_epochs(300, 5)[:3] == [1, 5, 10] and len(evaluation_epochs(300, 5)) == 61
    assert evaluation_epochs(1, 5) == [1]


@pytest.mark.slow
def test_speed_settings_keep_the_numbers_and_the_run_name(tiny, tmp_path):
    plain = run_experiment(2, epochs=2, batch_size=64, data=tiny, out_dir=tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # on torch, several steps per call fall back to one, with a warning
        fast = run_experiment(2, epochs=2, batch_size=64, data=tiny, out_dir=tmp_path / "fast",
                              speed={"steps_per_execution": 2, "eval_batch_size": 50})
    assert fast.run_dir.rsplit("/", 1)[1] == plain.run_dir.rsplit("/", 1)[1]
    effective = 1 if keras.backend.backend() == "torch" else 2  # the record says what ran
    assert fast.speed["steps_per_execution"] == effective and plain.speed == Speed().as_dict()
    # Same batches, same order, same random draws: equal to float rounding.
    np.testing.assert_allclose(fast.history["loss"], plain.history["loss"], rtol=1e-5)
    np.testing.assert_allclose(fast.history["val_loss"], plain.history["val_loss"], rtol=1e-5)


@pytest.mark.slow
def test_data_on_device_trains_the_same_model(tiny, tmp_path):
    record = run_experiment(2, epochs=2, batch_size=64, data=tiny, out_dir=tmp_path,
                            speed={"data_on_device": True, "jit_compile": True})
    assert record.status == "completed" and record.epochs_completed == 2
    assert record.speed["data_on_device"] and record.param_count == 24522
    assert record.history["loss"][1] < record.history["loss"][0]


JAX_SCRIPT = textwrap.dedent("""
    import json, sys, tempfile
    from cifar_utils import get_experiment, load_cifar10, run_experiment
    data = load_cifar10("sample", subset=200)
    # experiment 2's small network with dropout and augmentation: random numbers every step
    exp = get_experiment(2).vary("dropout+augment", dropout=0.3, augment="shift_flip")
    speeds = [None, {"steps_per_execution": 3}, {"data_on_device": True, "eval_batch_size": 100}]
    out = {}
    for i, speed in enumerate(speeds):
        # 200 images in batches of 48, 3 per call: calls of 144 and 56 images, the last one a
        # full step and a partial one (the case a one-iteration lax.scan got wrong).
        r = run_experiment(exp, epochs=2, batch_size=48, data=data, out_dir=tempfile.mkdtemp(), speed=speed)
        out[i] = [r.history["loss"], r.history["val_loss"], r.backend]
    json.dump(out, sys.stdout)
""")


@pytest.mark.slow
def test_jax_fused_steps_and_device_batches_are_bit_identical():
    pytest.importorskip("jax")
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    done = subprocess.run([sys.executable, "-c", JAX_SCRIPT], capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = json.loads(done.stdout.strip().splitlines()[-1])
    assert {run[2] for run in runs.values()} == {"jax"}
    for i in "12":
        assert runs[i][0] == runs["0"][0], (i, runs[i][0], runs["0"][0])  # training: to the last bit
        np.testing.assert_allclose(runs[i][1], runs["0"][1], rtol=1e-6)  # evaluation batch size may differ


@pytest.mark.slow
def test_eval_every_thins_the_test_curve_and_names_the_run(tiny, tmp_path):
    every = run_experiment(2, epochs=4, batch_size=64, data=tiny, out_dir=tmp_path, eval_every=3)
    val = np.array(every.history["val_accuracy"])
    assert np.isnan(val[1]) and np.isfinite(val[[0, 2, 3]]).all()  # epochs 1, 3 and 4
    assert every.test_acc == pytest.approx(100 * val[3]) and every.params["eval_every"] == 3
    each = run_experiment(2, epochs=4, batch_size=64, data=tiny, out_dir=tmp_path)
    assert each.run_dir != every.run_dir and each.params["eval_every"] == 1
    (found,) = find_finished(2, tiny, RunSettings(4, 64, eval_every=3), out_dir=tmp_path)
    assert found.run_dir == every.run_dir
    figure = plot_history(every)
    test_line = [line for line in figure.axes[1].lines if line.get_label() == "test"][0]
    assert list(test_line.get_xdata()) == [1, 3, 4]


def test_steps_seam_per_backend(monkeypatch):
    from cifar_utils import backend

    model = build_model(2)
    monkeypatch.setattr(backend, "backend_name", lambda: "tensorflow")
    assert backend.prepare_steps(model, 8, 512) == (8, 512)
    monkeypatch.setattr(backend, "backend_name", lambda: "torch")
    with pytest.warns(UserWarning, match="torch backend"):
        assert backend.prepare_steps(model, 8, 512) == (1, 512)
    with pytest.warns(UserWarning, match="torch.compile"):
        assert backend.usable_jit_compile(True) is False
    assert backend.usable_jit_compile("auto") == "auto"
    monkeypatch.setattr(backend, "backend_name", lambda: "jax")
    assert backend.prepare_steps(model, 1, 512) == (1, 512) and "train_step" not in vars(model)
    assert backend.prepare_steps(model, 8, 512) == (1, 4096) and "train_step" in vars(model)
    assert backend.usable_jit_compile(True) is True
    with pytest.raises(ValueError, match="positive integer"):
        backend.prepare_steps(model, 0, 512)


def test_run_all_passes_speed_settings_to_the_notebooks():
    args = parse_args(["--quick", "--steps-per-execution", "4", "--data-on-device", "--eval-every", "5"])
    assert args.speed == Speed(steps_per_execution=4, data_on_device=True).as_dict() and args.eval_every == 5
    with pytest.raises(SystemExit):
        parse_args(["--quick", "--eval-batch-size", "0"])


@pytest.mark.slow
def test_bench_script_measures_and_projects(tmp_path):
    out = tmp_path / "bench.json"
    command = [sys.executable, "bench/epoch_speed.py", "--data", "sample", "--subset", "500", "--experiments", "1",
               "2", "--epochs", "2", "--batch-size", "128", "--parallel", "2", "--eval-batch-size", "250",
               "--json", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert [row["experiment"] for row in result["rows"]] == [1, 2]
    assert result["speed"]["eval_batch_size"] == 250 and result["parallel"] == 2
    for row in result["rows"]:
        assert row["train_size"] == 500 and row["seconds_per_epoch"] > 0
        assert row["images_per_second"] == pytest.approx(500 / row["seconds_per_epoch"])
    # Two runs two at a time: the projection is the longer one, not the sum.
    per_run = [299 * r["seconds_per_epoch"] + r["first_epoch_seconds"] for r in result["rows"]]
    assert result["projected_full_profile_seconds"] == pytest.approx(max(per_run))
    assert "projected wall time of 300 epochs" in done.stdout


@pytest.mark.slow
def test_precision_bench_times_both_precisions_in_pairs(tmp_path):
    out = tmp_path / "precision.json"
    command = [sys.executable, "bench/precision.py", "--data", "sample", "--experiments", "1", "--images", "128",
               "--epochs", "3", "--json", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    (row,) = result["rows"]
    assert row["experiment"] == 1 and result["images"] == 128 and "features" in result["cpu_details"]
    for precision in ("float32", "mixed_bfloat16"):
        assert len(row[f"{precision}_epoch_seconds"]) == 3  # one compiling epoch, then two timed pairs
    low, high = row["speed_up_range"]
    assert 0 < low <= row["speed_up"] <= high
    # Same images, order and initial weights: bfloat16 ends near the float32 loss (raw pixels, exp 1)
    assert abs(row["float32_final_loss"] - row["mixed_bfloat16_final_loss"]) < 0.05 * row["float32_final_loss"]


def test_full_report_banner_names_evaluation_and_speed_settings():
    from cifar_utils.report import _banner

    profile = {"profile": "full", "epochs": 300, "batch_size": 512, "seeds": [0], "data": "/tmp/cifar10.npz",
               "backend": "jax", "device": "NVIDIA H200", "eval_every": 5,
               "speed": Speed(steps_per_execution=8).describe(), "started": "2026-11-28 10:00 UTC"}
    text = _banner(profile)
    assert "test set evaluated every 5 epochs" in text and "speed settings: steps_per_execution=8" in text
    assert "Keras backend jax, on NVIDIA H200" in text
    assert "every epoch" in _banner({**profile, "eval_every": 1})


@pytest.mark.slow
def test_step_overhead_bench_runs_every_setting(tmp_path):
    out = tmp_path / "overhead.json"
    done = subprocess.run([sys.executable, "bench/step_overhead.py", "--epochs", "2", "--json", str(out)],
                          capture_output=True, text=True, timeout=600,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {row["setting"]: row for row in json.loads(out.read_text())["rows"]}
    assert list(rows) == ["defaults", "eval batch 2500", "steps 8", "data on device", "all three"]
    assert all(row["seconds_per_epoch"] > 0 for row in rows.values())
    # Settings that keep the batches and their order end with the same weights.
    for name in ("eval batch 2500", "steps 8"):
        assert rows[name]["weight_checksum"] == pytest.approx(rows["defaults"]["weight_checksum"], rel=1e-4)


@pytest.mark.slow
def test_headline_bench_times_each_seed_in_its_own_process(tmp_path):
    out = tmp_path / "headline.json"
    runs = tmp_path / "runs"
    command = [sys.executable, "bench/headline.py", "--data", "sample", "--subset", "300", "--seeds", "0", "1",
               "--set", "21:epochs=1", "--json", str(out), "--out", str(runs)]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=root)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert [r["seed"] for r in result["runs"]] == [0, 1]
    kept = sorted(p.parent.name for p in runs.glob("*/record.json"))  # the runs stay, as a reference's would
    assert kept == sorted(os.path.basename(r["run_dir"]) for r in result["runs"]) and len(kept) == 2
    again = subprocess.run([*command[:command.index("--json")], "--json", str(tmp_path / "again.json"),
                            "--out", str(runs)], capture_output=True, text=True, timeout=900, cwd=root)
    assert again.returncode != 0 and "exists (a finished or partial run)" in again.stdout + again.stderr
    assert not (tmp_path / "again.json").exists()  # a reused run is never timed as one
    for run in result["runs"]:
        assert len(run["val_curve"]) == len(run["epoch_seconds"]) == run["epochs"] == 1
        assert run["train_size"] + run["validation_size"] == 300 and run["test_size"] > 0
        assert run["wall_seconds"] > run["run_seconds"] >= run["train_seconds"] > 0  # start-up is counted
    summary = result["summary"]
    assert summary["seeds"] == [0, 1] and summary["goal_met"] is False  # one epoch on 300 images
    assert summary["test_acc_mean"] == pytest.approx(sum(r["test_acc"] for r in result["runs"]) / 2)
    assert "| 21. Airbench-style network [epochs=1] | 2 |" in done.stdout


def test_bfloat16_names_its_runs_and_float32_names_nothing_new(tiny, tmp_path):
    plain = plan_run(2, tiny, 0, tmp_path)
    assert "precision" not in plain.params and plan_run(2, tiny, 0, tmp_path, RunSettings(precision="float32")) == plain
    mixed = plan_run(2, tiny, 0, tmp_path, RunSettings(precision="mixed_bfloat16"))
    assert mixed.params == {**plain.params, "precision": "mixed_bfloat16"} and mixed.run_dir != plain.run_dir
    with pytest.raises(ValueError, match="precision must be one of"):
        plan_run(2, tiny, 0, tmp_path, RunSettings(precision="bfloat16"))
    assert Speed(precision="mixed_bfloat16").describe() == "precision=mixed_bfloat16"


def test_a_bfloat16_model_computes_in_bfloat16_and_scores_in_float32():
    model = build_model(21, seed=0, precision="mixed_bfloat16")
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs and {layer.compute_dtype for layer in convs} == {"bfloat16"}
    assert {v.dtype for v in model.trainable_variables} == {"float32"}  # the weights stay float32
    logits = model(np.zeros((2, 32, 32, 3), "float32"), training=False)
    assert model.layers[-1].name == "logits_float32" and keras.ops.convert_to_numpy(logits).dtype == np.float32
    assert keras.config.dtype_policy().name == "float32"  # the global policy is left as it was
    assert len(build_model(21, seed=0).layers) == len(model.layers) - 1


@pytest.mark.slow
def test_a_bfloat16_run_is_kept_apart_and_found_by_its_precision(tiny, tmp_path):
    speed = {"precision": "mixed_bfloat16"}
    mixed = run_experiment(2, epochs=1, batch_size=64, data=tiny, out_dir=tmp_path, speed=speed)
    assert mixed.params["precision"] == "mixed_bfloat16" and mixed.speed["precision"] == "mixed_bfloat16"
    assert 0 <= mixed.test_acc <= 100
    assert find_finished(2, tiny, RunSettings(1, 64), out_dir=tmp_path) == []  # never stands in for a float32 run
    assert find_finished(2, tiny, RunSettings(1, 64, precision="mixed_bfloat16"), out_dir=tmp_path) == [mixed]
    plain = run_experiment(2, epochs=1, batch_size=64, data=tiny, out_dir=tmp_path)
    assert plain.run_dir != mixed.run_dir and "precision" not in plain.params


def test_the_precision_flag_reaches_the_runs_and_round_trips():
    assert parse_args(["--precision", "mixed_bfloat16"]).speed["precision"] == "mixed_bfloat16"
    assert parse_args([]).speed["precision"] == "float32"
    parser = argparse.ArgumentParser()
    add_speed_arguments(parser)
    for speed in (Speed(), Speed(precision="mixed_bfloat16", steps_per_execution=4)):
        assert speed_from_arguments(parser, parser.parse_args(speed_flags(speed))) == speed
