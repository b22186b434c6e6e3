"""Train every run the chapters need in a pool of workers, then run the chapter notebooks
headless with papermill, then build the report.

``./run_all.sh`` calls this module; ``./run_all.sh --help`` lists the options. Papermill
executes each notebook in its own kernel and saves the executed copy even when a cell
fails; this driver adds what papermill lacks: profiles, a training phase scheduled run by
run (``pool``), one progress line per event, a cost warning on CPU, arguments checked
before anything starts, and a report that says exactly what it holds.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

# Before any backend is imported (nothing above or in the imports below loads one:
# tests/test_imports.py checks): several processes (pool workers, notebook kernels, this
# one) share a GPU, so none may claim most of its memory up front (JAX and TensorFlow do).
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")

from .course import (  # noqa: E402
    SUMMARY,
    all_seeds,
    chapter6_settings,
    chapter_number,
    needed_runs,
    run_settings,
)
from .errors import ClusterError, ReferenceFolderError, ReportFolderError, RunError, RunStorageError  # noqa: E402
from .parameters import ParameterError, check_count, check_parameters, check_seeds  # noqa: E402
from .profiles import PROFILES  # noqa: E402
from .runs.pool import STALL_SECONDS, RunTask, gpu_ids, run_pool  # noqa: E402
from .runs.progress import is_run_line, progress_text  # noqa: E402
from .runs.reference import ReferenceRuns, load_reference  # noqa: E402
from .runs.reference_progress import ReferenceProgress, progress_of, progress_sentence  # noqa: E402
from .runs.settings import RunSettings  # noqa: E402
from .runs.source import source_identity  # noqa: E402
from .speed import Speed, add_speed_arguments, speed_from_arguments  # noqa: E402
from .storage import write_atomic  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR = ROOT / "notebooks"
# Unmarked lines worth showing: a failure's (a worker's run prints its progress marked, see
# ``runs.progress``; a notebook's progress lines are picked by their run's label).
FAILURE_MARKERS = ("Error", "Traceback", "Exception")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    try:
        return check_count("", value, optional=False)
    except ParameterError as error:
        raise argparse.ArgumentTypeError(f"{text!r}: {error.problem}") from None


def seed_list(text: str) -> list[int]:
    """'0,1,2' -> [0, 1, 2]; refuses '', 'a,b', '0,,1', and what ``parameters.check_seeds``
    refuses (negatives, repeats, seeds past every backend's range) by name."""
    parts = text.split(",")
    if not text.strip() or any(not p.strip() for p in parts):
        raise argparse.ArgumentTypeError(f"{text!r}: give comma-separated whole numbers, e.g. 0,1,2")
    try:
        return check_seeds("seeds", [int(p) for p in parts])
    except ValueError as error:
        problem = error.problem if isinstance(error, ParameterError) else "seeds must be whole numbers, e.g. 0,1,2"
        raise argparse.ArgumentTypeError(f"{text!r}: {problem}") from None


def parameter_problem(args: argparse.Namespace) -> str | None:
    """The notebooks' own check (``parameters``) of what they will be given, as flags."""
    values = {"epochs": args.epochs, "batch_size": args.batch_size, "seeds": args.seeds, "subset": args.subset,
              "eval_every": args.eval_every, "log_every": args.log_every}
    try:
        check_parameters(values)
    except ParameterError as error:
        value = ",".join(map(str, error.value)) if isinstance(error.value, list) else error.value
        return f"--{error.name.replace('_', '-')} {value}: {error.problem}"
    return None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="run_all.sh", description="Train every run the chapters need, run every chapter notebook with "
                                       "papermill, then build report/.",
        epilog="Examples: ./run_all.sh --quick    ./run_all.sh --only 03 --seeds 0,1,2    "
               "KERAS_BACKEND=jax ./run_all.sh --data /data/cifar10.npz --jobs 4    "
               "./run_all.sh --reference results/reference")
    parser.add_argument("--profile", choices=sorted(PROFILES), default=None,
                        help="quick: 500 sample images, 2 epochs, no verdicts, exercises not trained (a smoke test "
                             "in minutes); laptop: 5,000 real training images, the full test set, 10 epochs at "
                             "batch 64 (the study's effects, judged, in about 30 minutes on 2 CPU cores; needs "
                             "--data or $CIFAR10_SOURCE); cpu: the CPU reference, the full data at 30 of the "
                             "study's 300 epochs (many CPU-hours: train it in pieces, README); "
                             "full (default): the study's recipe as it was")
    parser.add_argument("--quick", action="store_true", help="the same as --profile quick")
    parser.add_argument("--reference", type=Path, metavar="DIR",
                        help="render every chapter from the run records in DIR (e.g. results/reference): "
                             "trains nothing")
    parser.add_argument("--only", action="append", default=[], metavar="NN",
                        help="run only these chapters (e.g. 03; repeat or comma-separate); the summary still runs")
    parser.add_argument("--epochs", type=positive_int,
                        help="epochs per run (default: each experiment's recipe, the study's 300; quick: 2)")
    parser.add_argument("--batch-size", type=positive_int, help="batch size (default: each recipe's, the study's 512)")
    parser.add_argument("--seeds", type=seed_list, help="comma-separated seeds, e.g. 0,1,2 (default 0)")
    parser.add_argument("--data", help="CIFAR-10 source: a path, or 'sample' (default: $CIFAR10_SOURCE or download)")
    parser.add_argument("--subset", type=positive_int, help="stratified subset of the training set")
    parser.add_argument("--jobs", type=positive_int,
                        help="training runs in parallel (worker processes; on a big GPU several share it); "
                             "default: one per GPU, or 2 on a CPU with 2 or more cores (measured faster than 1)")
    parser.add_argument("--cluster", metavar="ADDRESS",
                        help="train on a Dask cluster: tcp://scheduler:8786, or local:N for N local worker processes "
                             "(needs the 'cluster' extra; the runs folder must be shared, see the README)")
    parser.add_argument("--continue-on-error", action="store_true",
                        help="keep starting notebooks after one fails (the exit status still says it failed)")
    parser.add_argument("--force", action="store_true", help="retrain runs that already finished")
    parser.add_argument("--out", type=Path, help="output folder (default output/<profile>)")
    parser.add_argument("--report", type=Path,
                        help="report folder (default: report/, the committed one, for --reference "
                             "results/reference; else <out>-report beside the output folder)")
    parser.add_argument("--no-report", action="store_true", help="skip building the report")
    parser.add_argument("--train-only", action="store_true",
                        help="only the training phase: no notebooks, no report (e.g. on a GPU machine)")
    parser.add_argument("--deadline", type=positive_int, metavar="SECONDS",
                        help="start no new run after this many seconds (the runs under way finish); runs left "
                             "unstarted stop the invocation before the notebooks, exit status 3; the exercises' "
                             "starter cells are not trained")
    parser.add_argument("--stall-timeout", type=positive_int, metavar="SECONDS", default=int(STALL_SECONDS),
                        help="a run that prints nothing, not even a heartbeat, for this long is taken for hung: its "
                             "worker is ended and the run retried once, then failed; a run folder another process "
                             f"holds unchanged for this long is given up (default {STALL_SECONDS:.0f})")
    parser.add_argument("--log-every", type=positive_int, help="epochs between progress lines")
    parser.add_argument("--eval-every", type=positive_int, default=1,
                        help="evaluate the test set every N epochs (and the first and last); changes the curves")
    add_speed_arguments(parser)
    parser.add_argument("--notebooks", type=Path, default=NOTEBOOKS_DIR, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick and args.profile not in (None, "quick"):
        parser.error(f"--quick and --profile {args.profile} exclude each other")
    if args.quick and args.reference:
        parser.error("--quick and --reference exclude each other: a reference folder holds its own runs")
    if args.quick:
        args.profile = "quick"
    if args.profile and args.reference:
        parser.error(f"--profile {args.profile} and --reference exclude each other: a reference folder holds its "
                     "own runs")
    if args.train_only and args.reference:
        parser.error("--train-only and --reference exclude each other: rendering a reference trains nothing")
    if args.cluster and args.reference:
        parser.error("--cluster and --reference exclude each other: rendering a reference trains nothing")
    if args.cluster:
        problem = cluster_problem(args.cluster)
        if problem:
            parser.error(problem)
    args.profile = "reference" if args.reference else args.profile or "full"
    profile = PROFILES.get(args.profile, PROFILES["full"])
    args.epochs = args.epochs if args.epochs is not None else profile["epochs"]
    args.batch_size = args.batch_size if args.batch_size is not None else profile["batch_size"]
    args.seeds = args.seeds if args.seeds is not None else profile["seeds"]
    args.data = args.data or profile["data"] or os.environ.get("CIFAR10_SOURCE") or None
    if args.reference and args.data is None:
        args.data = "sample"  # for the example images and figures; the numbers come from the reference
    args.subset = args.subset if args.subset is not None else profile["subset"]
    args.jobs = args.jobs or default_jobs()
    problem = parameter_problem(args)
    if problem:
        parser.error(problem)
    args.out = (args.out or ROOT / "output" / args.profile).resolve()
    args.report = (args.report or default_report(args)).resolve()
    args.only = [c.strip().zfill(2) for item in args.only for c in item.split(",") if c.strip()]
    for flag, path in (("--out", args.out), ("--report", args.report)):
        problem = unusable_folder(path)
        if problem:
            parser.error(f"{flag} {path}: {problem}")
    if args.reference:
        args.reference = args.reference.resolve()
        if not args.reference.is_dir():
            parser.error(f"--reference {args.reference}: not a folder")
    problem = folder_conflict(args)
    if problem:
        parser.error(problem)
    args.speed = speed_from_arguments(parser, args).as_dict()
    args.run_token = uuid.uuid4().hex[:12]  # marks this invocation's executions as theirs
    problem = subset_problem(args)
    if problem:
        parser.error(problem)
    return args


SHIPPED_REFERENCE = ROOT / "results" / "reference"


def default_report(args: argparse.Namespace) -> Path:
    """``report/`` holds the committed report of the shipped reference, so only rendering
    that reference writes there by default; any other invocation's report goes beside its
    output folder and never replaces the committed one by accident."""
    if args.reference and Path(args.reference).resolve() == SHIPPED_REFERENCE.resolve():
        return ROOT / "report"
    return args.out.with_name(f"{args.out.name}-report")


def subset_problem(args: argparse.Namespace) -> str | None:
    """A --subset too small for a validation split that a chosen chapter's runs hold out."""
    if args.subset is None or args.reference:
        return None
    from .runs.splits import splits_problem, subset_class_sizes

    experiments = [run.experiment for notebook in chapters(args.notebooks, args.only)
                   for run in needed_runs(notebook.stem, notebook_parameters(args, notebook))]
    problem = splits_problem(experiments, subset_class_sizes(args.subset))
    return f"--subset {args.subset}: {problem} (or leave those chapters out with --only)" if problem else None


def cluster_problem(address: str) -> str | None:
    """Why ``--cluster address`` cannot work, found before the data loads (no connection
    is tried here: an unreachable scheduler is named when the training phase starts)."""
    from .runs.cluster import INSTALL_HINT, parse_address

    try:
        parse_address(address)
    except ValueError as error:
        return f"--cluster {error}"
    if importlib.util.find_spec("distributed") is None:
        return f"--cluster {address}: needs Dask's distributed package: {INSTALL_HINT}"
    return None


def unusable_folder(path: Path) -> str | None:
    """Why ``path`` cannot be an output folder, found before anything is trained."""
    if path.exists() and not path.is_dir():
        return "exists and is not a folder"
    existing = next((p for p in [path, *path.parents] if p.exists()), None)
    if existing is None or not existing.is_dir():
        return f"{existing} is not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    return None


def folder_conflict(args: argparse.Namespace) -> str | None:
    """Why --out, --report and --reference cannot be used together, found before anything
    runs: a reference is read-only, and a report replaces only what earlier reports wrote."""
    from .folders import reference_folder_problem, report_folder_problem

    report = None if args.no_report or args.train_only else args.report
    if args.reference:
        problem = reference_folder_problem(args.reference, args.out, report)
        if problem:
            return problem
    if report is not None:
        problem = report_folder_problem(report, args.out)
        if problem:
            return f"--report {report}: {problem}"
    return None


def chapters(notebooks_dir: Path, only: list[str]) -> list[Path]:
    found = sorted(p for p in notebooks_dir.glob("[0-9][0-9]_*.ipynb") if p.stem != SUMMARY)
    if SUMMARY[:2] in only and (notebooks_dir / f"{SUMMARY}.ipynb").exists():
        numbers = ", ".join(p.stem[:2] for p in found)
        raise SystemExit(f"run_all: --only {SUMMARY[:2]}: {SUMMARY}.ipynb is the summary, which runs after the chosen "
                         f"chapters every time; --only takes chapter numbers ({numbers})")
    chosen = [p for p in found if not only or p.stem[:2] in only]
    unknown = set(only) - {p.stem[:2] for p in found}
    if unknown:
        raise SystemExit(f"run_all: no chapter notebook numbered {', '.join(sorted(unknown))} in {notebooks_dir}")
    return chosen


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


def notebook_parameters(args: argparse.Namespace, notebook: Path) -> dict:
    """The parameters papermill injects: the same settings for every chapter."""
    parameters = {"profile": None if args.profile == "reference" else args.profile,
                  "epochs": args.epochs, "batch_size": args.batch_size, "seeds": args.seeds,
                  "data_source": args.data, "subset": args.subset, "out_dir": str(args.out),
                  "eval_every": args.eval_every, "log_every": args.log_every, "speed": args.speed,
                  "runs": str(args.reference) if args.reference else "read", "run_token": args.run_token,
                  # --quick stays short; a reference trains nothing; a deadline bounds training, and the
                  # exercises' starters would train after the training phase, where it cannot stop them
                  "exercises": args.profile in ("full", "laptop") and not args.deadline}
    if notebook.stem == SUMMARY:
        del parameters["exercises"]
        parameters["seeds"] = all_seeds({**chapter6_parameters(args), "seeds": args.seeds})  # chapters 1-4's too
    elif chapter_number(notebook.stem) == 6:
        parameters.update(chapter6_parameters(args))
    return parameters


def default_jobs() -> int:
    """One worker per GPU; on a CPU two (docs/benchmarks.md: --quick took 4m53s with 2
    workers and 7m53s with 1 on 2 cores, as each run spends seconds tracing on one core)."""
    gpus = gpu_ids()
    return len(gpus) if gpus else min(2, os.cpu_count() or 1)


def chapter6_parameters(args: argparse.Namespace) -> dict:
    return chapter6_settings(None if args.profile == "reference" else args.profile, {})


def training_tasks(args: argparse.Namespace, notebooks: list[Path]) -> list[RunTask]:
    """Every distinct run the chosen chapters need (a run two chapters share, once)."""
    tasks: dict[str, RunTask] = {}
    settings = RunSettings.from_speed(args.speed, args.epochs, args.batch_size, args.eval_every)
    for notebook in notebooks:
        for run in needed_runs(notebook.stem, notebook_parameters(args, notebook)):
            exp = run.experiment
            variant = variant_changes(exp) if exp.variant else {}
            own = run_settings(exp, settings, run.keep_batch_size,
                               every_recipe=PROFILES.get(args.profile, {}).get("every_recipe", False))
            task = RunTask(exp.number, run.seed, str(args.out / "runs"), args.data, args.subset, own, variant,
                           exp.variant or None, args.speed, args.log_every, args.force)
            tasks.setdefault(f"{exp.key}-{run.seed}", task)
    return list(tasks.values())


def variant_changes(exp) -> dict:
    """The recipe and spec fields a variant changes from its registry entry."""
    from dataclasses import asdict

    from .experiments import get_experiment

    base = get_experiment(exp.number)
    changes = {k: v for k, v in asdict(exp.recipe).items() if asdict(base.recipe)[k] != v}
    changes.update({k: v for k, v in asdict(exp.spec).items() if asdict(base.spec)[k] != v})
    return changes


def cost_warning(args: argparse.Namespace, tasks: list[RunTask]) -> str | None:
    """On a machine without an accelerator, say up front what a long run costs (the cost
    table, ``costs.py``; workers on the same cores share them, so their number does not
    shorten it much: docs/benchmarks.md)."""
    from .costs import MEASURED_ON, cpu_run_seconds

    if gpu_ids() or not tasks:
        return None
    hours = sum(cpu_run_seconds(t) for t in tasks) / 3600
    if hours < 0.25:
        return None
    experiments = len({(t.experiment, t.variant_label) for t in tasks})
    return (f"No GPU found: {len(tasks)} runs of {experiments} experiments"
            f"{f' x {args.epochs} epochs' if args.epochs else ' at their recipes’ epochs (the study’s 300)'} "
            f"will take about {_hours(hours)} on a CPU like the one the cost table was measured on "
            f"({MEASURED_ON}; CPUs differ by up to 5x). "
            "To run less: --quick, --only 01, --epochs 20, --subset 5000, or use a GPU.")


def _hours(hours: float) -> str:
    return f"{hours:.0f} hours" if hours >= 1.5 else f"{60 * hours:.0f} minutes"


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


def write_profile(args: argparse.Namespace, notebooks: list[Path]) -> dict:
    """What this invocation is, for the report's banner and its inclusion rules; returned,
    so this invocation's report reads its own profile even if another invocation on the
    same --out rewrites profile.json meanwhile."""
    from .backend import backend_name, cpu_name, device_description, versions

    args.out.mkdir(parents=True, exist_ok=True)
    profile = {"profile": args.profile, "run_token": args.run_token, "epochs": args.epochs,
               "batch_size": args.batch_size, "seeds": args.seeds, "data": args.data or "keras.datasets download",
               "subset": args.subset, "eval_every": args.eval_every, "speed": Speed.coerce(args.speed).describe(),
               "reference": str(args.reference) if args.reference else None, **data_identity(args),
               "chapters": [nb.stem for nb in notebooks],
               "parameters": {nb.stem: notebook_parameters(args, nb)
                              for nb in sorted(args.notebooks.glob("[0-9][0-9]_*.ipynb"))},
               "backend": backend_name(), "device": device_description(), "cpu": cpu_name(), "versions": versions(),
               **source_identity(), "started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    profile["pieces"] = training_pieces(args.out / "profile.json", profile)
    write_atomic(args.out / "profile.json", json.dumps(profile, indent=1))
    return profile


# What must match for an earlier invocation on the same --out to be a piece of the same runs.
SAME_RUNS = ("profile", "epochs", "batch_size", "seeds", "subset", "eval_every", "data_fingerprint", "reference")
PIECE = ("started", "chapters", "commit", "dirty", "package_version", "cpu", "device", "backend")


def training_pieces(path: Path, profile: dict) -> list[dict]:
    """The invocations that trained this folder's runs with these settings, this one last:
    a reference trained in pieces names the commit, machine and date of each piece."""
    try:
        earlier = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        earlier = {}
    same = isinstance(earlier, dict) and all(earlier.get(key) == profile.get(key) for key in SAME_RUNS)
    pieces = earlier.get("pieces") if same and isinstance(earlier.get("pieces"), list) else []
    this = {key: profile.get(key) for key in PIECE}
    return [*(p for p in pieces if isinstance(p, dict) and p != this), this]


REFERENCE_MADE = ("epochs", "batch_size", "seeds", "subset", "cpu", "device", "pieces", "started", "commit", "dirty")
# The profile.json fields that name the runs an invocation trains, and their flags.
RUN_FLAGS = (("--epochs", "epochs"), ("--batch-size", "batch_size"), ("--subset", "subset"))


def profile_arguments(profile: dict) -> list[str]:
    """The ``run_all`` arguments that name the runs a profile.json's invocation trains."""
    argv = ["--profile", profile["profile"]] if profile.get("profile") not in (None, "reference") else []
    if profile.get("data") and profile["data"] != "keras.datasets download":
        argv += ["--data", profile["data"]]
    for flag, key in RUN_FLAGS:
        if profile.get(key):
            argv += [flag, str(profile[key])]
    if profile.get("seeds"):
        argv += ["--seeds", ",".join(map(str, profile["seeds"]))]
    return argv


def profile_tasks(profile: dict) -> dict[str, list[RunTask]] | None:
    """The runs a profile.json's invocation trains, chapter by chapter; None when the
    profile does not say what it was (none, or one this version cannot parse)."""
    if not profile.get("profile") or profile.get("profile") == "reference":
        return None
    try:
        args = parse_args(profile_arguments(profile))
    except SystemExit:
        return None
    return {notebook.stem: training_tasks(args, [notebook]) for notebook in chapters(args.notebooks, [])}


def reference_progress(reference: ReferenceRuns) -> ReferenceProgress | None:
    """How far a reference is from every run of the profile that made it (its profile.json)."""
    tasks = profile_tasks(reference.profile)
    return None if tasks is None else progress_of(reference, tasks)


def reference_made(reference: ReferenceRuns) -> dict:
    """What made a reference, for the banner: its profile's settings and pieces, the
    backends its runs name, and how far it is from its profile's every run."""
    made = {key: reference.profile.get(key) for key in REFERENCE_MADE}
    made["backends"] = sorted({r.backend for r in reference.records})
    progress = reference_progress(reference) if reference.records else None
    made["progress"] = progress_sentence(progress) if progress else None
    return made


def data_identity(args: argparse.Namespace) -> dict:
    """The data id this invocation's numbers come from (the report keeps an earlier chapter
    only if its runs used the same: a file replaced at one path changes it); for a
    reference, also how many runs it holds and what made them, for the banner."""
    if args.reference:
        try:
            reference = load_reference(args.reference)
        except ReferenceFolderError as error:
            raise SystemExit(f"run_all: --reference {args.reference}: {error}") from None
        first = reference.records[0].params["data_fingerprint"] if reference.records else None
        return {"data_fingerprint": first, "reference_runs": len(reference.records),
                "reference_profile": reference.profile.get("profile"), "reference_made": reference_made(reference)}
    from .data import CifarDataError, load_cifar10
    from .runs.identity import data_fingerprint

    try:
        return {"data_fingerprint": data_fingerprint(load_cifar10(args.data, subset=args.subset))}
    except CifarDataError:
        return {"data_fingerprint": None}


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
