"""The training pool: runs scheduled one by one on worker processes, failures named, a dead
worker replaced, GPUs shared."""

import os
import signal
import threading
import time
from pathlib import Path

from cifar_utils.pool import RunTask, run_pool, worker_environment
from cifar_utils.training import RunRecord


def task(out, experiment=2, seed=0, **kwargs):
    return RunTask(experiment, seed, str(out), data_source="sample", subset=200, epochs=1, batch_size=64, **kwargs)


def test_pool_trains_every_run_names_a_failure_and_finishes_the_others(tmp_path):
    lines = []
    variant = task(tmp_path, 9, 0, variant={"dropout": 0.5}, variant_label="dropout=0.5")
    tasks = [task(tmp_path, 2, 0), task(tmp_path, 2, 1), variant,
             RunTask(2, 0, str(tmp_path), data_source=str(tmp_path / "missing.npz"), epochs=1)]
    result = run_pool(tasks, jobs=2, say=lines.append)
    assert sorted(t.label for t in result.finished) == ["exp 2 seed 0", "exp 2 seed 1", "exp 9 [dropout=0.5] seed 0"]
    ((failed, detail),) = result.failed
    assert failed.data_source.endswith("missing.npz") and "CifarDataError" in detail and "missing.npz" in detail
    text = "\n".join(lines)
    assert "pool: 4 runs on 2 worker(s)" in text and "pool: 4/4 runs done" in text and "ETA" in text
    assert "FAILED: CifarDataError" in text
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
        if ppid == parent and "cifar_utils.pool" in command:
            found.append(int(entry.name))
    return found


def test_a_killed_worker_fails_its_run_only_and_is_replaced(tmp_path):
    lines = []
    slow = RunTask(2, 5, str(tmp_path), data_source="sample", subset=200, epochs=40, batch_size=16)
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


def test_workers_share_gpus_round_robin_without_preallocating():
    env = worker_environment(3, ["0", "1"])
    assert env["CUDA_VISIBLE_DEVICES"] == "1"
    assert env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false" and env["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
    assert "CUDA_VISIBLE_DEVICES" not in worker_environment(0, []) or os.environ.get("CUDA_VISIBLE_DEVICES")


def test_no_run_starts_after_the_deadline(tmp_path):
    lines = []
    result = run_pool([task(tmp_path, 2, s) for s in range(3)], jobs=1, say=lines.append, deadline=1)
    assert len(result.finished) == 1 and not result.failed  # the first started at once and finished
    assert sorted(t.seed for t in result.not_started) == [1, 2]
    assert "deadline of 1 s reached: 2 run(s) not started" in "\n".join(lines)
