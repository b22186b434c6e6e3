"""A run's folder: the files in it, its checkpoints, and what a killed process leaves.

A run lives in its own folder, named after the experiment, the seed and a hash of every
parameter that changes the result (``identity.plan_run``), so a finished run is found
again instead of retrained:

    .lock                        held (flock) by the one process that owns the run (``lock``)
    params.json                  what was asked for (written first)
    history.csv                  one row per epoch, fixed columns, flushed as it is written (``history``)
    checkpoint-eNNNN.weights.h5  model + optimiser state after epoch NNNN (the last two, while running)
    model.weights.h5             final weights
    test_predictions.npz         the final model's test predictions (``predictions``)
    record.json                  the result; written last, atomically: its presence means done
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..storage import is_temp

RECORD_FILE = "record.json"
HISTORY_FILE = "history.csv"
PARAMS_FILE = "params.json"
LOCK_FILE = ".lock"
WEIGHTS_FILE = "model.weights.h5"
PREDICTIONS_FILE = "test_predictions.npz"
DAMAGED_SUFFIX = ".damaged"  # a file set aside as untrustworthy, kept for a look until the run finishes
DEFAULT_OUT_DIR = "runs"
KEEP_CHECKPOINTS = 2  # an older intact one to fall back on if the newest is damaged
_CHECKPOINT_PREFIX, _CHECKPOINT_SUFFIX = "checkpoint-e", ".weights.h5"
WEIGHTS_TEMP_PREFIX = "tmp-"  # Keras insists on the .weights.h5 suffix, so weights are written via tmp-<name>


def checkpoint_path(run_dir: Path, epoch: int) -> Path:
    """The checkpoint after ``epoch`` (1-based) epochs: the epoch is in the name, so a
    checkpoint can never be paired with the wrong epoch."""
    return run_dir / f"{_CHECKPOINT_PREFIX}{epoch:04d}{_CHECKPOINT_SUFFIX}"


def checkpoint_epoch(path: Path) -> int:
    return int(path.name[len(_CHECKPOINT_PREFIX):-len(_CHECKPOINT_SUFFIX)])


def checkpoints(run_dir: Path) -> list[Path]:
    """The run's checkpoints, newest first."""
    return sorted(run_dir.glob(f"{_CHECKPOINT_PREFIX}*{_CHECKPOINT_SUFFIX}"), key=checkpoint_epoch, reverse=True)


def set_aside(path: Path) -> Path:
    """Move a damaged file out of the way (``.damaged``), so the run never reads it again."""
    aside = path.with_name(path.name + DAMAGED_SUFFIX)
    path.replace(aside)
    return aside


def remove_scaffolding(run_dir: Path) -> None:
    """What a finished run no longer needs: its checkpoints and the files set aside."""
    for leftover in [*checkpoints(run_dir), *run_dir.glob(f"*{DAMAGED_SUFFIX}")]:
        leftover.unlink()


def clean_leftovers(run_dir: Path) -> None:
    """Temp files of a process killed just before its rename: never complete, never needed."""
    for path in run_dir.iterdir():
        if path.is_file() and (is_temp(path.name) or path.name.startswith(WEIGHTS_TEMP_PREFIX)):
            path.unlink(missing_ok=True)


def clear(run_dir: Path) -> None:
    """Empty a run folder for a forced retrain, keeping the lock file its owner holds."""
    for path in run_dir.iterdir():
        if path.name == LOCK_FILE:
            continue
        shutil.rmtree(path) if path.is_dir() else path.unlink()
