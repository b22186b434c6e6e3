"""Run folders under attack: kills, damaged files, two owners, a full disk, leftovers.

Each test reproduces one class of defect found by a hostile tester on b2552c0 (issue #11)
and checks the behaviour that replaced it: never a wrong number, never a run stuck for good.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from cifar_utils import load_cifar10, load_records, run_experiment, storage
from cifar_utils.errors import RunError, RunLockTimeout, RunStorageError
from cifar_utils.runs import identity, lock
from cifar_utils.runs.history import HISTORY_COLUMNS, read_history
from cifar_utils.runs.record import RunRecord
from cifar_utils.runs.settings import RunSettings
from tests.callbacks import Crash

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny():
    return load_cifar10("sample", subset=200)


def crashed_run(data, out_dir, at_epoch, **kwargs):
    """A run interrupted after ``at_epoch`` epochs, with a checkpoint after every epoch."""
    kwargs = {"epochs": 5, "batch_size": 64, "checkpoint_seconds": 0, **kwargs}
    with pytest.raises(KeyboardInterrupt):
        run_experiment(2, data=data, out_dir=out_dir, callbacks=[Crash(at_epoch)], **kwargs)
    (run_dir,) = [p for p in Path(out_dir).iterdir() if p.is_dir()]
    return run_dir, kwargs


def assert_consistent(record: RunRecord, epochs: int):
    """A record claims exactly the epochs its history holds, numbered 0..n-1."""
    history = read_history(Path(record.run_dir) / "history.csv")
    assert record.epochs_completed == epochs == len(history) == len(record.history["epoch"])
    assert history["epoch"].tolist() == list(range(epochs))
    assert record.best_epoch == int(history["val_accuracy"].fillna(-1).idxmax()) + 1
    assert record.test_acc == pytest.approx(100 * history["val_accuracy"].iloc[-1])


# --- a run that never finished (eval_every > 1, resumed) ---------------------------------

@pytest.mark.slow
def test_resume_with_eval_every_keeps_one_history_format(tiny, tmp_path):
    # On b2552c0 the rerun wrote 7-field rows under a 6-field header and every later run
    # failed with a pandas ParserError until the folder was deleted by hand.
    run_dir, kwargs = crashed_run(tiny, tmp_path, at_epoch=2, eval_every=4, epochs=6)
    record = run_experiment(2, data=tiny, out_dir=tmp_path, **kwargs)
    lines = (run_dir / "history.csv").read_text().splitlines()
    assert lines[0] == ",".join(HISTORY_COLUMNS)
    assert {len(line.split(",")) for line in lines} == {len(HISTORY_COLUMNS)}
    frame = pd.read_csv(run_dir / "history.csv")
    evaluated = frame["val_accuracy"].notna().tolist()
    assert evaluated == [True, False, False, True, False, True]  # epochs 1, 4 and 6
    assert_consistent(record, 6)
    assert run_experiment(2, data=tiny, out_dir=tmp_path, **kwargs) == record  # and it stays readable


# --- two processes, one run -------------------------------------------------------------

RUNNER = textwrap.dedent("""
    import json, pathlib, sys, time
    import keras
    from cifar_utils import load_cifar10, run_experiment

    class Gate(keras.callbacks.Callback):
        \"\"\"Holds the first epoch until the test has seen the other process wait.\"\"\"
        def on_epoch_end(self, epoch, logs=None):
            while epoch == 0 and not pathlib.Path(sys.argv[2]).exists():
                time.sleep(0.1)

    record = run_experiment(2, epochs=4, batch_size=64, data=load_cifar10("sample", subset=200),
                            out_dir=sys.argv[1], callbacks=[Gate()])
    print("RESULT", json.dumps({"test_acc": record.test_acc, "epochs": record.epochs_completed}), flush=True)
""")


def _read_until(process, marker, lines):
    for line in process.stdout:
        lines.append(line)
        if marker in line:
            return
    raise AssertionError(f"{marker!r} never printed:\n" + "".join(lines))


@pytest.mark.slow
def test_two_processes_on_one_run_share_its_result(tmp_path):
    # On b2552c0 one process returned 28 epochs at 30.0 % while the file said 30 epochs at
    # 27.5 %, others died on a checkpoint the other process had deleted.
    script, gate = tmp_path / "runner.py", tmp_path / "release"
    script.write_text(RUNNER)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, str(script), str(tmp_path / "runs"), str(gate)]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    first_lines, second_lines = [], []
    _read_until(first, "epoch 1/4", first_lines)  # the first owns the run and is training
    second = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    _read_until(second, "waiting for", second_lines)
    gate.touch()
    first_lines += first.stdout.readlines()
    second_lines += second.stdout.readlines()
    assert first.wait(timeout=600) == 0 and second.wait(timeout=600) == 0, "".join(first_lines + second_lines)
    second_out = "".join(second_lines)
    assert "is training it" in second_out and "reusing finished run" in second_out
    assert "epoch 1/4" not in second_out  # it trained nothing
    (record_path,) = (tmp_path / "runs").glob("*/record.json")
    on_disk = json.loads(record_path.read_text())
    for output in ("".join(first_lines), second_out):
        result = json.loads(output.split("RESULT ", 1)[1].splitlines()[0])
        assert result == {"test_acc": on_disk["test_acc"], "epochs": on_disk["epochs_completed"]} \
            and result["epochs"] == 4
    assert len(pd.read_csv(record_path.with_name("history.csv"))) == 4


# --- an owner that stopped ----------------------------------------------------------------

def _hold(run_dir: Path, label: str, release: threading.Event, touch_every: float | None = None):
    """Hold ``run_dir``'s lock in a thread (flock excludes two opens in one process too),
    idle like a stopped process or writing a file like an owner that trains."""
    held = threading.Event()

    def owner():
        with lock.run_lock(run_dir, label):
            held.set()
            while not release.wait(touch_every or 0.05):
                if touch_every:
                    with open(run_dir / "history.csv", "a") as history:
                        history.write("row\n")

    thread = threading.Thread(target=owner, daemon=True)
    thread.start()
    assert held.wait(10)
    return thread


def test_a_waiter_names_an_owner_that_makes_no_progress_and_gives_up(tiny, tmp_path, monkeypatch, capsys):
    # On 41e0ce3 a second invocation waited forever on a run whose owner was stopped (SIGSTOP).
    run_dir = identity.plan_run(2, tiny, 0, tmp_path, RunSettings(1, 64)).run_dir
    release = threading.Event()
    thread = _hold(run_dir, "exp 2 seed 0", release)
    monkeypatch.setenv("CIFAR_UTILS_LOCK_WAIT", "1.5")
    started = time.monotonic()
    try:
        with pytest.raises(RunLockTimeout) as caught:
            run_experiment(2, epochs=1, batch_size=64, data=tiny, out_dir=tmp_path)
    finally:
        release.set()
        thread.join(5)
    assert time.monotonic() - started < 10
    owner = f"pid {os.getpid()} on {socket.gethostname()} (exp 2 seed 0) since 20"
    message = str(caught.value)
    assert message.startswith(f"{run_dir}: gave up waiting for {owner}") and "changed for 0m02s" in message
    assert "\n" not in message and "resumes from its last checkpoint" in message
    out = capsys.readouterr().out
    assert f"waiting for {run_dir}: {owner}" in out and "giving up if nothing there changes" in out
    assert not (run_dir / "record.json").exists() and not (run_dir / "params.json").exists()


@pytest.mark.slow
def test_a_waiter_keeps_waiting_while_the_owner_writes_then_reuses_its_folder(tmp_path, capsys):
    run_dir, release = tmp_path / "run", threading.Event()
    thread = _hold(run_dir, "exp 2 seed 0", release, touch_every=0.2)
    threading.Timer(3.0, release.set).start()  # the owner trains for 3 s, three times the wait
    started = time.monotonic()
    with lock.run_lock(run_dir, "exp 2 seed 0", wait=1.0):
        assert time.monotonic() - started >= 2.5
        assert (run_dir / ".lock").read_text().startswith(f"pid {os.getpid()} on ")
    thread.join(5)
    out = capsys.readouterr().out
    assert "waiting for" in out and "still waiting for" in out  # a sign of life while it waits


def test_a_bad_lock_wait_setting_is_named(monkeypatch):
    for bad in ("abc", "0", "-5"):
        monkeypatch.setenv("CIFAR_UTILS_LOCK_WAIT", bad)
        with pytest.raises(RunError, match=f"CIFAR_UTILS_LOCK_WAIT='{bad}': give a number of seconds"):
            lock.lock_wait_seconds()
    monkeypatch.setenv("CIFAR_UTILS_LOCK_WAIT", "90")
    assert lock.lock_wait_seconds() == 90
    monkeypatch.delenv("CIFAR_UTILS_LOCK_WAIT")
    assert lock.lock_wait_seconds() == lock.LOCK_WAIT_SECONDS


# --- damaged files ----------------------------------------------------------------------

@pytest.mark.slow
def test_truncated_record_is_named_and_rebuilt(tiny, tmp_path):
    record = run_experiment(2, epochs=2, batch_size=64, data=tiny, out_dir=tmp_path)
    path = Path(record.run_dir) / "record.json"
    path.write_text(path.read_text()[:200])
    with pytest.raises(RunError, match=f"{path}: damaged run record"):
        RunRecord.from_file(path)
    with pytest.warns(UserWarning, match="rebuilt it from history.csv and model.weights.h5"):
        rebuilt = run_experiment(2, epochs=2, batch_size=64, data=tiny, out_dir=tmp_path)
    for name in ("test_acc", "train_acc", "best_test_acc", "best_epoch", "epochs_completed", "params", "history"):
        assert getattr(rebuilt, name) == pytest.approx(getattr(record, name)) if isinstance(
            getattr(record, name), float) else getattr(rebuilt, name) == getattr(record, name), name
    assert RunRecord.from_file(path) == rebuilt  # written back, intact


@pytest.mark.slow
def test_one_bad_record_does_not_hide_the_others(tiny, tmp_path):
    good = run_experiment(2, epochs=1, batch_size=64, data=tiny, out_dir=tmp_path, seeds=[0, 1])
    bad = Path(good[1].run_dir) / "record.json"
    bad.write_text("{")
    with pytest.warns(UserWarning, match=f"{bad}: damaged run record"):
        found = load_records(tmp_path)
    assert found == [good[0]]
    # a record whose history disagrees with its epoch count is damaged too
    data = json.loads((Path(good[0].run_dir) / "record.json").read_text())
    data["epochs_completed"] = 7
    (Path(good[0].run_dir) / "record.json").write_text(json.dumps(data))
    with pytest.raises(RunError, match="claims 7 epochs but its history holds 1"):
        RunRecord.from_file(Path(good[0].run_dir) / "record.json")


@pytest.mark.slow
def test_damaged_record_without_weights_is_set_aside_and_retrained(tiny, tmp_path):
    record = run_experiment(2, epochs=2, batch_size=64, data=tiny, out_dir=tmp_path)
    run_dir = Path(record.run_dir)
    (run_dir / "record.json").write_text("")
    (run_dir / "model.weights.h5").unlink()
    with pytest.warns(UserWarning, match="moved it to record.json.damaged"):
        again = run_experiment(2, epochs=2, batch_size=64, data=tiny, out_dir=tmp_path)
    assert_consistent(again, 2)
    assert (run_dir / "model.weights.h5").exists()


@pytest.mark.slow
def test_damaged_newest_checkpoint_falls_back_to_the_older(tiny, tmp_path, capsys):
    run_dir, kwargs = crashed_run(tiny, tmp_path, at_epoch=4)
    newest = run_dir / "checkpoint-e0004.weights.h5"
    assert newest.exists() and (run_dir / "checkpoint-e0003.weights.h5").exists()
    newest.write_bytes(newest.read_bytes()[:1000])  # truncated
    with pytest.warns(UserWarning, match="checkpoint-e0004.weights.h5: damaged checkpoint"):
        record = run_experiment(2, data=tiny, out_dir=tmp_path, **kwargs)
    assert "resuming after epoch 3" in capsys.readouterr().out
    assert_consistent(record, 5)
    assert not list(run_dir.glob("checkpoint-*")) and not list(run_dir.glob("*.damaged"))


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["deleted", "cut"])
def test_history_that_lost_rows_is_never_paired_with_a_later_checkpoint(tiny, tmp_path, capsys, damage):
    # On b2552c0 the run ended "completed" with epochs_completed=4 of 10 and a wrong best epoch.
    run_dir, kwargs = crashed_run(tiny, tmp_path, at_epoch=4)
    history = run_dir / "history.csv"
    if damage == "deleted":
        history.unlink()
    else:
        history.write_text("".join(history.read_text().splitlines(keepends=True)[:3]))  # header + 2 epochs
    with pytest.warns(UserWarning, match="so resuming after epoch 4 would leave a gap"):
        record = run_experiment(2, data=tiny, out_dir=tmp_path, **kwargs)
    out = capsys.readouterr().out
    assert "resuming after" not in out  # no usable checkpoint within the history: from the start
    assert_consistent(record, 5)


def test_a_row_cut_by_a_kill_is_not_history(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text(",".join(HISTORY_COLUMNS) + "\n0,2.3,0.1,2.2,0.12,1.5\n1,2.1,0.2,2.0,0.2")  # no newline
    assert read_history(path)["epoch"].tolist() == [0]
    path.write_text(",".join(HISTORY_COLUMNS) + "\n0,2.3,0.1,2.2,0.12,1.5\n2,2.1,0.2,2.0,0.2,1.4\n")  # a gap
    assert read_history(path)["epoch"].tolist() == [0]


# --- disk full --------------------------------------------------------------------------

@pytest.mark.slow
def test_full_disk_stops_with_one_clear_error_and_resumes_later(tiny, tmp_path, monkeypatch, capsys):
    real = storage.shutil.disk_usage
    calls = {"n": 0}

    def nearly_full(path):
        calls["n"] += 1
        usage = real(path)
        return usage._replace(free=usage.free if calls["n"] <= 2 else 10_000)  # two checkpoints fit

    monkeypatch.setattr(storage.shutil, "disk_usage", nearly_full)
    kwargs = {"epochs": 5, "batch_size": 64, "checkpoint_seconds": 0}
    with pytest.raises(RunStorageError) as caught:
        run_experiment(2, data=tiny, out_dir=tmp_path, **kwargs)
    message = str(caught.value)
    (run_dir,) = tmp_path.iterdir()
    assert message.startswith(f"{run_dir}: not enough disk space to write checkpoint-e0003.weights.h5")
    assert "MB needed" in message and "0.0 MB free" in message and "resumes" in message
    assert not list(run_dir.glob("tmp-*")) and not (run_dir / "record.json").exists()
    monkeypatch.setattr(storage.shutil, "disk_usage", real)
    record = run_experiment(2, data=tiny, out_dir=tmp_path, **kwargs)
    assert "resuming after epoch 2" in capsys.readouterr().out
    assert_consistent(record, 5)


@pytest.mark.slow
def test_no_space_while_writing_is_the_same_clear_error(tiny, tmp_path, monkeypatch):
    def full(self, path, *args, **kwargs):
        Path(path).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(keras.Model, "save_weights", full)
    with pytest.raises(RunStorageError, match="not enough disk space to write checkpoint-e0001"):
        run_experiment(2, epochs=2, batch_size=64, data=tiny, out_dir=tmp_path, checkpoint_seconds=0)
    (run_dir,) = tmp_path.iterdir()
    assert not list(run_dir.glob("tmp-*")) and not list(run_dir.glob("checkpoint-*"))


# --- leftovers --------------------------------------------------------------------------

@pytest.mark.slow
def test_leftover_temp_files_are_cleaned_when_the_run_is_next_touched(tiny, tmp_path):
    record = run_experiment(2, epochs=1, batch_size=64, data=tiny, out_dir=tmp_path)
    run_dir = Path(record.run_dir)
    leftovers = [run_dir / ".record.json.12345.tmp", run_dir / "tmp-checkpoint-e0001.weights.h5",
                 run_dir / ".history.csv.999.tmp", run_dir / ".params.json.7.tmp"]
    for path in leftovers:
        path.write_text("half")
    assert run_experiment(2, epochs=1, batch_size=64, data=tiny, out_dir=tmp_path) == record
    assert not any(path.exists() for path in leftovers)
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock", "history.csv", "model.weights.h5",
                                                         "params.json", "record.json", "test_predictions.npz"]


@pytest.mark.slow
def test_records_never_mix_data_sources(tiny, tmp_path):
    """The same experiment and seed on two datasets are two runs, never one."""
    other = load_cifar10("sample", subset=200, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no damaged-file or fallback warnings
        a = run_experiment(2, epochs=1, batch_size=64, data=tiny, out_dir=tmp_path)
        b = run_experiment(2, epochs=1, batch_size=64, data=other, out_dir=tmp_path)
    assert a.run_dir != b.run_dir and a.params["data_fingerprint"] != b.params["data_fingerprint"]
    raw = load_cifar10("sample", subset=200, normalize=False)
    assert identity.data_fingerprint(raw) == a.params["data_fingerprint"]  # one id whatever the scale
    assert np.isfinite(a.test_acc) and np.isfinite(b.test_acc)
