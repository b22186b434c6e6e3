"""Which code made a record or an invocation: the package version and its git commit.

A reference trained over several sessions names the code of each piece, and every record
names the code that made it, so a number can be traced to the code that produced it. The
commit is read only where the package runs from its own checkout (the repository's top
folder holds it): an installed copy says it has none rather than name a checkout it merely
sits inside (a virtual environment in a repository, say).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from ..version import __version__

ROOT = Path(__file__).resolve().parents[2]  # the checkout's top, where the package runs from one


def source_identity() -> dict:
    """``{"package_version", "commit", "dirty"}``: the commit (None outside a git checkout of
    the package) and whether tracked files had uncommitted changes (None without a commit)."""

    def git(*command: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(ROOT), *command], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    commit = git("rev-parse", "--short=12", "HEAD") if top and Path(top).resolve() == ROOT else None
    dirty = None if commit is None else bool(git("status", "--porcelain", "--untracked-files=no"))
    return {"package_version": __version__, "commit": commit, "dirty": dirty}
