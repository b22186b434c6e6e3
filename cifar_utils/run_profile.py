"""``profile.json``: what one ``./run_all.sh`` invocation is (settings, data id, machine,
backend, commit), for the report's banner and its inclusion rules; and, read back, which
runs a reference's profile trains and how far the reference is from all of them.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone
from pathlib import Path

from .errors import ReferenceFolderError
from .run_args import chapters, notebook_parameters, parse_args
from .run_plan import training_tasks
from .runs.pool import RunTask
from .runs.reference import ReferenceRuns, load_reference
from .runs.reference_progress import ReferenceProgress, progress_of, progress_sentence
from .runs.source import source_identity
from .speed import Speed
from .storage import write_atomic


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
