"""The Keras callbacks that keep a run timed, resumable and readable while it trains.

Each replaces a Keras built-in that lost a run: ``CSVLogger`` fixed its columns from the
first epoch it saw, ``BackupAndRestore`` stored weights and epoch in two files
non-atomically, and the progress bars redraw many times a second into a notebook that
stores every frame.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import keras
import numpy as np

from ..storage import ensure_space, replacing
from . import progress
from .folder import KEEP_CHECKPOINTS, WEIGHTS_TEMP_PREFIX, checkpoint_path, checkpoints
from .history import append_row, start_history
from .record import RunRecord


class EpochTimer(keras.callbacks.Callback):
    """Adds ``epoch_seconds`` to the epoch logs, so the history and the record keep it."""

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["epoch_seconds"] = time.perf_counter() - self._start


class HistoryWriter(keras.callbacks.Callback):
    """One row per epoch in fixed columns (``history``), flushed and synced as it is written:
    resumed on an epoch without a test evaluation (``eval_every`` > 1), ``CSVLogger`` wrote
    rows of another width under the old header, and the run could never be read again."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = path

    def on_train_begin(self, logs=None):
        start_history(self.path)

    def on_epoch_end(self, epoch, logs=None):
        append_row(self.path, epoch, logs or {})


def save_weights(model: keras.Model, path: Path) -> None:
    """Save weights whole or not at all, refusing first when the disk cannot hold them."""
    needed = weights_bytes(model, path.parent)
    ensure_space(path.parent, needed, path.name)
    with replacing(path, needed, temp=path.with_name(WEIGHTS_TEMP_PREFIX + path.name)) as tmp:
        model.save_weights(tmp)


def weights_bytes(model: keras.Model, run_dir: Path) -> float:
    """What the next checkpoint will need: the last one's size, else weights + optimiser
    state estimated from the parameter count, with room to spare."""
    existing = [p.stat().st_size for p in checkpoints(run_dir)]
    if existing:
        return 1.5 * max(existing)
    return 4.0 * 4 * model.count_params() + 1e6


class Checkpointer(keras.callbacks.Callback):
    """Saves model and optimiser state at most every ``seconds`` and after the last epoch,
    keeping the last ``KEEP_CHECKPOINTS``: the epoch is in the file name and the file
    appears by rename, complete or not at all, so a crash never resumes at the wrong epoch."""

    def __init__(self, run_dir: Path, epochs: int, seconds: float):
        super().__init__()
        self.run_dir, self.epochs, self.seconds = run_dir, epochs, seconds
        self._last = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        if done < self.epochs and time.monotonic() - self._last < self.seconds:
            return
        save_weights(self.model, checkpoint_path(self.run_dir, done))
        for old in checkpoints(self.run_dir)[KEEP_CHECKPOINTS:]:
            old.unlink()
        self._last = time.monotonic()


class ProgressLogger(keras.callbacks.Callback):
    """One line every ``every`` epochs (about ten per run by default), never a progress bar."""

    def __init__(self, label: str, epochs: int, every: int | None = None, evaluated_on: str = "test"):
        super().__init__()
        self.label, self.epochs, self.evaluated_on = label, epochs, evaluated_on
        self.every = every or max(1, epochs // 10)
        self._seconds: list[float] = []
        self._evaluation = (float("nan"), float("nan"))

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self._seconds.append(logs.get("epoch_seconds", 0.0))
        if "val_accuracy" in logs:  # with eval_every > 1, show the latest evaluation
            self._evaluation = (logs["val_loss"], logs["val_accuracy"])
        done = epoch + 1
        if done % self.every and done != self.epochs and not self.model.stop_training:
            return
        recent = float(np.median(self._seconds[-5:]))
        name = "test" if self.evaluated_on == "test" else "val"
        evaluation = "" if not math.isfinite(self._evaluation[1]) else \
            f"  {name} loss {self._evaluation[0]:.3f}  {name} acc {100 * self._evaluation[1]:.1f}%"
        progress.say(self.label, f"epoch {done}/{self.epochs}  loss {logs.get('loss', float('nan')):.3f}"
                                 f"  acc {100 * logs.get('accuracy', float('nan')):.1f}%{evaluation}"
                                 f"  {recent:.2f} s/epoch  ETA {progress.clock(recent * (self.epochs - done))}")

    def finished(self, record: RunRecord) -> None:
        best = (f"best {record.best_test_acc:.2f} % at epoch {record.best_epoch}" if record.evaluated_on == "test"
                else f"validation {record.val_acc:.2f} %, best {record.best_val_acc:.2f} % at epoch "
                     f"{record.best_epoch}")
        progress.say(self.label, f"{record.status} in {progress.clock(record.wall_seconds)}, "
                                 f"test acc {record.test_acc:.2f} % ({best})")
