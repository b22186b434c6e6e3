"""The pool on a Dask cluster: a local two-worker cluster trains every run, names a failure,
and survives a worker killed mid-run without losing or retraining a finished run."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed", reason="Dask distributed is not installed (pip install 'cifar-utils[cluster]')")

from distributed import Client  # noqa: E402

from cifar_utils.runs import cluster, pool  # noqa: E402
from cifar_utils.runs.cluster import (  # noqa: E402
    ClusterError,
    _force_once,
    local_cluster,
    parse_address,
    run_on_cluster,
)
from cifar_utils.runs.history import read_history  # noqa: E402
from cifar_utils.runs.pool import RunTask  # noqa: E402
from cifar_utils.runs.record import RunRecord  # noqa: E402
from cifar_utils.runs.settings import RunSettings  # noqa: E402
from tests.fake_attempts import attempts, gone  # noqa: E402


def task(out, experiment=2, seed=0, **kwargs):
    return RunTask(experiment, seed, str(out), data_source="sample", subset=200, settings=RunSettings(1, 64), **kwargs)


def records(out: Path) -> dict[str, RunRecord]:
    return {p.parent.name: RunRecord.from_file(p) for p in out.glob("*/record.json")}


def test_addresses_are_checked_before_anything_starts():
    assert parse_address("local:2") == ("local", 2)
    assert parse_address("tcp://gpu-head:8786") == ("remote", "tcp://gpu-head:8786")
    assert parse_address("gpu-head:8786") == ("remote", "tcp://gpu-head:8786")
    for bad in ("local:0", "local:x", "local:", ""):
        with pytest.raises(ValueError, match="local:N|scheduler address"):
            parse_address(bad)


def _is_descendant(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return False
        pid = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
    return False


@pytest.mark.slow
def test_a_local_cluster_trains_every_run_names_a_failure_and_survives_a_killed_worker(tmp_path):
    """One cluster for both checks: every worker start imports TensorFlow, the slow part here."""
    epochs = 10
    slow = RunTask(2, 5, str(tmp_path), data_source="sample", subset=200, settings=RunSettings(epochs, 16),
                   log_every=5, checkpoint_seconds=0)  # a checkpoint after every epoch
    missing = RunTask(2, 0, str(tmp_path), data_source=str(tmp_path / "missing.npz"), settings=RunSettings(1))
    tasks = [task(tmp_path, 2, 0), missing, slow, task(tmp_path, 2, 1)]
    lines, killed, first_seen = [], [], {}
    done = threading.Event()

    def watch():  # note each record when it first appears; kill the slow run's owner once it has a checkpoint
        while not done.is_set():
            for path in tmp_path.glob("*/record.json"):
                first_seen.setdefault(path, (path.read_bytes(), path.stat().st_mtime_ns))
            folders = list(tmp_path.glob("exp02-seed5-*"))
            if not killed and folders and not (folders[0] / "record.json").exists():
                if list(folders[0].glob("checkpoint-e*.weights.h5")):
                    owner = (folders[0] / ".lock").read_text().split()  # "pid N on host since ..."
                    pid = int(owner[1])
                    assert _is_descendant(pid, os.getpid()), f"{owner}: not a worker of this test"
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            time.sleep(0.1)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        result = run_on_cluster(tasks, "local:2", say=lines.append)
    finally:
        done.set()
        thread.join(timeout=5)
    text = "\n".join(lines)

    # Every run trained, the failing one named with its error, one line per event.
    assert sorted(t.label for t in result.finished) == ["exp 2 seed 0", "exp 2 seed 1", "exp 2 seed 5"], text
    ((failed, detail),) = result.failed
    assert failed is missing and "CifarDataError" in detail and "missing.npz" in detail
    assert "cluster: 4 runs on a local cluster of 2 worker process(es)" in text
    assert "cluster: 4/4 runs done" in text and "ETA" in text and "FAILED: CifarDataError" in text
    assert "seed 0: epoch 1/1" in text and "seed 1: completed" in text  # the workers' lines reach say

    # The worker holding the slow run was killed; no run was lost or written twice.
    assert killed and "died while training exp 2 seed 5" in text, text
    assert sorted((r.experiment, r.seed) for r in records(tmp_path).values()) == [(2, 0), (2, 1), (2, 5)]
    assert len(first_seen) == 3
    for path, (content, mtime) in first_seen.items():
        assert path.read_bytes() == content and path.stat().st_mtime_ns == mtime, path

    # Another worker process finished the killed run, resuming from its checkpoint.
    (folder,) = tmp_path.glob("exp02-seed5-*")
    record = RunRecord.from_file(folder / "record.json")
    assert record.status == "completed" and record.epochs_completed == epochs
    assert record.history["epoch"] == list(range(epochs))
    assert read_history(folder / "history.csv")["epoch"].tolist() == list(range(epochs))
    assert int((folder / ".lock").read_text().split()[1]) != killed[0]
    resumed = [line for line in lines if "seed 5: resuming after epoch" in line]
    assert resumed and int(resumed[0].split("resuming after epoch ")[1].split()[0]) >= 1, text
    assert not list(folder.glob("checkpoint-e*"))


@pytest.mark.slow
def test_workers_started_by_the_worker_command_train_for_a_remote_scheduler(tmp_path):
    scheduler, address = _scheduler(tmp_path)
    workers = None
    try:
        with open(tmp_path / "workers.log", "w") as log:
            workers = subprocess.Popen([sys.executable, "-m", "cifar_utils.runs.cluster", "worker", address,
                                        "--workers", "1"], stdout=log, stderr=subprocess.STDOUT)
        lines = []
        out = tmp_path / "runs"
        missing = RunTask(2, 0, str(out), data_source=str(tmp_path / "missing.npz"), settings=RunSettings(1))
        tasks = [task(out, 2, 0), missing]
        result = run_on_cluster(tasks, address, say=lines.append)
        text = "\n".join(lines)
        assert [t.label for t in result.finished] == ["exp 2 seed 0"], text
        assert "CifarDataError" in result.failed[0][1] and "seed 0: completed" in text
        # The scheduler ran the tasks without importing this package (and TensorFlow with it).
        assert "tensorflow" not in Path(f"/proc/{scheduler.pid}/maps").read_text()
    finally:
        for process in (workers, scheduler):
            if process is not None:
                process.terminate()
                process.wait(timeout=60)
    assert "1 worker(s) on" in (tmp_path / "workers.log").read_text()


@pytest.mark.slow
def test_local_workers_get_the_pools_environment_one_gpu_each():
    cluster = local_cluster(2, gpus=["0", "1"])
    try:
        with Client(cluster, set_as_default=False) as client:
            seen = {name: client.run(os.getenv, name) for name in
                    ("CUDA_VISIBLE_DEVICES", "XLA_PYTHON_CLIENT_PREALLOCATE", "TF_FORCE_GPU_ALLOW_GROWTH")}
            assert set(client.nthreads().values()) == {1}
    finally:
        cluster.close()
    assert sorted(seen["CUDA_VISIBLE_DEVICES"].values()) == ["0", "1"]
    assert set(seen["XLA_PYTHON_CLIENT_PREALLOCATE"].values()) == {"false"}
    assert set(seen["TF_FORCE_GPU_ALLOW_GROWTH"].values()) == {"true"}


@pytest.mark.slow
def test_no_run_starts_after_the_deadline(tmp_path):
    lines = []
    result = run_on_cluster([task(tmp_path, 2, 0), task(tmp_path, 2, 1)], "local:1", say=lines.append, deadline=0)
    assert not result.finished and not result.failed and len(result.not_started) == 2
    assert "2 run(s) not started" in lines[-1] and not list(tmp_path.glob("*/record.json"))


def test_force_clears_a_run_once_per_invocation_so_a_retry_resumes(tmp_path):
    forced = task(tmp_path, 2, 0, force=True)
    marker = _force_once(forced, "first")
    folder = marker.parent
    (folder / "checkpoint-e0001.weights.h5").write_bytes(b"progress of the first attempt")
    assert _force_once(forced, "first") == marker  # the retry keeps what the first attempt trained
    assert (folder / "checkpoint-e0001.weights.h5").exists()
    _force_once(forced, "second")  # a new invocation with --force starts over
    assert not (folder / "checkpoint-e0001.weights.h5").exists() and not marker.exists()


# --- hung workers, a lost scheduler, bad addresses (fake runs, no training) ----------------

@pytest.fixture
def fake_work(monkeypatch):
    import fake_cluster_work

    monkeypatch.setattr(cluster, "_train_on_worker", fake_cluster_work.work)
    monkeypatch.setattr(cluster, "RESTART_SECONDS", 2)


@pytest.mark.slow
def test_a_hung_worker_is_restarted_and_its_run_retried_once_then_failed_by_name(tmp_path, fake_work):
    # On 41e0ce3 --cluster local:2 waited for ever on a worker stopped with SIGSTOP.
    lines = []
    started = time.monotonic()
    result = run_on_cluster([task(tmp_path, 2, s) for s in (0, 1, 2, 3)], "local:2", say=lines.append, stall=3)
    text = "\n".join(lines)
    assert time.monotonic() - started < 120, text
    assert sorted(t.seed for t in result.finished) == [0, 1, 3], text  # 3 beat for longer than the stall time
    ((failed, detail),) = result.failed
    assert failed.seed == 2 and "no output and no heartbeat for 3 s" in detail and "a second time" in detail
    assert "cluster: exp 2 seed 1: no output and no heartbeat for 3 s: its worker tcp://" in text, text
    assert "retrying it once" in text and "died while training" not in text
    assert [len(attempts(tmp_path, s)) for s in (0, 1, 2, 3)] == [1, 2, 2, 1]
    assert all(gone(pid) for s in (1, 2) for pid in attempts(tmp_path, s))
    assert lines[-1] == "cluster: 3 of 4 runs finished; 1 FAILED: exp 2 seed 2"


@pytest.mark.slow
def test_the_deadline_holds_while_a_cluster_worker_hangs(tmp_path, fake_work, monkeypatch):
    # The deadline comes once the hanging run has started, however long this machine takes
    # to start a local cluster (a fixed 1 s came before the first run on a loaded CI machine).
    monkeypatch.setattr(pool.Tally, "expired", lambda self: bool(attempts(tmp_path, 2)))
    lines = []
    result = run_on_cluster([task(tmp_path, 2, 2), task(tmp_path, 2, 0)], "local:1", say=lines.append,
                            deadline=1, stall=3)
    ((failed, detail),) = result.failed
    assert failed.seed == 2 and "after the deadline, so not retried" in detail
    assert [t.seed for t in result.not_started] == [0] and not result.finished
    assert lines[-1].endswith("deadline of 1 s reached: 1 run(s) not started: exp 2 seed 0")


def _scheduler(tmp_path):
    """A Dask scheduler process on a free local port, and its address once it has written it."""
    scheduler_file = tmp_path / "scheduler.json"
    process = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                "--port", "0", "--no-dashboard", "--scheduler-file", str(scheduler_file)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        return process, json.loads(scheduler_file.read_text())["address"]
    except BaseException:
        process.kill()
        process.wait(timeout=60)
        raise


@pytest.mark.slow
def test_a_scheduler_lost_mid_run_names_the_runs_not_finished(tmp_path, fake_work, monkeypatch, capfd):
    # On 41e0ce3 a scheduler killed mid-run ended in a raw FuturesCancelledError.
    monkeypatch.setattr(cluster, "CONNECT_SECONDS", 3)
    scheduler, address = _scheduler(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                               "--no-nanny", "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=env)
    lines = []

    def say(line):
        lines.append(line)
        if "seed 7: epoch" in line:
            scheduler.kill()

    try:
        result = run_on_cluster([task(tmp_path, 2, 7), task(tmp_path, 2, 0)], address, say=say)
    finally:
        for process in (worker, scheduler):
            process.kill()
            process.wait(timeout=60)
    ((failed, detail),) = result.failed
    assert failed.seed == 7 and detail.startswith(f"not finished: lost the Dask scheduler at {address} (")
    assert [t.seed for t in result.not_started] == [0] and not result.finished
    assert lines[-1].startswith(f"cluster: 0 of 2 runs finished; 1 FAILED: exp 2 seed 7; lost the Dask scheduler "
                                f"at {address} (") and lines[-1].endswith("1 run(s) not started: exp 2 seed 0")
    assert "ERROR" not in capfd.readouterr().err  # Dask's own log line about it stays quiet


def test_an_unreachable_scheduler_is_named_at_once(tmp_path):
    # On 41e0ce3 a bad address gave a raw ConnectionError after 30 s.
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(ClusterError, match=f"cluster: cannot reach the Dask scheduler at tcp://127.0.0.1:{port}: "
                                           "Connection refused"):
        run_on_cluster([task(tmp_path)], f"127.0.0.1:{port}")
    assert time.monotonic() - started < 10
    for bad in ("tcp://host:port", "tcp://:8786", "host:0", "host:70000"):
        with pytest.raises(ValueError, match="scheduler address"):
            parse_address(bad)


@pytest.mark.slow
def test_a_run_waiting_for_a_worker_to_join_is_not_taken_for_hung(tmp_path, fake_work):
    scheduler, address = _scheduler(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1", "--no-nanny",
               "--no-dashboard"]
    worker = None

    def join_late():  # the only worker joins after three times the stall time
        nonlocal worker
        worker = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)

    timer = threading.Timer(6, join_late)
    timer.start()
    lines = []
    try:
        result = run_on_cluster([task(tmp_path, 2, 0)], address, say=lines.append, stall=2)
    finally:
        timer.join()
        for process in (worker, scheduler):
            process.kill()
            process.wait(timeout=60)
    assert [t.seed for t in result.finished] == [0] and not result.failed, lines
    assert "waiting for a worker" in lines[0] and not any("no heartbeat" in line for line in lines)
