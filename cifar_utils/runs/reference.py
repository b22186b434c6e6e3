"""Reference results: the records of one full run of the course, kept in the repository
(``results/reference/``) so every reader sees real numbers without training anything.

A reference folder holds, per run, ``runs/<run>/record.json``, ``history.csv`` and
``test_predictions.npz`` (no weights) and, at its top, ``profile.json`` saying what made it
(data, backend, GPU, versions, date). Only ``runs/`` is read, so an output folder can serve
as a reference without its ``exercises/``. Reading one checks that it combines only runs
made the same way, as one ``./run_all.sh`` invocation makes them: one dataset, one
evaluation, one epochs and batch size for the runs of the study's recipe (``--epochs``,
``--batch-size`` or the study's), each recipe of the course's own at its own, one setting
per experiment, seeds being the only thing that varies. A run held twice (a folder copied under
two names, or nested) counts once; a damaged record is named and left out, so it never
hides the others. The folder is read-only: only ``export_reference`` writes it, checking
first and swapping the new folder in whole.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import ReferenceFolderError, RunError
from ..experiments import STUDY_RECIPE, get_experiment
from ..folders import is_within, shown_path
from ..storage import write_atomic
from .folder import HISTORY_FILE, PREDICTIONS_FILE, RECORD_FILE
from .identity import params_hash
from .record import RunRecord, record_paths

PROFILE_FILE = "profile.json"
RUNS = "runs"
REQUIRED_PARAMS = ("data_fingerprint", "epochs", "batch_size")
SHOWN_RUNS = 3  # runs named per group in a refusal
# A sweep point whose label names its batch size keeps it (chapter 6's lr x batch grid,
# ``beyond.grid_experiments``): ``--batch-size`` does not apply to it (``NeededRun.keep_batch_size``).
OWN_BATCH_LABEL = re.compile(r"(^|[ ,])batch(_size)?=")
# Recipe fields aside when asking "is this the study's recipe?" (``Experiment.study_recipe``):
# the overrides themselves, and the augmentation kind (the study's chapter 4 adds its own).
# The training-set size too: chapter 6's small setting is the study's recipe on fewer images.
OVERRIDES_ASIDE = ("epochs", "batch_size", "augment", "train_images")


def run_key(record: RunRecord) -> tuple[int, str]:
    return record.experiment, record.variant


def run_label(record: RunRecord) -> str:
    """'experiment 9 [dropout=0.5] seed 1': how a refusal names a run."""
    return f"experiment {record.experiment}{f' [{record.variant}]' if record.variant else ''} seed {record.seed}"


def run_identity(record: RunRecord) -> str:
    """The hash of everything that decides a run's result (its folder name ends with it):
    two folders holding the same identity hold one run."""
    return params_hash(record.params)


def settings_without_seed(record: RunRecord) -> str:
    return json.dumps({k: v for k, v in record.params.items() if k != "seed"}, sort_keys=True)


@dataclass
class ReferenceRuns:
    folder: Path
    records: list[RunRecord]
    profile: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # damaged records, left out
    duplicates: list[str] = field(default_factory=list)  # second copies of a run, counted once

    def of(self, experiment: int, variant: str = "") -> list[RunRecord]:
        return sorted((r for r in self.records if run_key(r) == (experiment, variant)), key=lambda r: r.seed)

    def folder_of(self, record: RunRecord) -> Path:
        """Where a run's files are in this reference (its ``run_dir`` is relative to it)."""
        return self.folder / record.run_dir

    def describe(self) -> str:
        """Where the reference numbers come from, in one sentence (and what was left out)."""
        if not self.records:
            return f"The reference folder `{shown_path(self.folder)}` holds no runs yet.{self._left_out()}"
        first = self.records[0]
        made = made_when(self.profile)
        gpu = self.profile.get("device") or first.device
        kerases = ", ".join(sorted({r.versions.get("keras", "?") for r in self.records}))
        backends = ", ".join(sorted({r.backend for r in self.records}))
        length = (f", the study's recipe for {self.profile['epochs']} of its 300 epochs"
                  if self.profile.get("epochs") else "")
        return (f"Reference results from `{shown_path(self.folder)}`: {len(self.records)} runs on {first.data_source} "
                f"(data id {first.params['data_fingerprint']}){length}, Keras {kerases} on "
                f"{backends}, {gpu}; made {made}.{self._left_out()}")

    def _left_out(self) -> str:
        notes = []
        if self.problems:
            notes.append(f"{len(self.problems)} damaged record(s) left out: {'; '.join(self.problems)}")
        if self.duplicates:
            notes.append(f"{len(self.duplicates)} duplicate run folder(s) counted once: {', '.join(self.duplicates)}")
        return "".join(f" {note}." for note in notes)


def made_when(profile: dict) -> str:
    """'2026-12-01 22:20 UTC to 2026-12-02 01:15 UTC': when the pieces that trained it started."""
    pieces = [p for p in profile.get("pieces") or [] if isinstance(p, dict) and p.get("started")]
    dates = sorted(str(p["started"]) for p in pieces) or ([str(profile["started"])] if profile.get("started") else [])
    if not dates:
        return "date not recorded"
    return dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}"


def relative_run_dir(record_path: Path, folder: Path) -> str:
    """A run's folder relative to the reference holding it: where its files are now, even in
    a reference copied by hand whose records still name the absolute folder they came from."""
    return record_path.parent.relative_to(folder).as_posix()


def read_run(record_path: Path, folder: Path) -> RunRecord:
    """One reference record, checked to carry what the one-setting rule reads; its
    ``run_dir`` set to where it lies in ``folder``. Raises ``RunError`` naming the file."""
    record = RunRecord.from_file(record_path)
    if not isinstance(record.params, dict):
        raise RunError(f"{record_path}: damaged run record: params is a {type(record.params).__name__}, "
                       "not a mapping")
    missing = [k for k in REQUIRED_PARAMS if k not in record.params]
    if missing:
        raise RunError(f"{record_path}: damaged run record: params has no {', '.join(missing)}")
    try:
        get_experiment(record.experiment)
    except KeyError:
        raise RunError(f"{record_path}: damaged run record: experiment {record.experiment!r} is not "
                       "in this course") from None
    record.run_dir = relative_run_dir(record_path, folder)
    return record


def read_runs(folder: Path) -> tuple[list[RunRecord], list[str], list[str]]:
    """The runs under ``folder/runs`` (each once), the damaged records and the duplicates.
    Of a run held twice, the copy kept is the shallowest, then the one in its own folder
    (named by its identity), so a reference's runs stay where the chapters name them."""
    found, problems = [], []
    for path in record_paths(folder / RUNS):
        try:
            found.append(read_run(path, folder))
        except RunError as error:
            problems.append(str(error))
    found.sort(key=lambda r: (r.run_dir.count("/"), not r.run_dir.endswith(run_identity(r)), r.run_dir))
    records, duplicates, kept = [], [], {}
    for record in found:
        identity = run_identity(record)
        if identity in kept:
            duplicates.append(f"{record.run_dir} (the same run as {kept[identity]})")
        else:
            kept[identity] = record.run_dir
            records.append(record)
    return records, problems, duplicates


def load_reference(folder: str | os.PathLike) -> ReferenceRuns:
    """Every run in ``folder/runs``, each once, checked to combine only like with like; a
    damaged record is left out with a warning naming it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ReferenceFolderError(f"{folder}: no such reference folder")
    records, problems, duplicates = read_runs(folder)
    for problem in problems:
        warnings.warn(f"{problem}: left out of the reference", stacklevel=2)
    check_one_setting(folder, records)
    return ReferenceRuns(folder, records, read_profile(folder), problems, duplicates)


def read_profile(folder: Path) -> dict:
    path = folder / PROFILE_FILE
    try:
        profile = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ReferenceFolderError(f"{path}: unreadable ({error})") from error
    if not isinstance(profile, dict):
        raise ReferenceFolderError(f"{path}: unreadable (not a JSON object)")
    return profile


# --- the one-setting rule -------------------------------------------------------------------

def check_one_setting(folder: Path, records: list[RunRecord]) -> None:
    """Refuse runs that one ``./run_all.sh`` invocation could not have made, naming them."""
    problems = [problem for check in (_mixed_data, _mixed_experiments, _mixed_evaluation,
                                      _mixed_override("epochs"), _mixed_override("batch_size"))
                if (problem := check(records))]
    if problems:
        raise ReferenceFolderError(f"{folder}: {'; '.join(problems)}. A reference holds the runs of one invocation: "
                             "seeds are the only thing that varies")


def _groups(records: list[RunRecord], value: Callable[[RunRecord], object]) -> str:
    """'1 (experiment 1 seed 0), 6 (experiment 2 seed 0, ...)': each value and its runs."""
    grouped: dict[str, list[str]] = {}
    for record in records:
        grouped.setdefault(str(value(record)), []).append(run_label(record))
    return ", ".join(f"{v} ({_some(runs)})" for v, runs in grouped.items())


def _some(names: list[str]) -> str:
    """The first few names, and how many more."""
    more = f" and {len(names) - SHOWN_RUNS} more" if len(names) > SHOWN_RUNS else ""
    return ", ".join(names[:SHOWN_RUNS]) + more


def _mixed_data(records: list[RunRecord]) -> str | None:
    datasets = {r.params["data_fingerprint"] for r in records}
    if len(datasets) > 1:
        return (f"runs on {len(datasets)} different datasets: "
                f"{_groups(records, lambda r: r.params['data_fingerprint'])}")
    return None


def _mixed_experiments(records: list[RunRecord]) -> str | None:
    by_run: dict[tuple[int, str], set[str]] = {}
    for record in records:
        by_run.setdefault(run_key(record), set()).add(settings_without_seed(record))
    mixed = [f"experiment {n}{f' [{v}]' if v else ''}" for (n, v), settings in by_run.items() if len(settings) > 1]
    return f"{', '.join(mixed)} ran with more than one setting" if mixed else None


def _mixed_evaluation(records: list[RunRecord]) -> str | None:
    if len({_eval_every(r) for r in records}) > 1:
        return f"runs evaluated at different intervals (eval_every): {_groups(records, _eval_every)}"
    return None


def _eval_every(record: RunRecord) -> object:
    return record.params.get("eval_every", 1)


def keeps_own_batch_size(record: RunRecord) -> bool:
    """A sweep point whose batch size is what it varies: ``--batch-size`` never applies to it."""
    return bool(record.variant) and bool(OWN_BATCH_LABEL.search(record.variant))


def takes_overrides(record: RunRecord, name: str = "epochs") -> bool:
    """Trained with the study's recipe (its augmentation aside), so ``--epochs`` and
    ``--batch-size`` shorten it; a sweep of that recipe with a validation split of its own
    (the dropout sweep) takes ``--batch-size`` only; a recipe of the course's own (chapter
    6's modern recipes, the grid) keeps its length and batch (``course.run_settings``). Read
    from the record's effective recipe, overrides aside, so sweep points are judged too."""
    recipe = record.params.get("recipe")
    if not isinstance(recipe, dict):
        recipe = asdict(get_experiment(record.experiment).recipe)
    aside = OVERRIDES_ASIDE + (("validation",) if name == "batch_size" else ())
    return all(recipe.get(k) == v for k, v in asdict(STUDY_RECIPE).items() if k not in aside)


def _recipe_value(record: RunRecord, name: str) -> int | None:
    """What the run's recipe alone gives for ``name`` (``epochs`` or ``batch_size``). None for
    a sweep point's epochs: its length is chapter 6's ``grid_epochs``, which the record does
    not name (all sweep points of one invocation share it)."""
    if record.variant and name == "epochs":
        return None
    return getattr(get_experiment(record.experiment).recipe, name)


def _mixed_override(name: str) -> Callable[[list[RunRecord]], str | None]:
    """A check: could one ``--epochs`` (``--batch-size``) value, or none, have made these runs?

    Records store the value used. The runs of the study's recipe must share one value (the
    flag's, or the study's without it); runs of a recipe of their own must be at their
    recipe's value (an older driver gave them the flag's too: that is accepted), the sweep
    points at one length. A sweep point keeping its batch size is not compared."""
    flag = "--" + name.replace("_", "-")

    def check(records: list[RunRecord]) -> str | None:
        compared = [r for r in records if not (name == "batch_size" and keeps_own_batch_size(r))]
        if len({r.params[name] for r in compared}) <= 1:
            return None
        study = [r for r in compared if takes_overrides(r, name)]
        if len({r.params[name] for r in study}) > 1:
            return (f"runs made with different {name}: {_groups(study, lambda r: r.params[name])}; one {flag} "
                    "applies to every run of the study's recipe")
        given = study[0].params[name] if study else None
        own = [r for r in compared if not takes_overrides(r, name) and r.params[name] != given]
        off = [r for r in own if _recipe_value(r, name) not in (None, r.params[name])]
        sweeps = [r for r in own if _recipe_value(r, name) is None]
        if off:
            return (f"runs off their own recipe's {name}: "
                    + _some([f"{run_label(r)} ({r.params[name]}, recipe {_recipe_value(r, name)})" for r in off]))
        if len({r.params[name] for r in sweeps}) > 1:
            return f"sweep points made with different {name}: {_groups(sweeps, lambda r: r.params[name])}"
        return None

    return check


# --- export ------------------------------------------------------------------------------------

def export_reference(out_dir: str | os.PathLike, destination: str | os.PathLike) -> int:
    """Copy the records, histories and predictions (no weights) of ``out_dir/runs`` and its
    profile into ``destination``, beside the runs already there; returns the number of runs
    copied. Everything is checked before anything is written, the new reference is built in
    a folder beside it and swapped in whole: an existing reference is never left half-written."""
    source, destination = Path(out_dir).resolve(), Path(destination).resolve()
    _refuse_overlap(source, destination)
    if not (source / RUNS).is_dir():
        raise ReferenceFolderError(f"{source / RUNS}: no runs folder to export")
    records, problems, _ = read_runs(source)
    if problems:
        raise ReferenceFolderError(f"{source}: damaged records, not exported: {'; '.join(problems)}")
    existing = _existing_runs(destination)
    incoming = {run_identity(r) for r in records} | {Path(r.run_dir).name for r in records}
    replaced = [r for r in existing if run_identity(r) in incoming or Path(r.run_dir).name in incoming]
    kept = [r for r in existing if run_identity(r) not in incoming and Path(r.run_dir).name not in incoming]
    check_one_setting(destination, kept + records)  # refuses a mix before anything is written
    tmp = destination.with_name(f".{destination.name}.export-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _build(tmp, destination, source, records, replaced)
        _swap_in(tmp, destination)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return len(records)


def _refuse_overlap(source: Path, destination: Path) -> None:
    """The export may not write into what it reads, nor replace a folder holding it."""
    if destination == source:
        raise ReferenceFolderError(f"{destination}: the reference cannot be the output folder it is exported from; "
                             f"choose another folder, e.g. {source.parent / 'reference'}")
    if is_within(destination, source / RUNS):
        raise ReferenceFolderError(f"{destination}: inside the runs folder {source / RUNS} it is exported from; "
                             "choose a folder outside it")
    if is_within(source, destination):
        raise ReferenceFolderError(f"{destination}: holds the output folder {source} it is exported from; "
                             "choose a folder beside it")


def _existing_runs(destination: Path) -> list[RunRecord]:
    """The runs a reference already holds, read strictly: a damaged one stops the export."""
    if not destination.exists():
        return []
    if not destination.is_dir():
        raise ReferenceFolderError(f"{destination}: exists and is not a folder")
    records, problems, _ = read_runs(destination)
    if problems:
        raise ReferenceFolderError(f"{destination}: the reference holds damaged records; nothing exported: "
                             f"{'; '.join(problems)}")
    return records


def _build(tmp: Path, destination: Path, source: Path, records: list[RunRecord],
           replaced: list[RunRecord]) -> None:
    """The new reference in ``tmp``: the old one's files, the replaced runs removed, the new
    runs and profile added, then read back strictly."""
    if destination.exists():
        shutil.copytree(destination, tmp, symlinks=True)
    tmp.mkdir(parents=True, exist_ok=True)
    for record in replaced:
        shutil.rmtree(tmp / record.run_dir, ignore_errors=True)
    for record in records:
        run_dir = source / record.run_dir
        target = tmp / RUNS / run_dir.name
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        shutil.copyfile(run_dir / HISTORY_FILE, target / HISTORY_FILE)
        if (run_dir / PREDICTIONS_FILE).exists():
            shutil.copyfile(run_dir / PREDICTIONS_FILE, target / PREDICTIONS_FILE)
        record.run_dir = f"{RUNS}/{run_dir.name}"
        write_atomic(target / RECORD_FILE, record.to_json())
    if (source / PROFILE_FILE).exists():
        old = _profile_or_empty(tmp / PROFILE_FILE)
        new = json.loads((source / PROFILE_FILE).read_text())
        merged = merged_profile(old, new)
        if merged is new:
            shutil.copyfile(source / PROFILE_FILE, tmp / PROFILE_FILE)
        else:
            write_atomic(tmp / PROFILE_FILE, json.dumps(merged, indent=1))
    written, problems, _ = read_runs(tmp)
    if problems:
        raise ReferenceFolderError(f"{destination}: the exported records do not read back: {'; '.join(problems)}")
    check_one_setting(destination, written)


# What a profile.json says about which runs it names: pieces of one reference agree on these.
PROFILE_SETTINGS = ("profile", "epochs", "batch_size", "seeds", "subset", "eval_every", "data_fingerprint")


def merged_profile(old: dict, new: dict) -> dict:
    """The profile of a reference that gains ``new``'s runs: ``new`` itself, with the
    ``pieces`` (commit, machine and date of each training invocation) of both when both
    name the same runs, so a reference trained over several sessions, each on a fresh
    machine whose output folder knew only its own piece, still names every piece."""
    if not isinstance(old, dict) or any(old.get(key) != new.get(key) for key in PROFILE_SETTINGS):
        return new
    pieces: list[dict] = []
    for piece in [*(old.get("pieces") or []), *(new.get("pieces") or [])]:
        if isinstance(piece, dict) and piece not in pieces:
            pieces.append(piece)
    if pieces == (new.get("pieces") or []):
        return new
    return {**new, "pieces": sorted(pieces, key=lambda piece: str(piece.get("started", "")))}


def _profile_or_empty(path: Path) -> dict:
    try:
        return json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        return {}  # a damaged old profile: the new one stands alone


def _swap_in(tmp: Path, destination: Path) -> None:
    """Put the finished ``tmp`` where ``destination`` is, by renames only."""
    if not destination.exists():
        os.replace(tmp, destination)
        return
    old = destination.with_name(f".{destination.name}.old-{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(destination, old)
    os.replace(tmp, destination)
    shutil.rmtree(old, ignore_errors=True)
