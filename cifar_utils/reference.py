"""Reference results: the records of one full run of the course, kept in the repository
(``results/reference/``) so every reader sees real numbers without training anything.

A reference folder holds, per run, ``record.json``, ``history.csv`` and
``test_predictions.npz`` (no weights) and,
at its top, ``profile.json`` saying what made it (data, backend, GPU, versions, date).
Reading one checks that it combines only runs made the same way: one dataset, and for each
experiment one set of settings, seeds being the only thing that varies.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .training import HISTORY_FILE, PREDICTIONS_FILE, RECORD_FILE, RunRecord, scan_records, write_atomic

PROFILE_FILE = "profile.json"


class ReferenceError(ValueError):
    """A reference folder that mixes settings or cannot be read; the message names it."""


def run_key(record: RunRecord) -> tuple[int, str]:
    return record.experiment, record.variant


def settings_without_seed(record: RunRecord) -> str:
    return json.dumps({k: v for k, v in record.params.items() if k != "seed"}, sort_keys=True)


@dataclass
class ReferenceRuns:
    folder: Path
    records: list[RunRecord]
    profile: dict = field(default_factory=dict)

    def of(self, experiment: int, variant: str = "") -> list[RunRecord]:
        return sorted((r for r in self.records if run_key(r) == (experiment, variant)), key=lambda r: r.seed)

    def describe(self) -> str:
        """Where the reference numbers come from, in one sentence."""
        if not self.records:
            return f"The reference folder `{self.folder}` holds no runs yet."
        first = self.records[0]
        made = self.profile.get("started") or "date not recorded"
        gpu = self.profile.get("device") or first.device
        return (f"Reference results from `{self.folder}`: {len(self.records)} runs on {first.data_source} "
                f"(data id {first.params['data_fingerprint']}), Keras {first.versions.get('keras', '?')} on "
                f"{first.backend}, {gpu}; made {made}.")


def load_reference(folder: str | os.PathLike) -> ReferenceRuns:
    """Every run in ``folder``, checked to combine only like with like."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ReferenceError(f"{folder}: no such reference folder")
    records, problems = scan_records(folder)
    if problems:
        raise ReferenceError(f"{folder}: damaged reference records: {'; '.join(problems)}")
    datasets = {r.params["data_fingerprint"] for r in records}
    if len(datasets) > 1:
        raise ReferenceError(f"{folder}: runs on {len(datasets)} different datasets ({', '.join(sorted(datasets))}); "
                             "a reference holds one")
    by_run: dict[tuple[int, str], set[str]] = {}
    for record in records:
        by_run.setdefault(run_key(record), set()).add(settings_without_seed(record))
    mixed = [f"experiment {n}{f' [{v}]' if v else ''}" for (n, v), settings in by_run.items() if len(settings) > 1]
    if mixed:
        raise ReferenceError(f"{folder}: {', '.join(mixed)} ran with more than one setting; a reference holds "
                             "one setting per experiment, seeds aside")
    profile_path = folder / PROFILE_FILE
    try:
        profile = json.loads(profile_path.read_text()) if profile_path.exists() else {}
    except (OSError, json.JSONDecodeError) as error:
        raise ReferenceError(f"{profile_path}: unreadable ({error})") from error
    return ReferenceRuns(folder, records, profile)


def export_reference(out_dir: str | os.PathLike, destination: str | os.PathLike) -> int:
    """Copy the records and histories (no weights) of ``out_dir/runs`` and its profile into
    ``destination``, checked; returns the number of runs copied."""
    source, destination = Path(out_dir), Path(destination)
    records, problems = scan_records(source / "runs")
    if problems:
        raise ReferenceError(f"{source}: damaged records, not exported: {'; '.join(problems)}")
    destination.mkdir(parents=True, exist_ok=True)
    folders = {path.parent.name: path.parent for path in (source / "runs").glob(f"**/{RECORD_FILE}")}
    for record in records:
        run_dir = folders[Path(record.run_dir).name]  # where it is now (a reference's run_dir is relative)
        target = destination / "runs" / run_dir.name
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run_dir / HISTORY_FILE, target / HISTORY_FILE)
        if (run_dir / PREDICTIONS_FILE).exists():
            shutil.copyfile(run_dir / PREDICTIONS_FILE, target / PREDICTIONS_FILE)
        record.run_dir = str(Path("runs") / run_dir.name)
        write_atomic(target / RECORD_FILE, record.to_json())
    if (source / PROFILE_FILE).exists():
        shutil.copyfile(source / PROFILE_FILE, destination / PROFILE_FILE)
    load_reference(destination)  # refuses a mix before anyone reads it
    return len(records)
