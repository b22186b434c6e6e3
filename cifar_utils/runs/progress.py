"""A run's progress lines: plain text for a reader, marked for the driver of a pool.

A pool or cluster worker's output mixes a run's progress with whatever else its libraries
print. Where ``$CIFAR_UTILS_MARK_PROGRESS`` is set (``pool.worker_environment`` sets it for
every worker) each progress line starts with ``MARK``, and the driver shows the marked
lines (``progress_text``) whatever their words: rewording a message cannot stop the pool's
display. Nothing is marked in a notebook or a script, where a reader reads the lines; there
every progress line still starts with its run's label (``is_run_line``).
"""

from __future__ import annotations

import os
import re

MARK = "@@progress "  # like the pool's "@@pool " answers: a prefix no library prints
MARK_ENV = "CIFAR_UTILS_MARK_PROGRESS"
_RUN_LINE = re.compile(r"\bseed \d+: ")  # a run's label (``RunPlan.label``: '... seed N') and its news


def say(label: str, text: str) -> None:
    """Print one progress line of the run ``label``, marked where this process is a pool's worker."""
    print(f"{MARK if os.environ.get(MARK_ENV) else ''}{label}: {text}", flush=True)


def progress_text(line: str) -> str | None:
    """The text of a marked progress line; None for any other line."""
    return line[len(MARK):].rstrip("\n") if line.startswith(MARK) else None


def is_run_line(line: str) -> bool:
    """An unmarked line that reads as a run's progress (a notebook's, say)."""
    return bool(_RUN_LINE.search(line))


def clock(seconds: float) -> str:
    """'4m05s', '2h13m': a duration as a progress line gives it."""
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else \
        f"{seconds // 60}m{seconds % 60:02d}s"
