"""The final model's test predictions, kept beside its record: enough for a confusion matrix
and a figure of its mistakes from the run folder alone (a reference folder keeps them; it
keeps no weights)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from ..storage import ensure_space, write_atomic
from .folder import PREDICTIONS_FILE
from .record import RunRecord

KEPT_MISTAKES = 24  # the most confident test mistakes keep their pixels, for figures without the data


def write_predictions(run_dir: Path, probabilities: np.ndarray, images: np.ndarray, labels: np.ndarray) -> None:
    """The test-set probabilities (float16), the true labels, and the pixels of the most
    confident mistakes."""
    truth = labels.argmax(axis=1) if labels.ndim == 2 else labels
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != truth)
    order = wrong[np.argsort(-probabilities[wrong, predicted[wrong]])][:KEPT_MISTAKES]
    pixels = images[order] if float(np.max(images)) > 1.0 else images[order] * 255.0
    ensure_space(run_dir, probabilities.size * 2 + 1e6, PREDICTIONS_FILE)
    write_atomic(run_dir / PREDICTIONS_FILE, lambda stream: np.savez_compressed(
        stream, probabilities=probabilities.astype("float16"), labels=truth.astype("int8"),
        mistake_indices=order, mistake_images=np.round(pixels).astype("uint8")))


def load_predictions(record: RunRecord, folder: str | os.PathLike | None = None) -> dict[str, np.ndarray] | None:
    """What ``write_predictions`` kept for a run (None for runs made before it existed)."""
    path = Path(folder or record.run_dir) / PREDICTIONS_FILE
    if not path.exists():
        return None
    try:
        with np.load(path) as stored:
            return {key: stored[key] for key in stored.files}
    except (OSError, ValueError, EOFError) as error:
        warnings.warn(f"{path}: unreadable predictions ({error}); left out", stacklevel=2)
        return None
