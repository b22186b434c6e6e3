"""Train many runs at once: a pool of worker processes, one run at a time each.

``./run_all.sh --jobs N`` first trains every run the chapters need here, then runs the
notebooks, which find every run finished and only read, plot and judge. Scheduling at
the grain of a run (not of a notebook) keeps N workers busy until the last run, and no
chapter waits for another chapter's runs.

Why not ``concurrent.futures.ProcessPoolExecutor``: a worker that dies (out of memory, a
crashed driver) breaks the whole executor and every pending run with it, and its workers
cannot be given different GPUs. Here each worker is ``python -m cifar_utils.runs.pool``
with its own environment (GPU pinned round-robin, no memory preallocation so several share
a GPU), reading one task per line on stdin and answering on stdout; a dead worker fails
its one run, is replaced, and the others finish. Two workers never train one run: the
run folder's lock (``lock.run_lock``) makes the second wait and reuse the result. A
worker's run prints its progress lines marked (``progress``): the driver shows those,
whatever their words, and only the lines its ``is_progress`` picks of the rest.

A worker that stops making progress (SIGSTOP, a call stuck in a GPU driver or on a dead
network mount) would hold its run, and its run's lock, for ever: a worker that prints
nothing for ``stall`` seconds, not even a heartbeat, is killed and its run retried once,
then failed by name. The heartbeat comes from the training loop itself (a Keras callback
at each batch, on the answer channel, at most every ``HEARTBEAT_SECONDS``), not from a
timer thread, which would beat on while the training thread is stuck; and it travels on
the pipe the driver already reads rather than as a file's mtime, which a dead mount would
freeze the driver on too.

This module imports no backend at its top: the driver never loads Keras; a worker imports
the training code (``train``) when its first task comes.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from ..speed import Speed
from .progress import MARK_ENV, clock, progress_text
from .settings import DEFAULT_SETTINGS, RunSettings

if TYPE_CHECKING:
    from ..data import CifarData
    from .record import RunRecord

CONTROL = "@@pool "  # prefix of a worker's answer lines (its progress lines have their own: ``progress.MARK``)
WORKER_COMMAND = (sys.executable, "-m", "cifar_utils.runs.pool")
HEARTBEAT_SECONDS = 10.0  # a training worker says it is alive at most this often
# A worker silent this long (no line, no heartbeat) is taken for hung. The longest silence
# of a healthy worker is its first task's start (imports, data) or what follows a run's
# last epoch, which beats no batch: 310.7 s for experiment 21 in the cost table (costs.py),
# whose CPU may be 5x faster than another; epochs beat every batch (the slowest is 193.5 s).
STALL_SECONDS = 1800.0


@dataclass(frozen=True)
class RunTask:
    """One (experiment, seed) run with everything a worker needs to train it."""

    experiment: int
    seed: int
    out_dir: str  # the runs folder
    data_source: str | None = None
    subset: int | None = None
    settings: RunSettings = DEFAULT_SETTINGS  # what names the run beside the rest (``course.run_settings``)
    variant: dict = field(default_factory=dict)  # Experiment.vary(**variant) for a sweep point
    variant_label: str | None = None
    speed: dict | None = None
    log_every: int | None = None
    force: bool = False
    checkpoint_seconds: float | None = None  # None: run_experiment's default (30 s)

    def __post_init__(self):
        if isinstance(self.settings, dict):  # read back from ``to_json``
            object.__setattr__(self, "settings", RunSettings(**self.settings))
        if not isinstance(self.settings, RunSettings):
            raise TypeError(f"{self.label}: settings must be a RunSettings, got {self.settings!r}")
        precision = Speed.coerce(self.speed).precision
        if precision != self.settings.precision:
            raise ValueError(f"{self.label}: speed's precision {precision!r} is not the settings' "
                             f"{self.settings.precision!r}, which name the run")

    @property
    def label(self) -> str:
        extra = f" [{self.variant_label or self.variant}]" if self.variant else ""
        return f"exp {self.experiment}{extra} seed {self.seed}"

    def experiment_object(self):
        from ..experiments import get_experiment

        exp = get_experiment(self.experiment)
        return exp.vary(self.variant_label, **self.variant) if self.variant else exp

    def cost(self) -> float:
        """Relative cost, to order the runs (``run_order``) and weigh the ETA: CPU seconds by the cost
        table (``costs.py``; on a GPU the proportions are roughly alike)."""
        from ..costs import cpu_run_seconds

        return cpu_run_seconds(self)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> RunTask:
        """The task ``to_json`` wrote (a worker's stdin line, a cluster task)."""
        return cls(**json.loads(text))


def gpu_ids() -> list[str]:
    """The GPUs to pin workers to, found without initialising any backend in this process
    (JAX would claim most of the GPU's memory for the parent)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g for g in visible.split(",") if g.strip() and g.strip() != "-1"]
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        listing = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(listing.splitlines()) if line.startswith("GPU ")]


def worker_environment(index: int, gpus: list[str]) -> dict[str, str]:
    """The environment of worker ``index``: its GPU, memory grown on demand so that several
    workers (and the notebooks after them) can share one GPU, and progress lines marked."""
    env = {**os.environ, "XLA_PYTHON_CLIENT_PREALLOCATE": "false", "TF_FORCE_GPU_ALLOW_GROWTH": "true",
           "PYTHONUNBUFFERED": "1", MARK_ENV: "1"}
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
    return env


@dataclass
class PoolResult:
    finished: list[RunTask] = field(default_factory=list)
    failed: list[tuple[RunTask, str]] = field(default_factory=list)
    not_started: list[RunTask] = field(default_factory=list)  # left when the deadline came


class Tally:
    """What the pool and the cluster both report: one line per finished run with runs done /
    total and an ETA over the whole set (each run weighted by its cost, so long runs count
    for more), the deadline, and the runs left when it came. Thread-safe."""

    def __init__(self, tasks: list[RunTask], say: Callable[[str], None], name: str, deadline: float | None = None):
        self.total, self.total_cost = len(tasks), sum(t.cost() for t in tasks) or 1.0
        self.say, self.name, self.deadline = say, name, deadline
        self.result, self.lock, self.quiet = PoolResult(), threading.Lock(), False
        self.start, self.done_cost = time.monotonic(), 0.0

    def tell(self, text: str) -> None:
        with self.lock:
            if not self.quiet:
                self.say(text)

    def report(self, task: RunTask, ok: bool, detail: str) -> None:
        with self.lock:
            (self.result.finished.append(task) if ok else self.result.failed.append((task, detail)))
            self.done_cost += task.cost()
            done = len(self.result.finished) + len(self.result.failed)
            elapsed = time.monotonic() - self.start
            left = self.total_cost - self.done_cost
            eta = f", ETA {clock(elapsed / self.done_cost * left)}" if done < self.total else ""
            if not self.quiet:
                self.say(f"{self.name}: {done}/{self.total} runs done ({task.label} {'done: ' if ok else 'FAILED: '}"
                         f"{detail}); {clock(elapsed)} elapsed{eta}")

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() - self.start > self.deadline

    def silence(self) -> None:
        """Say nothing more: the caller was interrupted and says so itself, in one line."""
        with self.lock:
            self.quiet = True

    def finish(self, pending: list[RunTask], why: str | None = None) -> PoolResult:
        """The last line: how many runs finished, which failed, which never started and why
        (``why``: the deadline unless told)."""
        self.result.not_started = list(pending)
        failed = self.result.failed
        parts = [f"{len(self.result.finished)} of {self.total} runs finished"]
        if failed:
            parts.append(f"{len(failed)} FAILED: {_labels([task for task, _ in failed])}")
        if pending:
            why = why or f"deadline of {self.deadline:.0f} s reached"
            parts.append(f"{why}: {len(pending)} run(s) not started: {_labels(pending)}")
        self.tell(f"{self.name}: {'; '.join(parts)}")
        return self.result


def _labels(tasks: list[RunTask], shown: int = 10) -> str:
    return ", ".join(t.label for t in tasks[:shown]) + (" ..." if len(tasks) > shown else "")


class _Worker:
    """One worker process, the task it holds, and its output lines as they come (a thread
    reads them, so the driver can wait for the next one with a time limit)."""

    def __init__(self, index: int, gpus: list[str]):
        self.index = index
        self.process = subprocess.Popen(list(WORKER_COMMAND), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, bufsize=1,
                                        env=worker_environment(index, gpus))
        self.task: RunTask | None = None
        self.tail: list[str] = []
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)  # the process closed its output: it died or ended

    def give(self, task: RunTask) -> None:
        self.task, self.tail = task, []
        self.process.stdin.write(task.to_json() + "\n")
        self.process.stdin.flush()

    def end(self) -> None:
        """Kill it now: SIGKILL ends a stopped or hung process too, and frees its run's lock."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.close()
            except OSError:
                pass
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.end()


_STALLED = "stalled"  # what _follow returns for a worker silent for the stall time


def run_order(tasks: Iterable[RunTask], jobs: int) -> list[RunTask]:
    """The order runs start in. Several workers: longest first, so no long run is left to
    finish alone at the end. One worker: shortest first, which takes the same total time
    and, when the pool is stopped or its deadline comes, has finished the most runs (a
    machine lent for a session ends whatever run is under way)."""
    return sorted(tasks, key=lambda t: t.cost() if jobs == 1 else -t.cost())


def run_pool(tasks: Iterable[RunTask], jobs: int = 1, say: Callable[[str], None] = print,
             is_progress: Callable[[str], bool] = lambda line: True, deadline: float | None = None,
             stall: float = STALL_SECONDS) -> PoolResult:
    """Train ``tasks`` on ``jobs`` workers (in ``run_order``); one line per event with runs
    done / total and an ETA over the whole pool. A failing run is named and the others
    finish; the result lists both. After ``deadline`` seconds no new run starts (the ones
    under way finish): for a machine lent for a fixed time, whose next call resumes. A
    worker silent for ``stall`` seconds is killed; its run is retried once (not after the
    deadline), then failed. Interrupted, it kills its workers (finished runs stay on disk)."""
    pending = run_order(tasks, jobs)
    tally = Tally(pending, say, "pool", deadline)
    if not pending:
        return tally.result
    gpus = gpu_ids()
    say(f"pool: {tally.total} runs on {min(jobs, tally.total)} worker(s)"
        + (f", GPUs {', '.join(gpus)} round-robin" if gpus else ", no GPU"))
    workers: list[_Worker] = []
    retried: set[int] = set()

    def next_task() -> RunTask | None:
        with tally.lock:
            return None if tally.quiet or tally.expired() or not pending else pending.pop(0)

    def stalled(task: RunTask, worker: _Worker) -> None:
        """Retry a hung worker's run once, before the deadline; else fail it by name."""
        silent = f"no output and no heartbeat for {stall:.0f} s: its worker (pid {worker.process.pid}) was killed"
        with tally.lock:
            retry = id(task) not in retried and not tally.expired()
            if retry:
                retried.add(id(task))
                pending.insert(0, task)
        if retry:
            tally.tell(f"pool: {task.label}: {silent}; retrying it once (it resumes from its last checkpoint)")
            return
        why = "a second time" if id(task) in retried else "after the deadline, so not retried"
        tally.report(task, False, f"{silent}, {why}; its folder keeps the last checkpoint for the next invocation")

    def serve(index: int) -> None:
        worker = None
        while (task := next_task()) is not None:
            if worker is None or worker.process.poll() is not None:
                worker = _Worker(index, gpus)
                workers.append(worker)
            try:
                worker.give(task)
            except (BrokenPipeError, OSError):
                tally.report(task, False, "the worker process died before the run started")
                worker = None
                continue
            outcome = _follow(worker, tally.tell, is_progress, stall)
            if outcome is _STALLED:
                worker.end()
                stalled(task, worker)
                worker = None
            elif outcome is None:  # the worker died mid-run
                code = worker.process.wait()
                tally.report(task, False, f"the worker process died (exit {code}); last lines: "
                                          + " | ".join(line.strip() for line in worker.tail[-3:]))
                worker = None
            else:
                tally.report(task, *outcome)
        if worker is not None:
            worker.close()

    threads = [threading.Thread(target=serve, args=(i,), daemon=True) for i in range(min(jobs, tally.total))]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    except BaseException:  # Ctrl-C: no worker may train on unwatched
        tally.silence()
        for worker in list(workers):
            worker.end()
        raise
    return tally.finish(pending)


def _follow(worker: _Worker, say: Callable[[str], None], is_progress: Callable[[str], bool], stall: float):
    """Relay a worker's progress lines (``relayed``) until it answers: (ok, detail); None
    if it died first; ``_STALLED`` if it printed nothing, not even a heartbeat, for ``stall``
    seconds."""
    while True:
        try:
            line = worker.lines.get(timeout=stall)
        except queue.Empty:
            return _STALLED
        if line is None:
            return None
        if line.startswith(CONTROL):
            answer = json.loads(line[len(CONTROL):])
            if "ok" in answer:
                return answer["ok"], answer["detail"]
            continue  # a heartbeat
        text = relayed(line, is_progress)
        worker.tail = (worker.tail + [line if text is None else text])[-20:]
        if text is not None:
            say(text)


def relayed(line: str, is_progress: Callable[[str], bool]) -> str | None:
    """What the driver shows of a worker's line: a marked progress line's text, or an
    unmarked line that ``is_progress`` picks; None for the rest."""
    text = progress_text(line)
    if text is None and line.strip() and is_progress(line):
        text = line.rstrip()
    return text


# --- the worker side ---------------------------------------------------------------------

_DATA: dict = {}


def task_data(task: RunTask) -> CifarData:
    """The task's dataset, loaded once per worker process for every task that shares it."""
    from ..data import load_cifar10

    key = (task.data_source, task.subset)
    if key not in _DATA:
        _DATA[key] = load_cifar10(task.data_source, subset=task.subset)
    return _DATA[key]


def train_task(task: RunTask, callbacks: Iterable = ()) -> RunRecord:
    """Train (or reuse) one task's run in this process; returns its record. ``callbacks``
    go to ``run_experiment`` (the heartbeat)."""
    from .train import run_experiment

    extra = {} if task.checkpoint_seconds is None else {"checkpoint_seconds": task.checkpoint_seconds}
    own = task.settings
    return run_experiment(task.experiment_object(), epochs=own.epochs, batch_size=own.batch_size,
                          seed=task.seed, data=task_data(task), out_dir=task.out_dir, force=task.force,
                          log_every=task.log_every, eval_every=own.eval_every, speed=task.speed,
                          callbacks=list(callbacks), **extra)


def heartbeat(beat: Callable[[], None], every: float | None = None):
    """A Keras callback that calls ``beat`` at most every ``every`` seconds (default
    ``HEARTBEAT_SECONDS``) as batches and epochs begin: driven by the training loop, so a
    stopped process or a call stuck in a driver stops it. Begin hooks only, so Keras keeps
    dispatching its batch-end callbacks asynchronously."""
    import keras

    every = HEARTBEAT_SECONDS if every is None else every

    class Heartbeat(keras.callbacks.Callback):
        last = float("-inf")

        def _maybe(self, *args, **kwargs):
            now = time.monotonic()
            if now - self.last >= every:
                self.last = now
                beat()

        on_epoch_begin = on_train_batch_begin = on_test_batch_begin = on_predict_batch_begin = _maybe

    return Heartbeat()


def _answer(payload: dict) -> None:
    print(CONTROL + json.dumps(payload), flush=True)


def _serve_stdin() -> None:
    """Worker loop: a task per stdin line, an answer per task on stdout, heartbeats
    between. Ctrl-C is the driver's to handle: it kills its workers itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    beat = heartbeat(lambda: _answer({"beat": True}))
    for line in sys.stdin:
        if not line.strip():
            continue
        task = RunTask.from_json(line)
        try:
            record = train_task(task, [beat])
            answer = {"ok": True, "detail": f"{record.status}, test acc {record.test_acc:.2f} %"}
        except Exception as error:  # one run's failure must not stop the worker
            answer = {"ok": False, "detail": f"{type(error).__name__}: {error}"}
        _answer(answer)


if __name__ == "__main__":
    _serve_stdin()
