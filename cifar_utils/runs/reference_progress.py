"""How far a reference is: which of the runs its profile trains it holds, chapter by chapter,
and which are still missing.

A reference is trained in pieces over several sessions (README, "The CPU profile"), so a
committed one may be partial; the export script and the report's banner both say how far
it is from this one count, instead of letting a chapter's "not run" be the only sign. Which
runs a profile trains is the driver's knowledge (``run_profile.profile_tasks``); this module
only counts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .pool import RunTask
from .reference import ReferenceRuns


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


def progress_of(reference: ReferenceRuns, chapter_tasks: Mapping[str, Sequence[RunTask]]) -> ReferenceProgress:
    """The runs each chapter needs (chapter name -> its tasks) against the reference's records."""
    records = {(r.experiment, r.variant or None, r.seed): r for r in reference.records}
    chapters, missing, held = [], {}, {}
    for chapter, tasks in chapter_tasks.items():
        have = [t for t in tasks if _key(t) in records]
        chapters.append(ChapterProgress(chapter, len(have), len(tasks)))
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
