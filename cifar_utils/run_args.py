"""The command line of ``./run_all.sh``: its flags, parsed and checked before anything
starts (a bad value, folder or cluster address is named in seconds, never after hours of
training), and the parameters each chapter notebook is given from them.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import uuid
from pathlib import Path

from .course import SUMMARY, all_seeds, chapter6_settings, chapter_number, needed_runs
from .parameters import ParameterError, check_count, check_parameters, check_seeds
from .profiles import PROFILES
from .runs.pool import STALL_SECONDS, gpu_ids
from .speed import add_speed_arguments, speed_from_arguments

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR = ROOT / "notebooks"
SHIPPED_REFERENCE = ROOT / "results" / "reference"


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
