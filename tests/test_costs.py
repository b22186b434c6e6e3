"""The cost table: every experiment has a measured cost, and a run's estimate scales with it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cifar_utils import EXPERIMENTS, run_plan
from cifar_utils import run_all as driver
from cifar_utils.costs import CPU_AFTER_SECONDS, CPU_EPOCH_SECONDS, cpu_run_seconds, priced_as
from cifar_utils.runs.pool import RunTask
from cifar_utils.runs.settings import RunSettings

ROOT = Path(__file__).resolve().parents[1]


def test_every_experiment_has_a_cost_measured_or_priced_by_its_network():
    numbers = {e.number for e in EXPERIMENTS}
    assert set(CPU_EPOCH_SECONDS) == set(CPU_AFTER_SECONDS) <= numbers
    measured = [e for e in EXPERIMENTS if e.number <= 21]  # the course the cost table measured (MEASURED_ON)
    assert all(priced_as(e) == e.number for e in measured)
    assert all(priced_as(e) in CPU_EPOCH_SECONDS for e in EXPERIMENTS)  # a later line: its network's, or an upper one
    assert all(seconds > 0 for seconds in [*CPU_EPOCH_SECONDS.values(), *CPU_AFTER_SECONDS.values()])
    # The VGG-like network costs more an epoch than the 4-layer one it grew from.
    assert CPU_EPOCH_SECONDS[15] > 2 * CPU_EPOCH_SECONDS[2]


def test_a_runs_estimate_scales_with_its_epochs_and_images():
    def task(**kw):
        epochs = kw.pop("epochs", 30)
        fields = dict(experiment=6, seed=0, out_dir="o", data_source=None, subset=None,
                      settings=RunSettings(epochs), variant={}, variant_label=None, speed=None, log_every=None,
                      force=False)
        return RunTask(**{**fields, **kw})

    full = cpu_run_seconds(task())
    assert full == pytest.approx(30 * CPU_EPOCH_SECONDS[6] + CPU_AFTER_SECONDS[6])
    assert cpu_run_seconds(task(subset=5000)) == pytest.approx(30 * CPU_EPOCH_SECONDS[6] / 10 + CPU_AFTER_SECONDS[6])
    assert cpu_run_seconds(task(epochs=None)) == pytest.approx(300 * CPU_EPOCH_SECONDS[6] + CPU_AFTER_SECONDS[6])
    assert cpu_run_seconds(task(experiment=21, epochs=None)) == pytest.approx(
        12 * CPU_EPOCH_SECONDS[21] + CPU_AFTER_SECONDS[21])
    assert task().cost() == full  # the pool starts long runs first by the same figure


def test_the_cpu_profile_warning_uses_the_cost_table(monkeypatch):
    monkeypatch.setattr(run_plan, "gpu_ids", lambda: [])
    args = driver.parse_args(["--profile", "cpu", "--data", "x.npz"])
    tasks = driver.training_tasks(args, driver.chapters(ROOT / "notebooks", []))
    hours = sum(cpu_run_seconds(t) for t in tasks) / 3600
    warning = driver.cost_warning(args, tasks)
    assert f"{len(tasks)} runs" in warning and (f"about {hours:.0f} hours" in warning or "minutes" in warning)
    assert "AMD EPYC" in warning and "up to 5x" in warning


@pytest.mark.slow
def test_export_script_adds_runs_and_names_what_is_missing(tmp_path):
    from tests.factories import make_runs

    out = tmp_path / "out"
    for record in make_runs(2, [40.0, 41.0], epochs=2, batch_size=64):
        run_dir = out / record.run_dir
        run_dir.mkdir(parents=True)
        record.run_dir = str(run_dir)
        (run_dir / "record.json").write_text(record.to_json())
        (run_dir / "history.csv").write_text("epoch,loss\n0,1.0\n1,0.9\n")
    (out / "profile.json").write_text(json.dumps({"profile": "quick", "data": "sample", "seeds": [0, 1]}))
    done = subprocess.run([sys.executable, "scripts/export_reference.py", str(out), str(tmp_path / "ref")],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "exported 2 finished runs" in done.stdout
    assert "missing: exp 1 seed 0" in done.stdout and "missing: exp 2 seed" not in done.stdout
    assert "not yet in it: chapter 01 (2 of 4), chapter 02" in done.stdout
    assert sorted(p.name for p in (tmp_path / "ref" / "runs").iterdir()) == ["exp02-seed0-", "exp02-seed1-"]
