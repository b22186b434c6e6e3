"""``RunRecord``, a finished run's result as ``record.json`` holds it, and finding records on disk.

Tables, figures, verdicts and the report read runs through this module alone, which
imports no backend: reading results never loads Keras.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import pandas as pd

from ..errors import RunError
from .folder import DEFAULT_OUT_DIR, RECORD_FILE

# Fields added after records were first written, with the value an older record reads as:
# left out of the JSON at that value, so an older record serialises (and digests) as before.
LATER_FIELDS = {"source": {}, "single_view_test_acc": float("nan")}


def _same(value, default) -> bool:
    """``value == default``, NaN equal to NaN (a later float field's "not measured")."""
    if isinstance(value, float) and isinstance(default, float) and math.isnan(default):
        return math.isnan(value)
    return value == default


@dataclass(eq=False)
class RunRecord:
    """One finished run. Accuracies are in percent, like the study's table.

    ``evaluated_on`` says what the per-epoch ``val_*`` history measured: ``"test"`` (the
    study's way: the test set after each epoch, so ``best_test_acc`` is a choice made on
    the test set) or ``"validation"`` (held-out training images; the test set is then
    evaluated once, on the final model, and ``best_test_acc`` is NaN)."""

    experiment: int
    name: str
    seed: int
    status: str  # "completed" or "diverged"
    epochs_completed: int
    train_loss: float
    test_loss: float
    train_acc: float
    test_acc: float
    best_test_acc: float
    best_epoch: int  # 1-based, on the evaluation set
    param_count: int
    wall_seconds: float  # sum of epoch times, resumed parts included
    seconds_per_epoch: float  # median, so the first (compiling) epoch does not count
    images_per_second: float
    backend: str
    device: str
    data_source: str
    versions: dict[str, str]
    params: dict
    history: dict[str, list[float]] = field(repr=False)
    run_dir: str = ""
    speed: dict = field(default_factory=dict)  # the speed settings in effect for the last part trained
    variant: str = ""
    evaluated_on: str = "test"
    val_acc: float = float("nan")  # final model on the validation images (validation recipes)
    best_val_acc: float = float("nan")
    # The final model in inference mode on a fixed stratified set of its own training
    # images (``splits.TRAIN_EVAL_IMAGES``), with the recipe's test-time views: the
    # training side of the train-test gap. ``train_acc`` is Keras' running figure.
    train_eval_acc: float = float("nan")
    train_eval_loss: float = float("nan")
    train_eval_images: int = 0
    # Batch-norm models: "running" (the statistics training left, the study's way) or
    # "re-estimated" (weight-averaged recipes, whose final model needs them); "" without BN.
    bn_statistics: str = ""
    # Test accuracy with the statistics re-estimated on those training images, no weight
    # changed, on the plain test images (no test-time views): a diagnostic beside
    # ``single_view_test_acc``, never instead of ``test_acc``.
    bn_reestimated_test_acc: float = float("nan")
    # The final model's test accuracy on the plain images alone: ``test_acc`` for recipes
    # without test-time views, so the views' share of a score shows. NaN in records made
    # before it was kept (and a diverged run's).
    single_view_test_acc: float = float("nan")
    # The code that made the record (``source.source_identity``): package version, git
    # commit (None outside a checkout) and whether the work tree had uncommitted changes.
    # Empty in records made before it was kept.
    source: dict = field(default_factory=dict)

    @property
    def gap(self) -> float:
        """Train minus test accuracy of the final model, both in inference mode (points)."""
        return self.train_eval_acc - self.test_acc

    @property
    def history_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.history)

    def __eq__(self, other) -> bool:
        """Equal when they serialise the same (NaN, for "not evaluated", equals itself here)."""
        return isinstance(other, RunRecord) and self.to_json() == other.to_json()

    __hash__ = None

    def to_json(self) -> str:
        data = {k: v for k, v in asdict(self).items() if k not in LATER_FIELDS or not _same(v, LATER_FIELDS[k])}
        return json.dumps(data, indent=1)

    def digest(self) -> str:
        """A short hash of the whole record: a chapter lists the runs it showed by it, so a
        report can tell when a run was retrained or removed since."""
        return hashlib.sha1(self.to_json().encode()).hexdigest()[:12]

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> RunRecord:
        """Read a record; a damaged one raises ``RunError`` naming the file."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            known = {f.name for f in fields(cls)}
            record = cls(**{k: v for k, v in data.items() if k in known})
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError, AttributeError) as error:
            raise RunError(f"{path}: damaged run record ({type(error).__name__}: {error})") from error
        rows = len(record.history.get("epoch", [])) if isinstance(record.history, dict) else -1
        if rows != record.epochs_completed:
            raise RunError(f"{path}: damaged run record: it claims {record.epochs_completed} epochs "
                           f"but its history holds {rows}")
        return record


def record_paths(folder: str | os.PathLike, name: str = RECORD_FILE) -> list[Path]:
    """Every ``name`` file under ``folder``, symlinked folders followed (``Path.glob`` skips
    them before Python 3.13, so a run folder linked in from elsewhere was silently left
    out), each real folder visited once so a link cycle ends."""
    found, seen = [], set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        if name in files:
            found.append(Path(root) / name)
    return sorted(found)


def scan_records(out_dir: str | os.PathLike = DEFAULT_OUT_DIR) -> tuple[list[RunRecord], list[str]]:
    """Every finished run under ``out_dir``, and one message per damaged record left out."""
    records, problems = [], []
    for path in record_paths(out_dir):
        try:
            records.append(RunRecord.from_file(path))
        except RunError as error:
            problems.append(str(error))
    return records, problems


def load_records(out_dir: str | os.PathLike = DEFAULT_OUT_DIR) -> list[RunRecord]:
    """Every finished run under ``out_dir`` (unfinished runs have no record yet); a damaged
    record is left out with a warning naming it, so one bad file never hides the rest."""
    records, problems = scan_records(out_dir)
    for problem in problems:
        warnings.warn(f"{problem}: left out", stacklevel=2)
    return records
