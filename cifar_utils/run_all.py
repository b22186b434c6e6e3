"""Train every run the chapters need in a pool of workers, then run the chapter notebooks
headless with papermill, then build the report.

``./run_all.sh`` calls this module; ``./run_all.sh --help`` lists the options. Papermill
executes each notebook in its own kernel and saves the executed copy even when a cell
fails; this driver adds what papermill lacks: profiles, a training phase scheduled run by
run (``pool``), one progress line per event, a cost warning on CPU, arguments checked
before anything starts, and a report that says exactly what it holds.

Its parts: ``run_args`` (the flags, checked; each notebook's parameters), ``run_plan``
(the runs an invocation trains and their CPU cost), ``run_profile`` (``profile.json``);
this module runs the phases in order and relays their progress.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# Before any backend is imported (nothing above or in the imports below loads one:
# tests/test_imports.py checks): several processes (pool workers, notebook kernels, this
# one) share a GPU, so none may claim most of its memory up front (JAX and TensorFlow do).
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")

from .course import SUMMARY  # noqa: E402
from .errors import ClusterError, ReportFolderError, RunError, RunStorageError  # noqa: E402
from .run_args import chapters, notebook_parameters, parse_args  # noqa: E402, F401 (the driver's face: tests, scripts)
from .run_plan import cost_warning, training_tasks  # noqa: E402, F401
from .run_profile import write_profile  # noqa: E402
from .runs.pool import run_pool  # noqa: E402
from .runs.progress import is_run_line, progress_text  # noqa: E402

# Unmarked lines worth showing: a failure's (a worker's run prints its progress marked, see
# ``runs.progress``; a notebook's progress lines are picked by their run's label).
FAILURE_MARKERS = ("Error", "Traceback", "Exception")


def check_data(args: argparse.Namespace) -> str:
    """Load the data once before any training, so a missing source fails in seconds."""
    from .data import CifarDataError, load_cifar10

    try:
        data = load_cifar10(args.data, subset=args.subset)
    except CifarDataError as error:
        raise SystemExit(
            f"run_all: no CIFAR-10 data reachable: {error}\n"
            "  Point at a local copy:  ./run_all.sh --data /path/to/cifar-10-python.tar.gz  "
            "(or export CIFAR10_SOURCE=...)\n"
            "  Or try the course offline:  ./run_all.sh --quick") from None
    return f"{data.source}: {len(data[0][0]):,} train / {len(data[1][0]):,} test images"


class Progress:
    """Prefixes each progress line with where it comes from and the elapsed time; knows
    the phase under way and the notebook processes running, for an interruption."""

    def __init__(self):
        self.start = time.monotonic()
        self.lock = threading.Lock()
        self.phase = "loading the data"
        self.children: set[subprocess.Popen] = set()
        self.stopping = False

    def say(self, name: str, text: str) -> None:
        elapsed = int(time.monotonic() - self.start)
        with self.lock:
            if not self.stopping:
                print(f"[{elapsed // 60:3d}m{elapsed % 60:02d}s] {name}: {text}", flush=True)

    def stop(self) -> None:
        """Interrupted: say nothing more, start nothing more, and end the notebooks running
        (SIGINT first, so papermill shuts its kernel down; killed if it takes 10 s)."""
        with self.lock:
            self.stopping = True
            children = list(self.children)
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def is_progress(line: str) -> bool:
    """An unmarked line of a worker or a notebook to show: a failure's."""
    return any(marker in line for marker in FAILURE_MARKERS)


def notebook_line(line: str) -> str | None:
    """What the driver shows of a line of papermill's log: a run's progress or a failure."""
    text = line.strip().split(" - ", 1)[-1]
    marked = progress_text(text)
    if marked is not None:
        return marked
    return text if is_run_line(text) or is_progress(text) else None


def papermill_command(notebook: Path, output: Path, params_file: Path) -> list[str]:
    return [sys.executable, "-m", "papermill", str(notebook), str(output), "-k", "python3", "-f",
            str(params_file), "--log-output", "--no-progress-bar", "--cwd", str(notebook.parent)]


def run_notebook(args: argparse.Namespace, notebook: Path, parameters: dict, progress: Progress) -> bool:
    """Execute one notebook; its executed copy (with any error banner) and log are kept.
    Its results file is removed first, so only a complete execution leaves one behind."""
    name = notebook.stem
    for folder in ("notebooks", "logs", "params", "results"):
        (args.out / folder).mkdir(parents=True, exist_ok=True)
    (args.out / "results" / f"{name}.json").unlink(missing_ok=True)
    params_file = args.out / "params" / f"{name}.json"  # JSON is YAML: papermill -f reads it
    params_file.write_text(json.dumps(parameters))
    log_path = args.out / "logs" / f"{name}.log"
    progress.say(name, "started")
    with open(log_path, "w") as log:
        process = subprocess.Popen(papermill_command(notebook, args.out / "notebooks" / notebook.name, params_file),
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        progress.children.add(process)
        for line in process.stdout:
            log.write(line)
            log.flush()
            text = notebook_line(line)
            if text is not None:
                progress.say(name, text)
        process.wait()
        progress.children.discard(process)
    ok = process.returncode == 0
    progress.say(name, "done" if ok else f"FAILED (exit {process.returncode}); log: {log_path}")
    return ok


def train_all(args: argparse.Namespace, notebooks: list[Path], progress: Progress) -> tuple[list[str], int]:
    """The training phase: every needed run, in a pool; returns the failed runs, named,
    and how many were not started before the deadline."""
    tasks = training_tasks(args, notebooks)

    def say(text: str) -> None:
        progress.say("train", text)

    settings = {"say": say, "is_progress": is_progress, "deadline": args.deadline, "stall": args.stall_timeout}
    if args.cluster:
        from .runs.cluster import run_on_cluster

        result = run_on_cluster(tasks, args.cluster, **settings)
    else:
        result = run_pool(tasks, args.jobs, **settings)
    return [f"{task.label} ({detail})" for task, detail in result.failed], len(result.not_started)


def main(argv: list[str] | None = None) -> int:
    """Run it all; an interruption or a failure outside any one run or notebook ends it with
    one line saying what happened (exit 130 for Ctrl-C, 1 otherwise), never a traceback."""
    args = parse_args(argv)
    progress = Progress()
    try:
        return run(args, progress)
    except KeyboardInterrupt:
        progress.stop()
        print(f"\nrun_all: interrupted during {progress.phase}. Finished runs are kept in {args.out / 'runs'} and "
              "an unfinished one keeps its last checkpoint: run the same command again to resume.", flush=True)
        return 130
    except (ClusterError, RunError) as error:
        progress.stop()
        print(f"run_all: {error}", flush=True)
        return 1


def run(args: argparse.Namespace, progress: Progress) -> int:
    """Everything ``main`` does, in order: data, training, notebooks, summary, report."""
    notebooks = chapters(args.notebooks, args.only)
    print(f"run_all: {args.profile} profile, {len(notebooks)} chapter(s) + summary, "
          f"epochs {args.epochs or 'per recipe'}, seeds {args.seeds}, batch {args.batch_size or 'per recipe'}, "
          f"jobs {args.jobs}; output in {args.out}", flush=True)
    print(f"run_all: data {check_data(args)}", flush=True)
    from .backend import backend_name, device_description

    print(f"run_all: Keras backend {backend_name()} on {device_description()}", flush=True)
    failed_runs: list[str] = []
    if args.reference:
        print(f"run_all: rendering from the reference runs in {args.reference}; nothing is trained", flush=True)
    else:
        failed_runs, not_started = training_phase(args, notebooks, progress)
        if args.train_only or not_started:
            return 1 if failed_runs else 3 if not_started else 0
    profile = write_profile(args, notebooks)
    failed: list[str] = []
    stop = threading.Event()

    def job(notebook: Path) -> None:
        if progress.stopping:
            return
        progress.phase = f"the notebooks ({notebook.stem} among them)"
        if stop.is_set():
            progress.say(notebook.stem, "not started (an earlier notebook failed; see --continue-on-error)")
            failed.append(notebook.stem)
            return
        if not run_notebook(args, notebook, notebook_parameters(args, notebook), progress):
            failed.append(notebook.stem)
            if not args.continue_on_error:
                stop.set()

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        try:
            list(pool.map(job, notebooks))
        except BaseException:  # before the pool waits for its threads: end their notebooks
            progress.stop()
            raise
    summary = args.notebooks / f"{SUMMARY}.ipynb"
    if summary.exists() and not (failed and not args.continue_on_error):
        progress.phase = f"the summary notebook ({SUMMARY})"
        if not run_notebook(args, summary, notebook_parameters(args, summary), progress):
            failed.append(SUMMARY)
    report_ok = True
    if not args.no_report and not (failed and not args.continue_on_error):
        progress.phase = "writing the report"
        report_ok = write_report(args, profile)
    if failed_runs:
        print(f"run_all: FAILED runs: {'; '.join(failed_runs)} (the chapters show them as not run)", flush=True)
    if failed:
        print(f"run_all: FAILED notebooks: {', '.join(failed)} "
              f"(executed copies in {args.out / 'notebooks'}, logs in {args.out / 'logs'})", flush=True)
    if failed or failed_runs or not report_ok:
        return 1
    print(f"run_all: all {len(notebooks) + 1} notebooks ran in {time.monotonic() - progress.start:.0f} s",
          flush=True)
    return 0


def training_phase(args: argparse.Namespace, notebooks: list[Path], progress: Progress) -> tuple[list[str], int]:
    """Train every needed run; say what did not run: with --train-only the phase's tally,
    else, when the deadline left runs unstarted, that no notebook runs (their exercises
    would train after the deadline, their chapters would miss those runs)."""
    warning = cost_warning(args, training_tasks(args, notebooks))
    if warning:
        print(f"run_all: WARNING: {warning}", flush=True)
    if args.deadline and args.profile in ("full", "laptop") and not args.train_only:
        print("run_all: --deadline: the exercises' starter cells are not trained", flush=True)
    if args.train_only:  # first, so a piece stopped mid-way still says what it trained
        write_profile(args, notebooks)
    os.environ["CIFAR_UTILS_LOCK_WAIT"] = str(args.stall_timeout)  # for the workers and the notebooks
    progress.phase = "the training phase"
    failed_runs, not_started = train_all(args, notebooks, progress)
    failures = f"; FAILED runs: {'; '.join(failed_runs)}" if failed_runs else ""
    if args.train_only:
        print(f"run_all: training phase done: {len(failed_runs)} failed, {not_started} not started{failures}",
              flush=True)
    elif not_started:
        print(f"run_all: {not_started} run(s) not started (the deadline, or a lost cluster){failures}. No notebook "
              "and no report ran: run the same command again to train the rest, then render.", flush=True)
    return failed_runs, not_started


def write_report(args: argparse.Namespace, profile: dict) -> bool:
    """Build this invocation's report from its own profile; a report folder that gained a
    reader's files since the arguments were checked is named, and nothing in it is touched."""
    from .report import build_report

    try:
        index = build_report(args.out, args.report, profile)
    except (ReportFolderError, RunStorageError, OSError) as error:
        print(f"run_all: report NOT written: {error}", flush=True)
        return False
    print(f"run_all: report written to {index}", flush=True)
    return True


if __name__ == "__main__":
    sys.exit(main())
