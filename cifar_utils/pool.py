"""Train many runs at once: a pool of worker processes, one run at a time each.

``./run_all.sh --jobs N`` first trains every run the chapters need here, then runs the
notebooks, which find every run finished and only read, plot and judge. Scheduling at
the grain of a run (not of a notebook) keeps N workers busy until the last run, and no
chapter waits for another chapter's runs.

Why not ``concurrent.futures.ProcessPoolExecutor``: a worker that dies (out of memory, a
crashed driver) breaks the whole executor and every pending run with it, and its workers
cannot be given different GPUs. Here each worker is ``python -m cifar_utils.pool`` with
its own environment (GPU pinned round-robin, no memory preallocation so several share a
GPU), reading one task per line on stdin and answering on stdout; a dead worker fails
its one run, is replaced, and the others finish. Two workers never train one run: the
run folder's lock (``training.run_lock``) makes the second wait and reuse the result.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

CONTROL = "@@pool "  # prefix of a worker's answer lines; everything else is progress


@dataclass(frozen=True)
class RunTask:
    """One (experiment, seed) run with everything a worker needs to train it."""

    experiment: int
    seed: int
    out_dir: str  # the runs folder
    data_source: str | None = None
    subset: int | None = None
    epochs: int | None = None
    batch_size: int | None = None
    eval_every: int = 1
    variant: dict = field(default_factory=dict)  # Experiment.vary(**variant) for a sweep point
    variant_label: str | None = None
    speed: dict | None = None
    log_every: int | None = None
    force: bool = False
    checkpoint_seconds: float | None = None  # None: run_experiment's default (30 s)

    @property
    def label(self) -> str:
        extra = f" [{self.variant_label or self.variant}]" if self.variant else ""
        return f"exp {self.experiment}{extra} seed {self.seed}"

    def experiment_object(self):
        from .experiments import get_experiment

        exp = get_experiment(self.experiment)
        return exp.vary(self.variant_label, **self.variant) if self.variant else exp

    def cost(self) -> float:
        """Relative cost, to start long runs first and weigh the ETA: CPU seconds by the cost
        table (``costs.py``; on a GPU the proportions are roughly alike)."""
        from .costs import cpu_run_seconds

        return cpu_run_seconds(self)

    def to_json(self) -> str:
        return json.dumps(asdict(self))


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
    """The environment of worker ``index``: its GPU, and memory grown on demand so that
    several workers (and the notebooks after them) can share one GPU."""
    env = {**os.environ, "XLA_PYTHON_CLIENT_PREALLOCATE": "false", "TF_FORCE_GPU_ALLOW_GROWTH": "true",
           "PYTHONUNBUFFERED": "1"}
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
        self.result, self.lock = PoolResult(), threading.Lock()
        self.start, self.done_cost = time.monotonic(), 0.0

    def tell(self, text: str) -> None:
        with self.lock:
            self.say(text)

    def report(self, task: RunTask, ok: bool, detail: str) -> None:
        with self.lock:
            (self.result.finished.append(task) if ok else self.result.failed.append((task, detail)))
            self.done_cost += task.cost()
            done = len(self.result.finished) + len(self.result.failed)
            elapsed = time.monotonic() - self.start
            left = self.total_cost - self.done_cost
            eta = f"ETA {_duration(elapsed / self.done_cost * left)}" if done < self.total else "all runs finished"
            self.say(f"{self.name}: {done}/{self.total} runs done ({task.label} {'done: ' if ok else 'FAILED: '}"
                     f"{detail}); {_duration(elapsed)} elapsed, {eta}")

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() - self.start > self.deadline

    def finish(self, pending: list[RunTask]) -> PoolResult:
        if pending:
            self.result.not_started = list(pending)
            self.say(f"{self.name}: deadline of {self.deadline:.0f} s reached: {len(pending)} run(s) not started: "
                     + ", ".join(t.label for t in pending[:10]) + (" ..." if len(pending) > 10 else ""))
        return self.result


class _Worker:
    """One worker process and the task it holds."""

    def __init__(self, index: int, gpus: list[str]):
        self.index = index
        self.process = subprocess.Popen([sys.executable, "-m", "cifar_utils.pool"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                        env=worker_environment(index, gpus))
        self.task: RunTask | None = None
        self.tail: list[str] = []

    def give(self, task: RunTask) -> None:
        self.task, self.tail = task, []
        self.process.stdin.write(task.to_json() + "\n")
        self.process.stdin.flush()

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.close()
            except OSError:
                pass
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def run_pool(tasks: Iterable[RunTask], jobs: int = 1, say: Callable[[str], None] = print,
             is_progress: Callable[[str], bool] = lambda line: True, deadline: float | None = None) -> PoolResult:
    """Train ``tasks`` on ``jobs`` workers, longest first; one line per event with runs
    done / total and an ETA over the whole pool. A failing run is named and the others
    finish; the result lists both. After ``deadline`` seconds no new run starts (the ones
    under way finish): for a machine lent for a fixed time, whose next call resumes."""
    pending = sorted(tasks, key=lambda t: -t.cost())
    tally = Tally(pending, say, "pool", deadline)
    if not pending:
        return tally.result
    gpus = gpu_ids()
    say(f"pool: {tally.total} runs on {min(jobs, tally.total)} worker(s)"
        + (f", GPUs {', '.join(gpus)} round-robin" if gpus else ", no GPU"))
    report = tally.report

    def next_task() -> RunTask | None:
        with tally.lock:
            return None if tally.expired() or not pending else pending.pop(0)

    def serve(index: int) -> None:
        worker = None
        while (task := next_task()) is not None:
            if worker is None or worker.process.poll() is not None:
                worker = _Worker(index, gpus)
            try:
                worker.give(task)
            except (BrokenPipeError, OSError):
                report(task, False, "the worker process died before the run started")
                worker = None
                continue
            outcome = _follow(worker, say, is_progress)
            if outcome is None:  # the worker died mid-run
                code = worker.process.wait()
                report(task, False, f"the worker process died (exit {code}); last lines: "
                                    + " | ".join(line.strip() for line in worker.tail[-3:]))
                worker = None
            else:
                report(task, *outcome)
        if worker is not None:
            worker.close()

    threads = [threading.Thread(target=serve, args=(i,), daemon=True) for i in range(min(jobs, tally.total))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return tally.finish(pending)


def _follow(worker: _Worker, say: Callable[[str], None], is_progress: Callable[[str], bool]):
    """Relay a worker's progress lines until it answers; None if it died first."""
    for line in worker.process.stdout:
        if line.startswith(CONTROL):
            answer = json.loads(line[len(CONTROL):])
            return answer["ok"], answer["detail"]
        worker.tail = (worker.tail + [line])[-20:]
        if line.strip() and is_progress(line):
            say(line.rstrip())
    return None


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else \
        f"{seconds // 60}m{seconds % 60:02d}s"


# --- the worker side ---------------------------------------------------------------------

_DATA: dict = {}


def train_task(task: RunTask):
    """Train (or reuse) one task's run in this process; returns its record."""
    from .data import load_cifar10
    from .training import run_experiment

    key = (task.data_source, task.subset)
    if key not in _DATA:
        _DATA[key] = load_cifar10(task.data_source, subset=task.subset)
    extra = {} if task.checkpoint_seconds is None else {"checkpoint_seconds": task.checkpoint_seconds}
    return run_experiment(task.experiment_object(), epochs=task.epochs, batch_size=task.batch_size,
                          seed=task.seed, data=_DATA[key], out_dir=task.out_dir, force=task.force,
                          log_every=task.log_every, eval_every=task.eval_every, speed=task.speed, **extra)


def _serve_stdin() -> None:
    """Worker loop: a task per stdin line, an answer per task on stdout."""
    for line in sys.stdin:
        if not line.strip():
            continue
        task = RunTask(**json.loads(line))
        try:
            record = train_task(task)
            answer = {"ok": True, "detail": f"{record.status}, test acc {record.test_acc:.2f} %"}
        except Exception as error:  # one run's failure must not stop the worker
            answer = {"ok": False, "detail": f"{type(error).__name__}: {error}"}
        print(CONTROL + json.dumps(answer), flush=True)


if __name__ == "__main__":
    _serve_stdin()
