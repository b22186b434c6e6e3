"""Train the pool's runs on a Dask cluster: several GPU boxes, one runs folder on shared storage.

``run_on_cluster`` keeps ``pool.run_pool``'s contract (longest run first, one line per event
with runs done / total and an ETA, a failing run named while the others finish) and hands
the scheduling to Dask's ``distributed``: one task per run, each trained by
``pool.train_task`` in a worker process with one thread, so one run at a time per worker.

Why Dask and not Ray (measured on this project's 2-core machine): 2.5 MB of pure-Python
wheels against Ray's 79 MB wheel; a two-worker local cluster up in 2-5 s (165 MB, four
processes) against 12-13 s (740 MB, ten processes); both retry a task whose worker process
dies, on any worker, 3 times by default (the 4th death fails it), and Dask's ``log_event`` /
``subscribe_topic`` bring each epoch line to the caller's ``say``, where Ray prints worker
output on the driver's own stdout.

What makes a retry safe is the run folder, not the engine: ``lock.run_lock`` (an
``flock`` released when its owner dies) lets one process own a run, a retry resumes from
the last checkpoint, and a finished run is reused, never trained again. So the runs folder
must be one shared folder, at the same path on every machine, on a filesystem whose
``flock`` excludes across machines (NFSv4, not a ``local_lock`` or ``nolock`` mount).

A worker that hangs keeps its run's lock, and Dask cannot cancel a running task: each run
sends a heartbeat from its training loop (``pool.heartbeat``, as an event naming its task),
and a run silent for the stall time has its worker restarted through its nanny, which
kills a stopped or stuck process, then is retried once, as in the pool. A scheduler that
cannot be reached raises ``ClusterError`` naming it; one lost mid-run cancels the futures,
and the runs it held are named as not finished.

This module imports Dask only when a cluster is asked for (a machine without the
``cluster`` extra gets an ``ImportError`` saying what to install) and no backend at all:
the task function imports the training code (``pool.train_task``) on the worker, and the
scheduler unpickles no function of this package (``_Call``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import pickle
import signal
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import CancelledError
from dataclasses import replace
from pathlib import Path

from ..errors import ClusterError
from .pool import STALL_SECONDS, PoolResult, RunTask, Tally, gpu_ids, relayed, worker_environment

INSTALL_HINT = "install the cluster extra: pip install 'cifar-utils[cluster]' (Dask distributed)"
LOCAL_PREFIX = "local:"
DEFAULT_PORT = 8786
POLL_SECONDS = 2.0  # how often the client looks for workers that joined, while runs train
PROBE_SECONDS = 10.0  # how long a scheduler address may take to accept a connection
CONNECT_SECONDS = 30.0  # how long the client tries to reach the scheduler, or reach it again (Dask's default)
RESTART_SECONDS = 10.0  # a silent run's worker is stopped within 0.8x this, else killed by its nanny


def _distributed():
    try:
        import distributed
    except ImportError as error:
        raise ImportError(f"cifar_utils.runs.cluster needs Dask's distributed package: {INSTALL_HINT}") from error
    return distributed


def parse_address(address: str) -> tuple[str, int | str]:
    """``("local", N)`` for ``local:N``, else ``("remote", address)`` (``tcp://host:8786``)."""
    text = address.strip()
    if text.startswith(LOCAL_PREFIX):
        count = text[len(LOCAL_PREFIX):]
        if not count.isdigit() or int(count) < 1:
            raise ValueError(f"{address!r}: a local cluster is local:N with N >= 1 worker processes, e.g. local:2")
        return "local", int(count)
    where = text if "://" in text else f"tcp://{text}"
    scheme, _, rest = where.partition("://")
    host, colon, port = rest.rpartition(":")
    bad_port = scheme == "tcp" and colon and "]" not in port and not (port.isdigit() and 0 < int(port) < 65536)
    if not text or text.startswith("-") or not rest or bad_port or (scheme == "tcp" and colon and not host):
        raise ValueError(f"{address!r}: give a scheduler address like tcp://host:{DEFAULT_PORT}, or local:N")
    return "remote", where


def _changed_environment(index: int, gpus: list[str]) -> dict[str, str]:
    """What ``pool.worker_environment`` adds to this process's environment for worker ``index``."""
    return {k: v for k, v in worker_environment(index, gpus).items() if os.environ.get(k) != v}


def local_cluster(workers: int, gpus: list[str] | None = None):
    """A cluster of ``workers`` processes on this machine, each with one thread and the
    pool's environment (GPU pinned round-robin, memory grown on demand). Nanny processes
    restart a worker that dies; the caller closes the cluster."""
    distributed = _distributed()
    gpus = gpu_ids() if gpus is None else gpus
    host = socket.gethostname()
    scheduler = {"cls": distributed.Scheduler,
                 "options": {"host": "127.0.0.1", "port": 0, "protocol": "tcp://", "dashboard": False,
                             "dashboard_address": None}}
    specs = {f"{host}-{i}": {"cls": distributed.Nanny,
                             "options": {"host": "127.0.0.1", "nthreads": 1, "memory_limit": 0, "dashboard": False,
                                         "env": _changed_environment(i, gpus), "name": f"{host}-{i}",
                                         "silence_logs": logging.ERROR}}
             for i in range(workers)}
    # Nanny and scheduler run in this process: their warnings about a dead worker, which
    # run_on_cluster reports itself in one line, would only repeat it with a traceback.
    return distributed.SpecCluster(scheduler=scheduler, workers=specs, silence_logs=logging.ERROR)


def _portable(task: RunTask) -> RunTask:
    """The task as any worker must see it: absolute paths (the same on every machine)."""
    data = task.data_source
    if data not in (None, "sample") and os.path.exists(data):
        data = os.path.abspath(data)
    return replace(task, out_dir=os.path.abspath(task.out_dir), data_source=data)


def run_on_cluster(tasks: Iterable[RunTask], address: str, say: Callable[[str], None] = print,
                   is_progress: Callable[[str], bool] = lambda line: True,
                   deadline: float | None = None, stall: float = STALL_SECONDS) -> PoolResult:
    """Train ``tasks`` on a Dask cluster, longest first, as ``pool.run_pool`` does with several workers.

    ``address`` is a scheduler (``tcp://host:8786``) or ``local:N`` (N worker processes
    here). One line per event goes to ``say``: each worker's progress lines that pass
    ``is_progress``, a worker lost mid-run, and each run done with runs done / total and
    an ETA over the whole set. A failing run is named with its error and the others
    finish; a run whose worker dies is retried on another worker and resumes from its
    checkpoint (Dask retries it 3 times: if a 4th worker dies running it, it is reported failed).
    A run silent for ``stall`` seconds (no line, no heartbeat) has its worker restarted and
    is retried once, then failed. After ``deadline`` seconds no new run starts (those under
    way finish), as in ``run_pool``. A scheduler that cannot be reached raises
    ``ClusterError``; one lost mid-run leaves its runs named as not finished.

    Runs are handed out as worker threads free up, not all at once: Dask queues only large
    groups of tasks at the scheduler and would otherwise stack a small set's runs on busy
    workers while others idle, and a dead worker would take its queued runs down with it."""
    kind, where = parse_address(address)
    pending = sorted(tasks, key=lambda t: -t.cost())
    tally = Tally(pending, say, "cluster", deadline)
    if not pending:
        return tally.result
    distributed = _distributed()
    if kind == "remote":
        _probe(where)
    gpus = gpu_ids() if kind == "local" else []
    cluster = local_cluster(where, gpus) if kind == "local" else None
    try:
        client = _connect(distributed, cluster or where, where)
        with client, client.as_current(), _quiet("distributed.client"):
            if cluster is not None:
                tally.tell(f"cluster: {tally.total} runs on a local cluster of {where} worker process(es)"
                           + (f", GPUs {', '.join(gpus)} round-robin" if gpus else ", no GPU"))
            else:
                threads = sum(client.nthreads().values())
                tally.tell(f"cluster: {tally.total} runs on {where} ({threads} worker thread(s) connected now"
                           + (", waiting for a worker)" if not threads else ")"))
            session = _Session(distributed, client, tally, pending, where, kind != "local", is_progress, stall)
            session.run()
    except BaseException:
        tally.silence()  # Ctrl-C: the caller says so in one line
        raise
    finally:
        if cluster is not None:
            close_local(cluster)
    return tally.finish(pending, session.lost)


CLOSE_SECONDS = 60  # a local cluster's close waits this long for its workers, then kills them


def _worker_pids(cluster) -> list[int]:
    """The worker processes of a local cluster (its nannies run in this process)."""
    pids = []
    for nanny in list(getattr(cluster, "workers", {}).values()):
        process = getattr(getattr(nanny, "process", None), "process", None)
        if getattr(process, "pid", None):
            pids.append(process.pid)
    return pids


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, sig)


def close_local(cluster) -> None:
    """Close a local cluster without hanging on a stopped worker: a nanny ends its worker
    with SIGTERM, which a stopped process (SIGSTOP, the tests' stand-in for a stuck one)
    never acts on, and Dask then waits for it for ever. Stopped workers are continued
    first, and any worker still there after ``CLOSE_SECONDS`` is killed."""
    pids = _worker_pids(cluster)
    _signal_all(pids, signal.SIGCONT)
    try:
        cluster.close(timeout=CLOSE_SECONDS)
    except Exception:  # Dask's TimeoutError, or a close that failed part way: end the processes
        _signal_all(pids, signal.SIGKILL)


def _probe(where: str) -> None:
    """Fail in seconds, naming the address, where Dask would retry for ``CONNECT_SECONDS``."""
    scheme, _, rest = where.partition("://")
    if scheme != "tcp":
        return
    host, port = _host_port(rest)
    try:
        socket.create_connection((host, port), timeout=PROBE_SECONDS).close()
    except OSError as error:
        raise ClusterError(f"cluster: cannot reach the Dask scheduler at {where}: {error.strerror or error} "
                           f"(is `dask scheduler --port {port}` running there, and the port open to this "
                           "machine?)") from None


def _host_port(rest: str) -> tuple[str, int]:
    host, colon, port = rest.rpartition(":")
    if not colon or "]" in port:  # no port given (an IPv6 address has colons of its own)
        return rest.strip("[]"), DEFAULT_PORT
    return host.strip("[]"), int(port)


def _connect(distributed, cluster_or_address, where: str):
    try:
        return distributed.Client(cluster_or_address, set_as_default=False, timeout=CONNECT_SECONDS)
    except (OSError, distributed.TimeoutError) as error:
        raise ClusterError(f"cluster: cannot reach the Dask scheduler at {where}: {error}") from None


@contextlib.contextmanager
def _quiet(name: str):
    """Keep a logger's errors off the terminal: this module reports them itself, in one line."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


class _Session:
    """One invocation's runs on a connected client: hand them out, relay their lines, end a
    silent run's worker and retry it once, and notice a scheduler that went away."""

    def __init__(self, distributed, client, tally: Tally, pending: list[RunTask], where: str, echo: bool,
                 is_progress: Callable[[str], bool], stall: float):
        self.distributed, self.client, self.tally, self.pending = distributed, client, tally, pending
        self.where, self.echo, self.is_progress, self.stall = where, echo, is_progress, stall
        self.token = uuid.uuid4().hex[:12]
        self.topic = f"cifar-utils-progress-{self.token}"
        self.keys: dict[str, RunTask] = {}  # every live run's key
        self.heard: dict[str, float] = {}  # key -> when its run last printed or beat
        self.running: dict = {}  # future -> task
        self.retried: set[int] = set()
        self.lost: str | None = None  # why the runs left were not started

    def run(self) -> None:
        self.client.subscribe_topic(self.topic, self.relay)
        self.client.subscribe_topic("all", self.watch)
        try:
            while not self.lost and (self.running or (self.pending and not self.tally.expired())):
                try:
                    self.step()
                except (OSError, RuntimeError, CancelledError) as error:
                    if self.survive(error):
                        continue
                    if isinstance(error, OSError):
                        raise ClusterError(f"cluster: the Dask scheduler at {self.where} failed: {_brief(error)}; "
                                           "finished runs are kept: run again to resume the others") from None
                    raise
        finally:
            for name in (self.topic, "all"):
                with contextlib.suppress(Exception):  # a client that lost its scheduler has no topics
                    self.client.unsubscribe_topic(name)

    def step(self) -> None:
        free = max(1, sum(self.client.nthreads().values())) - len(self.running)
        while self.pending and free > 0 and not self.tally.expired():
            self.submit(self.pending.pop(0))
            free -= 1
        try:
            finished, _ = self.distributed.wait(list(self.running), timeout=POLL_SECONDS,
                                                return_when="FIRST_COMPLETED")
        except self.distributed.TimeoutError:
            finished = ()
        for future in finished:
            self.done(future, *_outcome(future))
        self.end_silent()

    def submit(self, task: RunTask) -> None:
        key = f"cifar-run-{self.token}-{len(self.heard)}"
        self.keys[key], self.heard[key] = task, time.monotonic()
        call = _Call(_train_on_worker, _portable(task).to_json(), self.topic, key, self.token, self.echo)
        self.running[self.client.submit(pickle.loads, pickle.dumps(call), key=key, pure=False)] = task

    def done(self, future, ok: bool, detail: str) -> None:
        self.keys.pop(future.key, None)
        self.tally.report(self.running.pop(future), ok, detail)

    def relay(self, event) -> None:
        message = event[1]
        if not isinstance(message, dict):
            return
        if message.get("key") in self.heard:
            self.heard[message["key"]] = time.monotonic()
        text = relayed(str(message.get("line", "")), self.is_progress)
        if text is not None:
            self.tally.tell(text)

    def watch(self, event) -> None:
        message = event[1]
        if not isinstance(message, dict) or message.get("action") != "remove-worker" or message.get("expected"):
            return
        held = [self.keys[k].label for k in message.get("processing-tasks", ()) if k in self.keys]
        if held:
            self.tally.tell(f"cluster: worker {message.get('worker', '?')} died while training {', '.join(held)}; "
                            "retrying on another worker (it resumes from its last checkpoint)")

    def end_silent(self) -> None:
        """Restart the worker of each run silent for the stall time; retry the run once. A
        run no worker holds yet is waiting for one, not silent: its clock starts again."""
        now = time.monotonic()
        quiet = {f: t for f, t in self.running.items() if now - self.heard[f.key] >= self.stall}
        processing = self.client.processing() if quiet else {}
        for future, task in quiet.items():
            holders = [w for w, keys in processing.items() if future.key in keys]
            if not holders:
                self.heard[future.key] = now
                continue
            del self.running[future]
            self.keys.pop(future.key, None)
            worker = self.restart(future, holders)
            self.retry_or_fail(task, f"no output and no heartbeat for {self.stall:.0f} s: its worker {worker} "
                                     "was restarted")

    def retry_or_fail(self, task: RunTask, silent: str) -> None:
        """A silent run is retried once, never after the deadline; else it is failed by name."""
        if id(task) not in self.retried and not self.tally.expired():
            self.retried.add(id(task))
            self.pending.insert(0, task)
            self.tally.tell(f"cluster: {task.label}: {silent}; retrying it once (it resumes from its last checkpoint)")
            return
        why = "a second time" if id(task) in self.retried else "after the deadline, so not retried"
        self.tally.report(task, False, f"{silent}, {why}; its folder keeps the last checkpoint for the next invocation")

    def restart(self, future, holders: list[str]) -> str:
        """Forget a silent run's task and restart the workers holding it: a nanny stops its
        worker, or kills it (a stopped or hung process), which frees the run's lock."""
        self.client.cancel(future, force=True)
        self.client.restart_workers(holders, timeout=RESTART_SECONDS, raise_for_error=False)
        return ", ".join(holders)

    def survive(self, error: BaseException) -> bool:
        """After an error from the client: runs the scheduler cancelled are named as not
        finished; with the scheduler gone, so are all runs under way, and none starts."""
        gone = self.client.status != "running"
        cancelled = [f for f in self.running if gone or f.status == "cancelled"]
        if not cancelled:
            return False
        reason = f"lost the Dask scheduler at {self.where} ({_brief(error)})" if gone else \
            "cancelled by the scheduler (was it restarted?)"
        for future in cancelled:
            self.done(future, False, f"not finished: {reason}; run again to resume it")
        if gone:
            self.lost = reason
        return True


def _brief(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def _outcome(future) -> tuple[bool, str]:
    """(ok, detail) of a finished future: the worker's answer, or why there is none."""
    if future.status == "finished":
        answer = future.result()
        return answer["ok"], answer["detail"]
    if future.status == "cancelled":
        return False, "cancelled by the scheduler (was it restarted?); run again to resume it"
    error = future.exception()
    if type(error).__name__ == "KilledWorker":
        return False, (f"the worker process died each time it trained this run ({error}); "
                       "its folder keeps the last checkpoint for the next invocation")
    return False, f"{type(error).__name__}: {error}"


# --- the worker side ---------------------------------------------------------------------

class _Call:
    """Pickles as the call ``function(*args)``, so ``pickle.loads`` on the worker runs it.

    Dask's scheduler unpickles every task it receives: handed ``_train_on_worker`` itself,
    it would need this package installed on the scheduler's machine, and import it there.
    Handed ``pickle.loads`` and bytes, it needs nothing of ours."""

    def __init__(self, function: Callable, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


class _LineForwarder(io.TextIOBase):
    """A stream that sends each complete line to the client as an event naming its run's
    task ``key`` (and, on a remote worker, also to the worker's own output, for its log)."""

    def __init__(self, worker, topic: str, key: str, echo):
        super().__init__()
        self.worker, self.topic, self.key, self.echo, self.buffer = worker, topic, key, echo, ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if self.echo is not None:
            self.echo.write(text)
        self.buffer += text
        *lines, self.buffer = self.buffer.split("\n")
        for line in lines:
            self._send(line)
        return len(text)

    def flush(self) -> None:
        if self.echo is not None:
            self.echo.flush()
        self._send(self.buffer)
        self.buffer = ""

    def _send(self, line: str) -> None:
        if line.strip():
            self._event({"key": self.key, "line": line})

    def send_beat(self) -> None:
        self._event({"key": self.key})

    def _event(self, message: dict) -> None:
        with contextlib.suppress(Exception):  # a lost progress line must never fail the run
            self.worker.log_event(self.topic, message)


def _train_on_worker(task_json: str, topic: str, key: str, token: str, echo: bool) -> dict:
    """The Dask task: train one run with ``pool.train_task`` in this worker process, its
    printed lines and the training loop's heartbeat relayed to the client; a failure is an
    answer, not an exception, so the client names it like ``run_pool`` does."""
    from distributed import get_worker

    from .pool import heartbeat, train_task

    task = RunTask.from_json(task_json)
    worker = get_worker()
    out = _LineForwarder(worker, topic, key, sys.__stdout__ if echo else None)
    err = _LineForwarder(worker, topic, key, sys.__stderr__ if echo else None)
    beat = heartbeat(out.send_beat)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            marker = _force_once(task, token) if task.force else None
            record = train_task(replace(task, force=False) if task.force else task, [beat])
            if marker is not None:
                marker.unlink(missing_ok=True)
            answer = {"ok": True, "detail": f"{record.status}, test acc {record.test_acc:.2f} %"}
        except Exception as error:  # one run's failure must not look like a dead worker
            answer = {"ok": False, "detail": f"{type(error).__name__}: {error}"}
        finally:
            out.flush()
            err.flush()
    return answer


def _force_once(task: RunTask, token: str) -> Path:
    """``--force`` empties a run folder once per invocation (``token``), then trains as
    usual: a retry after a dead worker resumes the forced run instead of starting it over,
    and never retrains one the first attempt finished. Returns the marker it leaves."""
    from .folder import clear
    from .identity import plan_run
    from .lock import run_lock
    from .pool import task_data

    plan = plan_run(task.experiment_object(), task_data(task), task.seed, task.out_dir, task.settings)
    marker = plan.run_dir / f".forced-{token}"
    with run_lock(plan.run_dir, plan.label):
        if not marker.exists():
            clear(plan.run_dir)
            marker.touch()
    return marker


# --- starting workers on a GPU box ------------------------------------------------------

def serve_workers(address: str, workers: int | None = None) -> None:
    """Connect ``workers`` worker processes on this machine to the scheduler at ``address``
    (default: one per GPU, else one), each with one thread and the pool's environment, and
    serve until interrupted. The same settings as a ``local:N`` cluster, for a GPU box."""
    distributed = _distributed()
    import asyncio

    kind, where = parse_address(address)
    if kind != "remote":
        raise ValueError(f"{address!r}: workers join a scheduler at tcp://host:{DEFAULT_PORT}")
    gpus = gpu_ids()
    count = workers or max(1, len(gpus))
    host = socket.gethostname()

    async def serve() -> None:
        nannies = [distributed.Nanny(where, nthreads=1, memory_limit=0, dashboard=False, name=f"{host}-{i}",
                                     env=_changed_environment(i, gpus)) for i in range(count)]
        await asyncio.gather(*nannies)
        print(f"cluster: {count} worker(s) on {host} joined {where}"
              + (f", GPUs {', '.join(gpus)} round-robin" if gpus else ", no GPU"), flush=True)
        await asyncio.gather(*(nanny.finished() for nanny in nannies))

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


def main(argv: list[str] | None = None) -> int:
    """``python -m cifar_utils.runs.cluster worker tcp://scheduler:8786 [--workers N]``."""
    parser = argparse.ArgumentParser(prog="python -m cifar_utils.runs.cluster",
                                     description="Start this machine's training workers for ./run_all.sh --cluster.")
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser("worker", help="join a Dask scheduler with one worker per GPU (or --workers N)")
    worker.add_argument("address", help=f"the scheduler, e.g. tcp://scheduler:{DEFAULT_PORT}")
    worker.add_argument("--workers", type=int, help="worker processes (default: one per GPU, else one)")
    args = parser.parse_args(argv)
    serve_workers(args.address, args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
