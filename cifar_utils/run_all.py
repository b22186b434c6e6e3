"""Run the chapter notebooks headless with papermill, then build the report.

``./run_all.sh`` calls this module; ``./run_all.sh --help`` lists the options. Papermill
executes each notebook in its own kernel and saves the executed copy even when a cell
fails; this driver adds what papermill lacks: profiles, notebooks in parallel, one
progress line per event in the terminal, a cost warning on CPU and a final verdict.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

from .speed import Speed, add_speed_arguments, speed_from_arguments

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR = ROOT / "notebooks"
SUMMARY = "05_summary"
QUICK = {"data": "sample", "epochs": 2, "seeds": [0], "subset": None}
FULL = {"data": None, "epochs": 300, "seeds": [0], "subset": None}
# Measured on this project's 2-core CPU machines (docs/benchmarks.md): seconds per epoch
# on the full train set relative to the study's Colab GPU figures, used for the cost warning.
CPU_SLOWDOWN_VS_STUDY_GPU = 6.0
PROGRESS_MARKERS = (": epoch ", ": completed", ": diverged", "reusing finished run", "resuming after",
                    "Error", "Traceback", "Exception")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="run_all.sh", description="Run every chapter notebook with papermill, then build report/.",
        epilog="Examples: ./run_all.sh --quick    ./run_all.sh --only 03 --seeds 0,1,2    "
               "KERAS_BACKEND=jax ./run_all.sh --data /data/cifar10.npz --jobs 4")
    parser.add_argument("--quick", action="store_true",
                        help="bundled 2,000-image sample, 2 epochs: minutes on a laptop CPU")
    parser.add_argument("--only", action="append", default=[], metavar="NN",
                        help="run only these chapters (e.g. 03; repeat or comma-separate); the summary still runs")
    parser.add_argument("--epochs", type=int, help="epochs per run (full: 300, quick: 2)")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--seeds", help="comma-separated seeds, e.g. 0,1,2 (default 0)")
    parser.add_argument("--data", help="CIFAR-10 source: a path, or 'sample' (default: $CIFAR10_SOURCE or download)")
    parser.add_argument("--subset", type=int, help="stratified subset of the training set")
    parser.add_argument("--jobs", type=int, default=1, help="notebooks run in parallel (for a big GPU)")
    parser.add_argument("--continue-on-error", action="store_true",
                        help="keep starting notebooks after one fails (the exit status still says it failed)")
    parser.add_argument("--force", action="store_true", help="retrain runs that already finished")
    parser.add_argument("--out", type=Path, help="output folder (default output/quick or output/full)")
    parser.add_argument("--report", type=Path, default=ROOT / "report", help="report folder (default report/)")
    parser.add_argument("--no-report", action="store_true", help="skip building the report")
    parser.add_argument("--log-every", type=int, help="epochs between progress lines")
    parser.add_argument("--eval-every", type=int, default=1,
                        help="evaluate the test set every N epochs (and the first and last); changes the curves")
    add_speed_arguments(parser)
    parser.add_argument("--notebooks", type=Path, default=NOTEBOOKS_DIR, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    profile = QUICK if args.quick else FULL
    args.profile = "quick" if args.quick else "full"
    args.epochs = args.epochs or profile["epochs"]
    args.seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else profile["seeds"]
    args.data = args.data or profile["data"] or os.environ.get("CIFAR10_SOURCE") or None
    args.subset = args.subset or profile["subset"]
    args.out = (args.out or ROOT / "output" / args.profile).resolve()
    args.only = [c.strip().zfill(2) for item in args.only for c in item.split(",") if c.strip()]
    if args.epochs < 1 or args.jobs < 1 or args.eval_every < 1:
        parser.error("--epochs, --jobs and --eval-every must be at least 1")
    args.speed = speed_from_arguments(parser, args).as_dict()
    return args


def chapters(notebooks_dir: Path, only: list[str]) -> list[Path]:
    found = sorted(p for p in notebooks_dir.glob("[0-9][0-9]_*.ipynb") if p.stem != SUMMARY)
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


def cost_warning(args: argparse.Namespace, notebooks: list[Path]) -> str | None:
    """On a machine without an accelerator, say up front what a long run costs."""
    from .backend import accelerators
    from .experiments import chapter_experiments, get_experiment

    if accelerators():
        return None
    numbers = [e for nb in notebooks for e in chapter_experiments(int(nb.stem[:2]))]
    # The study's augmented epochs were slow because of its CPU-side generator; ours cost
    # what the same network costs without augmentation (exp 16 ~ exp 9, exp 17 ~ exp 15).
    twin = {16: 9, 17: 15}
    gpu_seconds = sum(get_experiment(twin.get(e.number, e.number)).study.seconds_per_epoch for e in numbers)
    scale = (args.subset or 50_000) / 50_000 if args.data != "sample" else 2_000 / 50_000
    hours = gpu_seconds * CPU_SLOWDOWN_VS_STUDY_GPU * scale * args.epochs * len(args.seeds) / 3600
    if hours < 0.25:
        return None
    return (f"No GPU found: {len(numbers)} experiments x {args.epochs} epochs x {len(args.seeds)} seed(s) "
            f"will take about {hours:.0f} hours on this CPU (estimate from measured CPU speed). "
            "To run less: --quick, --only 01, --epochs 20, --subset 5000, or use a GPU.")


class Progress:
    """Prefixes each notebook's progress lines with its name and the elapsed time."""

    def __init__(self):
        self.start = time.monotonic()
        self.lock = threading.Lock()

    def say(self, name: str, text: str) -> None:
        elapsed = int(time.monotonic() - self.start)
        with self.lock:
            print(f"[{elapsed // 60:3d}m{elapsed % 60:02d}s] {name}: {text}", flush=True)


def papermill_command(args: argparse.Namespace, notebook: Path, output: Path, params_file: Path) -> list[str]:
    return [sys.executable, "-m", "papermill", str(notebook), str(output), "-k", "python3", "-f",
            str(params_file), "--log-output", "--no-progress-bar", "--cwd", str(notebook.parent)]


def run_notebook(args: argparse.Namespace, notebook: Path, parameters: dict, progress: Progress) -> bool:
    """Execute one notebook; its executed copy (with any error banner) and log are kept."""
    name = notebook.stem
    for folder in ("notebooks", "logs", "params"):
        (args.out / folder).mkdir(parents=True, exist_ok=True)
    params_file = args.out / "params" / f"{name}.json"  # JSON is YAML: papermill -f reads it
    params_file.write_text(json.dumps(parameters))
    log_path = args.out / "logs" / f"{name}.log"
    progress.say(name, "started")
    with open(log_path, "w") as log:
        process = subprocess.Popen(papermill_command(args, notebook, args.out / "notebooks" / notebook.name,
                                                     params_file),
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        for line in process.stdout:
            log.write(line)
            log.flush()
            if any(marker in line for marker in PROGRESS_MARKERS):
                progress.say(name, line.strip().split(" - ", 1)[-1])
        process.wait()
    ok = process.returncode == 0
    progress.say(name, "done" if ok else f"FAILED (exit {process.returncode}); log: {log_path}")
    return ok


def force_retrain(args: argparse.Namespace, notebooks: list[Path]) -> None:
    import shutil

    from .experiments import chapter_experiments

    for notebook in notebooks:
        for exp in chapter_experiments(int(notebook.stem[:2])):
            for run_dir in (args.out / "runs").glob(f"{exp.key}-seed*"):
                shutil.rmtree(run_dir)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    notebooks = chapters(args.notebooks, args.only)
    print(f"run_all: {args.profile} profile, {len(notebooks)} chapter(s) + summary, epochs {args.epochs}, "
          f"seeds {args.seeds}, batch {args.batch_size}, jobs {args.jobs}; output in {args.out}", flush=True)
    print(f"run_all: data {check_data(args)}", flush=True)
    from .backend import backend_name, device_description

    print(f"run_all: Keras backend {backend_name()} on {device_description()}", flush=True)
    warning = cost_warning(args, notebooks)
    if warning:
        print(f"run_all: WARNING: {warning}", flush=True)
    if args.force:
        force_retrain(args, notebooks)
    write_profile(args)
    parameters = {"epochs": args.epochs, "batch_size": args.batch_size, "seeds": args.seeds,
                  "data_source": args.data, "subset": args.subset, "out_dir": str(args.out),
                  "log_every": args.log_every, "eval_every": args.eval_every, "speed": args.speed}
    progress = Progress()
    failed: list[str] = []
    stop = threading.Event()

    def job(notebook: Path) -> None:
        if stop.is_set():
            progress.say(notebook.stem, "not started (an earlier notebook failed; see --continue-on-error)")
            failed.append(notebook.stem)
            return
        if not run_notebook(args, notebook, parameters, progress):
            failed.append(notebook.stem)
            if not args.continue_on_error:
                stop.set()

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(job, notebooks))
    summary = args.notebooks / f"{SUMMARY}.ipynb"
    if summary.exists() and not (failed and not args.continue_on_error):
        summary_params = {"out_dir": str(args.out), "epochs": args.epochs, "batch_size": args.batch_size}
        if not run_notebook(args, summary, summary_params, progress):
            failed.append(SUMMARY)
    if not args.no_report and not (failed and not args.continue_on_error):
        from .report import build_report

        index = build_report(args.out, args.report)
        print(f"run_all: report written to {index}", flush=True)
    if failed:
        print(f"run_all: FAILED notebooks: {', '.join(failed)} "
              f"(executed copies in {args.out / 'notebooks'}, logs in {args.out / 'logs'})", flush=True)
        return 1
    print(f"run_all: all {len(notebooks) + 1} notebooks ran in {time.monotonic() - progress.start:.0f} s",
          flush=True)
    return 0


def write_profile(args: argparse.Namespace) -> None:
    """What made this output folder, for the report's first line."""
    from .backend import backend_name, device_description, versions
    from .training import write_atomic

    args.out.mkdir(parents=True, exist_ok=True)
    profile = {"profile": args.profile, "epochs": args.epochs, "batch_size": args.batch_size,
               "seeds": args.seeds, "data": args.data or "keras.datasets download", "subset": args.subset,
               "eval_every": args.eval_every, "speed": Speed.coerce(args.speed).describe(),
               "backend": backend_name(), "device": device_description(), "versions": versions(),
               "started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    write_atomic(args.out / "profile.json", json.dumps(profile, indent=1))


if __name__ == "__main__":
    sys.exit(main())
