"""How far a reference is: which runs of the profile that made it (its ``profile.json``)
it holds, chapter by chapter, and which are still missing.

A reference is trained in pieces over several sessions (README, "The CPU profile"), so a
committed one may be partial; the export script and the report's banner both say how far
it is from this one count, instead of letting a chapter's "not run" be the only sign.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .pool import RunTask
from .reference import ReferenceRuns

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


@dataclass
class ChapterProgress:
    chapter: str
    held: int
    needed: int


@dataclass
class ReferenceProgress:
    chapters: list[ChapterProgress]
    held: list = field(default_factory=list)  # the RunRecords of the profile's runs
    missing: list[RunTask] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.missing

    def incomplete_chapters(self) -> list[ChapterProgress]:
        return [c for c in self.chapters if c.held < c.needed]


def _key(task: RunTask) -> tuple:
    return task.experiment, task.variant_label or None, task.seed


def reference_progress(reference: ReferenceRuns) -> ReferenceProgress | None:
    """The profile's runs against the reference's records; None when the reference's
    profile does not say what it was (no profile.json, or one this version cannot parse)."""
    from . import run_all as driver

    profile = reference.profile
    if not profile.get("profile") or profile.get("profile") == "reference":
        return None
    try:
        args = driver.parse_args(profile_arguments(profile))
    except SystemExit:
        return None
    records = {(r.experiment, r.variant or None, r.seed): r for r in reference.records}
    chapters, missing, held = [], {}, {}
    for notebook in driver.chapters(args.notebooks, []):
        tasks = driver.training_tasks(args, [notebook])
        have = [t for t in tasks if _key(t) in records]
        chapters.append(ChapterProgress(notebook.stem, len(have), len(tasks)))
        held.update({_key(t): records[_key(t)] for t in have})
        missing.update({_key(t): t for t in tasks if _key(t) not in records})
    return ReferenceProgress(chapters, list(held.values()), list(missing.values()))


def progress_sentence(progress: ReferenceProgress) -> str:
    """'12 of the profile's 46 runs; not yet in it: chapter 03 (2 of 8), chapter 06 (0 of 36)'."""
    total = len(progress.held) + len(progress.missing)
    if progress.complete:
        return f"all {total} runs of its profile"
    parts = [f"chapter {c.chapter[:2]} ({c.held} of {c.needed})" for c in progress.incomplete_chapters()]
    return f"{len(progress.held)} of its profile's {total} runs; not yet in it: {', '.join(parts)}"
