"""The training pool: runs scheduled one by one on worker processes, failures named, a dead
worker replaced, GPUs shared."""

import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from cifar_utils import run_all as driver
from cifar_utils.costs import CPU_AFTER_SECONDS, CPU_EPOCH_SECONDS
from cifar_utils.runs import pool
from cifar_utils.runs.pool import STALL_SECONDS, RunTask, heartbeat, run_order, run_pool, train_task, worker_environment
from cifar_utils.runs.progress import MARK
from cifar_utils.runs.record import RunRecord
from cifar_utils.runs.settings import RunSettings
from tests.fake_attempts import attempts, gone


def task(out, experiment=2, seed=0, **kwargs):
    return RunTask(experiment, seed, str(out), data_source="sample", subset=200, settings=RunSettings(1, 64), **kwargs)


def test_one_worker_starts_the_shortest_run_first_several_the_longest():
    # about 44, 10 and 36 minutes on the table
    tasks = [RunTask(n, 0, "out", settings=RunSettings(30)) for n in (15, 2, 8)]
    assert [t.experiment for t in run_order(tasks, 1)] == [2, 8, 15]
    assert [t.experiment for t in run_order(tasks, 2)] == [15, 8, 2]


@pytest.mark.slow
def test_pool_trains_every_run_names_a_failure_and_finishes_the_others(tmp_path):
    lines = []
    variant = task(tmp_path, 9, 0, variant={"dropout": 0.5}, variant_label="dropout=0.5")
    tasks = [task(tmp_path, 2, 0), task(tmp_path, 2, 1), variant,
             RunTask(2, 0, str(tmp_path), data_source=str(tmp_path / "missing.npz"), settings=RunSettings(1))]
    result = run_pool(tasks, jobs=2, say=lines.append, is_progress=driver.is_progress)
    assert sorted(t.label for t in result.finished) == ["exp 2 seed 0", "exp 2 seed 1", "exp 9 [dropout=0.5] seed 0"]
    ((failed, detail),) = result.failed
    assert failed.data_source.endswith("missing.npz") and "CifarDataError" in detail and "missing.npz" in detail
    text = "\n".join(lines)
    assert "pool: 4 runs on 2 worker(s)" in text and "pool: 4/4 runs done" in text and "ETA" in text
    assert "FAILED: CifarDataError" in text
    assert re.search(r"seed 1: epoch 1/1 .* ETA", text) and re.search(r"seed 1: completed in ", text)
    assert MARK not in text
    records = [RunRecord.from_file(p) for p in tmp_path.glob("*/record.json")]
    assert sorted((r.experiment, r.seed) for r in records) == [(2, 0), (2, 1), (9, 0)]
    # the variant and the settings reached the worker
    (record,) = [r for r in records if r.experiment == 9]
    assert record.variant == "dropout=0.5" and record.params["spec"]["dropout"] == 0.5
    assert record.params["epochs"] == 1 and record.params["batch_size"] == 64


def _workers_of(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        ppid = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
        if ppid == parent and "cifar_utils.runs.pool" in command:
            found.append(int(entry.name))
    return found


@pytest.mark.slow
def test_a_killed_worker_fails_its_run_only_and_is_replaced(tmp_path):
    lines = []
    slow = RunTask(2, 5, str(tmp_path), data_source="sample", subset=200, settings=RunSettings(40, 16))
    quick = [task(tmp_path, 2, 0), task(tmp_path, 2, 1)]
    killed = []

    def killer():  # once the slow run is training, kill the one worker holding it
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed:
            if any("seed 5: epoch" in line for line in lines):
                for pid in _workers_of(os.getpid()):
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            time.sleep(0.2)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    result = run_pool([slow, *quick], jobs=1, say=lines.append)  # one worker: the slow run goes first
    thread.join(timeout=5)
    assert killed, "\n".join(lines)
    ((failed, detail),) = result.failed
    assert failed.seed == 5 and "the worker process died" in detail
    assert sorted(t.seed for t in result.finished) == [0, 1]  # a new worker took the rest


def test_workers_share_gpus_round_robin_without_preallocating(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    env = worker_environment(3, ["0", "1"])
    assert env["CUDA_VISIBLE_DEVICES"] == "1"
    assert env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false" and env["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
    # Without GPUs a worker inherits the variable as it is, set or not.
    assert worker_environment(0, [])["CUDA_VISIBLE_DEVICES"] == "0,1"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert "CUDA_VISIBLE_DEVICES" not in worker_environment(0, [])


@pytest.mark.slow
def test_no_run_starts_after_the_deadline(tmp_path):
    lines = []
    result = run_pool([task(tmp_path, 2, s) for s in range(3)], jobs=1, say=lines.append, deadline=1)
    assert len(result.finished) == 1 and not result.failed  # the first started at once and finished
    assert sorted(t.seed for t in result.not_started) == [1, 2]
    assert "deadline of 1 s reached: 2 run(s) not started" in "\n".join(lines)


# --- hung workers, the deadline, the last line, Ctrl-C (fake workers, no training) ---------

FAKE_WORKER = (sys.executable, str(Path(__file__).with_name("fake_pool_worker.py")))


@pytest.fixture
def fake_workers(monkeypatch):
    monkeypatch.setattr(pool, "WORKER_COMMAND", FAKE_WORKER)


@pytest.mark.slow
def test_a_hung_worker_is_killed_and_its_run_retried_once_then_failed_by_name(tmp_path, fake_workers):
    # On 41e0ce3 a worker stopped with SIGSTOP made the pool wait for ever.
    lines = []
    started = time.monotonic()
    result = run_pool([task(tmp_path, 2, s) for s in (0, 1, 2, 3)], jobs=2, say=lines.append, stall=2)
    text = "\n".join(lines)
    assert time.monotonic() - started < 60, text
    assert sorted(t.seed for t in result.finished) == [0, 1, 3], text  # 3 beat for twice the stall time
    ((failed, detail),) = result.failed
    assert failed.seed == 2 and "no output and no heartbeat for 2 s" in detail and "a second time" in detail
    assert "exp 2 seed 1: no output and no heartbeat for 2 s: its worker (pid " in text and "retrying it once" in text
    assert [len(attempts(tmp_path, s)) for s in (0, 1, 2, 3)] == [1, 2, 2, 1]  # retried once, not more
    assert all(gone(pid) for s in (1, 2) for pid in attempts(tmp_path, s))  # no stopped worker left behind
    assert lines[-1] == "pool: 3 of 4 runs finished; 1 FAILED: exp 2 seed 2"


@pytest.mark.slow
def test_the_deadline_holds_while_a_worker_hangs(tmp_path, fake_workers, monkeypatch):
    # On 41e0ce3 --deadline was ignored while a worker hung: the pool waited for ever.
    # The deadline comes once the hanging run has started, however slowly this machine
    # starts a worker (a fixed 1 s can pass before the first run on a loaded machine).
    monkeypatch.setattr(pool.Tally, "expired", lambda self: bool(attempts(tmp_path, 2)))
    lines = []
    started = time.monotonic()
    result = run_pool([task(tmp_path, 2, 2), task(tmp_path, 2, 0)], jobs=1, say=lines.append, deadline=1, stall=2)
    assert time.monotonic() - started < 30
    ((failed, detail),) = result.failed
    assert failed.seed == 2 and "after the deadline, so not retried" in detail
    assert [t.seed for t in result.not_started] == [0] and not result.finished
    assert len(attempts(tmp_path, 2)) == 1 and gone(attempts(tmp_path, 2)[0])
    assert lines[-1] == ("pool: 0 of 2 runs finished; 1 FAILED: exp 2 seed 2; deadline of 1 s reached: "
                         "1 run(s) not started: exp 2 seed 0")


@pytest.mark.slow
def test_the_last_line_says_how_many_finished_and_which_failed(tmp_path, fake_workers):
    # On 41e0ce3 the pool said "all runs finished" right after a run failed.
    lines = []
    result = run_pool([task(tmp_path, 2, s) for s in (0, 5, 3)], jobs=1, say=lines.append)
    assert len(result.finished) == 2 and [t.seed for t, _ in result.failed] == [5]
    assert not any("all runs finished" in line for line in lines)
    assert "pool: 3/3 runs done (exp 2 seed 3 done: completed" in lines[-2] and "ETA" not in lines[-2]
    assert lines[-1] == "pool: 2 of 3 runs finished; 1 FAILED: exp 2 seed 5"


@pytest.mark.slow
def test_a_runs_progress_line_reaches_the_pool_display_whatever_its_words(tmp_path, fake_workers):
    # run_all once picked a worker's lines by words of the training code's messages
    # (": epoch ", "resuming after", ...): a reworded message silently left the display.
    lines = []
    result = run_pool([task(tmp_path, 2, 4)], jobs=1, say=lines.append, is_progress=driver.is_progress)
    assert [t.seed for t in result.finished] == [4]
    assert "exp 2 seed 4: words no driver knows" in lines
    assert not any("chatter" in line or MARK in line for line in lines), lines


@pytest.mark.slow
def test_an_interrupted_pool_kills_its_workers_and_says_nothing_more(tmp_path, fake_workers):
    lines = []

    def say(line):
        lines.append(line)
        if "seed 2: epoch" in line:  # the worker is about to stop itself: interrupt the driver
            threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()

    with pytest.raises(KeyboardInterrupt):
        run_pool([task(tmp_path, 2, 2), task(tmp_path, 2, 0)], jobs=1, say=say, stall=60)
    (pid,) = attempts(tmp_path, 2)
    time.sleep(0.5)
    assert gone(pid) and lines[-1].endswith("seed 2: epoch 1/1") and not attempts(tmp_path, 0)


@pytest.mark.slow
def test_a_training_worker_beats_while_batches_run(tmp_path):
    beats = []
    two_epochs = RunTask(2, 0, str(tmp_path), data_source="sample", subset=200, settings=RunSettings(2, 64))
    train_task(two_epochs, [heartbeat(lambda: beats.append(time.monotonic()), every=0)])
    assert len(beats) > 2 * 4  # every batch of 2 epochs of 200 images at batch 64, and their evaluations
    assert STALL_SECONDS >= 5 * max(CPU_AFTER_SECONDS.values()) and STALL_SECONDS >= 5 * max(
        CPU_EPOCH_SECONDS.values())  # silence of a healthy worker on a 5x slower CPU than the cost table's
