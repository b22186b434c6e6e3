"""Which folders a command may write into, decided before anything runs.

A report folder holds only what reports of this project wrote, listed in its manifest, so
a new report replaces exactly those files and never a reader's own. A reference folder is
read-only to every command but ``export_reference``. And the output, report and reference
folders may not sit inside one another where one would overwrite the other.

Pure paths and JSON (no backend imported): ``./run_all.sh`` checks its arguments with it
in milliseconds.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from .storage import write_atomic

MANIFEST = ".report-manifest.json"
# In a report folder besides what the manifest lists: the manifest itself, the folder's
# own README (report/README.md is committed), and an index a crashed write left behind.
REPORT_OWN = frozenset({MANIFEST, "README.md", ".index.html.tmp"})
# What ``./run_all.sh`` writes in its --out folder (besides profile.json).
OUTPUT_FOLDERS = ("runs", "exercises", "figures", "notebooks", "logs", "params", "results")
SHOWN_FOREIGN = 5  # how many foreign files a refusal names


REPOSITORY = Path(__file__).resolve().parents[1]


def shown_path(path: str | os.PathLike | None) -> str:
    """A folder as a reader should see it: relative to the repository when inside it (a
    committed report must not name the machine's checkout), else as it is."""
    if path is None:
        return "?"
    resolved = Path(path).resolve()
    return resolved.relative_to(REPOSITORY).as_posix() if is_within(resolved, REPOSITORY) else str(path)


def is_within(path: Path, folder: Path) -> bool:
    """``path`` is ``folder`` or inside it (both resolved by the caller)."""
    return path == folder or folder in path.parents


def read_manifest(report_dir: Path) -> set[str]:
    """The files (relative, POSIX) earlier reports wrote here; a damaged manifest lists none,
    so nothing is taken for the report's own on a guess."""
    try:
        listed = json.loads((report_dir / MANIFEST).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return set()
    files = listed.get("files") if isinstance(listed, dict) else None
    return {f for f in files if _inside(f)} if isinstance(files, list) else set()


def _inside(name: object) -> bool:
    """A manifest entry names a file inside the folder (never ``..`` or an absolute path)."""
    return isinstance(name, str) and bool(name) and not Path(name).is_absolute() and ".." not in Path(name).parts


def write_manifest(report_dir: Path, files: Iterable[str]) -> None:
    """List what the report wrote, atomically: a crash never leaves a half-written list."""
    write_atomic(report_dir / MANIFEST, json.dumps({"files": sorted(set(files))}, indent=1))


def foreign_files(report_dir: Path, limit: int = SHOWN_FOREIGN) -> list[str]:
    """Up to ``limit`` files in ``report_dir`` that no report of this project wrote (the walk
    stops there, so a report pointed at a big folder is refused at once)."""
    if not report_dir.is_dir():
        return []
    ours = read_manifest(report_dir) | REPORT_OWN
    found: list[str] = []
    for root, folders, files in os.walk(report_dir):
        folders.sort()
        for name in sorted(files):
            relative = (Path(root) / name).relative_to(report_dir).as_posix()
            if relative not in ours and not relative.startswith(f".{MANIFEST}."):
                found.append(relative)
                if len(found) >= limit:
                    return sorted(found)
    return sorted(found)


def report_folder_problem(report_dir: Path, out_dir: Path) -> str | None:
    """Why ``report_dir`` cannot take this report (None when it can): it holds the output
    folder, lies inside one of the output folder's own folders, or holds a reader's files."""
    report_dir, out_dir = Path(report_dir).resolve(), Path(out_dir).resolve()
    if is_within(out_dir, report_dir):
        return f"holds the output folder {out_dir}: the report would mix with its figures and results"
    inside = next((name for name in OUTPUT_FOLDERS if is_within(report_dir, out_dir / name)), None)
    if inside:
        return f"inside the output folder's {inside}/ ({out_dir / inside}), which the chapters write"
    foreign = foreign_files(report_dir)
    if foreign:
        more = ", ..." if len(foreign) >= SHOWN_FOREIGN else ""
        return (f"holds files no report of this project wrote ({', '.join(foreign)}{more}); a report replaces "
                f"only its own files: choose an empty or new folder, e.g. {report_dir / 'report'}")
    return None


def reference_folder_problem(reference: Path, out_dir: Path, report_dir: Path | None) -> str | None:
    """Why rendering ``reference`` into these folders would write into it (None when it
    would not): a reference is read-only to every command but the one that exports it."""
    reference, out_dir = Path(reference).resolve(), Path(out_dir).resolve()
    read_only = f"the reference folder {reference}, which is read-only (only export_reference writes it)"
    if is_within(out_dir, reference):
        return f"--out {out_dir}: inside {read_only}: choose another --out"
    inside = next((name for name in OUTPUT_FOLDERS if is_within(reference, out_dir / name)), None)
    if inside:
        return f"--reference {reference}: inside the output folder's {inside}/, which this command writes"
    if report_dir is not None:
        report_dir = Path(report_dir).resolve()
        if is_within(report_dir, reference):
            return f"--report {report_dir}: inside {read_only}: choose another --report"
        if is_within(reference, report_dir):
            return f"--report {report_dir}: holds {read_only}: choose another --report"
    return None
