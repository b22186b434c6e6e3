"""Train one experiment the study's way and keep a complete, resumable record of it.

A run lives in its own folder, named after the experiment, the seed and a hash of every
parameter that changes the result, so a finished run is found again instead of retrained:

    params.json                  what was asked for (written first)
    history.csv                  one row per epoch, flushed as it is written
    checkpoint-eNNNN.weights.h5  model + optimiser state after epoch NNNN (while running)
    model.weights.h5             final weights
    record.json                  the result; written last, atomically: its presence means done
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from . import backend
from .data import fingerprint, load_cifar10
from .experiments import STUDY_BATCH_SIZE, STUDY_EPOCHS, STUDY_LEARNING_RATE, Experiment, get_experiment
from .models import build_model, compile_model
from .speed import Speed, fit_data

RECORD_FILE = "record.json"
HISTORY_FILE = "history.csv"
CHECKPOINT_GLOB = "checkpoint-e*.weights.h5"
DEFAULT_OUT_DIR = "runs"


@dataclass
class RunRecord:
    """One finished run. Accuracies are in percent, like the study's table."""

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
    best_epoch: int  # 1-based
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

    @property
    def history_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.history)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> RunRecord:
        data = json.loads(Path(path).read_text())
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def write_atomic(path: Path, text: str) -> None:
    """Write via a temp file and rename, so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def as_model_input(images: np.ndarray, normalize: bool, normalized: bool | None = None) -> np.ndarray:
    """Bring images to the scale an experiment expects (0-1 or 0-255)."""
    if normalized is None:  # plain arrays: raw pixels go above 1
        normalized = float(np.max(images)) <= 1.0
    if normalize == normalized:
        return images
    return images / np.float32(255.0) if normalize else images * np.float32(255.0)


def run_experiment(experiment: int | str | Experiment, epochs: int = STUDY_EPOCHS,
                   batch_size: int = STUDY_BATCH_SIZE, seed: int = 0, data=None,
                   out_dir: str | os.PathLike = DEFAULT_OUT_DIR, seeds: Sequence[int] | None = None,
                   force: bool = False, learning_rate: float = STUDY_LEARNING_RATE,
                   log_every: int | None = None, checkpoint_seconds: float = 30.0,
                   eval_every: int = 1, speed: Speed | Mapping | None = None,
                   callbacks: Sequence[keras.callbacks.Callback] = ()) -> RunRecord | list[RunRecord]:
    """Train (or reuse) one experiment; with ``seeds`` run each seed and return a list.

    ``data`` is what ``load_cifar10`` returns (None loads the default source); pixels are
    rescaled to what the experiment expects. An interrupted run resumes from its last
    checkpoint; a finished one with the same parameters is reused unless ``force``.
    ``callbacks`` run after the package's own (timing, NaN stop, history, checkpoint, log).
    ``eval_every`` evaluates the test set after every that many epochs (and after the first
    and last) instead of after each: the curves get fewer points and "best test accuracy"
    is the best of those, so it names the run when it is not 1.
    ``speed`` (a ``Speed`` or a dict of its fields) changes how fast a run goes, not what it
    computes, so it does not name the run.
    """
    exp = get_experiment(experiment)
    speed = Speed.coerce(speed)
    if epochs < 1 or batch_size < 1 or eval_every < 1:
        raise ValueError(f"epochs, batch_size and eval_every must be positive, "
                         f"got {epochs}, {batch_size} and {eval_every}")
    if data is None:
        data = load_cifar10(normalize=exp.normalize)
    if seeds is not None:
        return [run_experiment(exp, epochs=epochs, batch_size=batch_size, seed=s, data=data, out_dir=out_dir,
                               force=force, learning_rate=learning_rate, log_every=log_every,
                               checkpoint_seconds=checkpoint_seconds, eval_every=eval_every, speed=speed,
                               callbacks=callbacks) for s in seeds]
    (x_train, y_train), (x_test, y_test), params, run_dir = _plan(exp, epochs, batch_size, seed, data,
                                                                  out_dir, learning_rate, eval_every)
    if force and run_dir.exists():
        shutil.rmtree(run_dir)
    if (run_dir / RECORD_FILE).exists():
        record = RunRecord.from_file(run_dir / RECORD_FILE)
        print(f"{exp.label} seed {seed}: reusing finished run {run_dir} "
              f"(test acc {record.test_acc:.2f} %)", flush=True)
        return record
    run_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(run_dir / "params.json", json.dumps(params, indent=1))

    model, initial_epoch, fit_batch, speed = _model_at_last_checkpoint(exp, seed, run_dir, learning_rate, speed,
                                                                       batch_size)
    progress = ProgressLogger(f"{exp.label} seed {seed}", epochs, log_every)
    callbacks = [EpochTimer(), keras.callbacks.TerminateOnNaN(),
                 keras.callbacks.CSVLogger(str(run_dir / HISTORY_FILE), append=True),
                 Checkpointer(run_dir, epochs, checkpoint_seconds), progress, *callbacks]
    if initial_epoch < epochs:
        model.fit(**fit_data((x_train, y_train), (x_test, y_test), speed, batch_size, fit_batch),
                  epochs=epochs, initial_epoch=initial_epoch, validation_freq=evaluation_epochs(epochs, eval_every),
                  verbose=0, callbacks=callbacks)
    history = _read_history(run_dir / HISTORY_FILE)
    source = getattr(data, "source", "arrays")
    record = _make_record(exp, seed, model, history, params, source, str(run_dir), speed)
    _save_weights_atomic(model, run_dir / "model.weights.h5")
    write_atomic(run_dir / RECORD_FILE, record.to_json())
    for checkpoint in run_dir.glob(CHECKPOINT_GLOB):
        checkpoint.unlink()
    progress.finished(record)
    return record


def evaluation_epochs(epochs: int, every: int = 1) -> list[int]:
    """The 1-based epochs after which the test set is evaluated: the first, every
    ``every``-th and the last (the first fixes the history file's columns)."""
    return sorted({1, epochs, *range(every, epochs + 1, every)})


def evaluation_phrase(every: int) -> str:
    """How often the test set is evaluated, as chapters and the report say it."""
    return "test set evaluated every epoch" if every == 1 else f"test set evaluated every {every} epochs"


def _plan(exp: Experiment, epochs: int, batch_size: int, seed: int, data, out_dir, learning_rate: float,
          eval_every: int = 1):
    """The model inputs, every parameter that changes the result, and the run's folder."""
    (x_train, y_train), (x_test, y_test) = data
    normalized = getattr(data, "normalized", None)
    x_train = as_model_input(x_train, exp.normalize, normalized)
    x_test = as_model_input(x_test, exp.normalize, normalized)
    params = {
        "experiment": exp.number, "spec": asdict(exp.spec), "normalize": exp.normalize,
        "augment": exp.augment, "epochs": epochs, "batch_size": batch_size, "seed": seed,
        "learning_rate": learning_rate, "optimizer": "adam", "loss": "categorical_crossentropy",
        "train_size": len(x_train), "test_size": len(x_test),
        "data_fingerprint": fingerprint(((x_train, y_train), (x_test, y_test))),
    }
    if eval_every != 1:  # only then, so runs made before this setting existed keep their names
        params["eval_every"] = eval_every
    params = json.loads(json.dumps(params))  # as it will read back from disk (lists, not tuples)
    run_dir = Path(out_dir) / f"{exp.key}-seed{seed}-{_params_hash(params)}"
    return (x_train, y_train), (x_test, y_test), params, run_dir


def find_finished(experiment: int | str | Experiment, data, epochs: int = STUDY_EPOCHS,
                  batch_size: int = STUDY_BATCH_SIZE, seeds: Sequence[int] = (0,),
                  out_dir: str | os.PathLike = DEFAULT_OUT_DIR,
                  learning_rate: float = STUDY_LEARNING_RATE, eval_every: int = 1) -> list[RunRecord]:
    """The finished runs ``run_experiment`` would reuse for these settings; trains nothing."""
    exp = get_experiment(experiment)
    found = []
    for seed in seeds:
        *_, run_dir = _plan(exp, epochs, batch_size, seed, data, out_dir, learning_rate, eval_every)
        if (run_dir / RECORD_FILE).exists():
            found.append(RunRecord.from_file(run_dir / RECORD_FILE))
    return found


def _params_hash(params: dict) -> str:
    return hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:8]


def _model_at_last_checkpoint(exp: Experiment, seed: int, run_dir: Path, learning_rate: float, speed: Speed,
                              batch_size: int) -> tuple[keras.Model, int, int, Speed]:
    """A compiled model, the epoch to start from, the batch size ``fit`` gets (larger when
    JAX fuses steps) and the speed settings in effect (a backend may fall back from some);
    history past the checkpoint is dropped."""
    checkpoints = sorted(run_dir.glob(CHECKPOINT_GLOB))
    initial_epoch = int(checkpoints[-1].name[len("checkpoint-e"):].split(".")[0]) if checkpoints else 0
    keras.utils.set_random_seed(seed * 100_003 + initial_epoch)  # fresh shuffles after a resume
    model = build_model(exp, seed=seed)
    compile_steps, fit_batch = backend.prepare_steps(model, speed.steps_per_execution, batch_size)
    jit_compile = backend.usable_jit_compile(speed.jit_compile)
    compile_model(model, learning_rate, jit_compile=jit_compile, steps_per_execution=compile_steps)
    speed = replace(speed, jit_compile=jit_compile, steps_per_execution=compile_steps * fit_batch // batch_size)
    if checkpoints:
        model.optimizer.build(model.trainable_variables)
        model.load_weights(checkpoints[-1])
        print(f"{exp.label} seed {seed}: resuming after epoch {initial_epoch} from {checkpoints[-1]}",
              flush=True)
    _truncate_history(run_dir / HISTORY_FILE, initial_epoch)
    return model, initial_epoch, fit_batch, speed


def _read_history(path: Path) -> pd.DataFrame:
    return pd.read_csv(path) if path.exists() and path.stat().st_size else pd.DataFrame()


def _truncate_history(path: Path, epochs: int) -> None:
    """Keep the rows of the first ``epochs`` epochs: no duplicates after a resume."""
    if not path.exists():
        return
    history = _read_history(path)
    if epochs == 0 or history.empty:
        path.unlink()
        return
    tmp = path.with_name(f".{path.name}.tmp")
    history[history["epoch"] < epochs].to_csv(tmp, index=False)
    os.replace(tmp, path)


def _save_weights_atomic(model: keras.Model, path: Path) -> None:
    tmp = path.with_name("tmp-" + path.name)  # Keras insists on the .weights.h5 suffix
    model.save_weights(tmp)
    os.replace(tmp, path)


def _make_record(exp: Experiment, seed: int, model: keras.Model, history: pd.DataFrame,
                 params: dict, source: str, run_dir: str, speed: Speed) -> RunRecord:
    if history.empty:
        raise RuntimeError(f"{run_dir}: training produced no history")
    last = history.iloc[-1]
    diverged = not all(math.isfinite(v) for v in (last["loss"], last["val_loss"]))
    best = int(history["val_accuracy"].fillna(-1).idxmax())
    seconds = history["epoch_seconds"]
    per_epoch = float(seconds.iloc[1:].median() if len(seconds) > 1 else seconds.iloc[0])
    return RunRecord(
        experiment=exp.number, name=exp.name, seed=seed, status="diverged" if diverged else "completed",
        epochs_completed=len(history), train_loss=float(last["loss"]), test_loss=float(last["val_loss"]),
        train_acc=100 * float(last["accuracy"]), test_acc=100 * float(last["val_accuracy"]),
        best_test_acc=100 * float(history["val_accuracy"].iloc[best]), best_epoch=best + 1,
        param_count=model.count_params(), wall_seconds=float(seconds.sum()),
        seconds_per_epoch=per_epoch, images_per_second=params["train_size"] / per_epoch,
        backend=backend.backend_name(), device=backend.device_description(), data_source=source,
        versions=backend.versions(), params=params, speed=speed.as_dict(),
        history={k: [float(v) for v in history[k]] for k in history.columns}, run_dir=run_dir)


class EpochTimer(keras.callbacks.Callback):
    """Adds ``epoch_seconds`` to the epoch logs, so CSVLogger and the record keep it."""

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["epoch_seconds"] = time.perf_counter() - self._start


class Checkpointer(keras.callbacks.Callback):
    """Saves model and optimiser state at most every ``seconds`` and after the last epoch.

    Written by hand because BackupAndRestore stores the weights and the epoch counter in
    two files, non-atomically: a crash between them resumes at the wrong epoch. Here the
    epoch is in the file name and the file appears by rename, complete or not at all.
    """

    def __init__(self, run_dir: Path, epochs: int, seconds: float):
        super().__init__()
        self.run_dir, self.epochs, self.seconds = run_dir, epochs, seconds
        self._last = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        if done < self.epochs and time.monotonic() - self._last < self.seconds:
            return
        path = self.run_dir / f"checkpoint-e{done:04d}.weights.h5"
        _save_weights_atomic(self.model, path)
        for old in self.run_dir.glob(CHECKPOINT_GLOB):
            if old != path:
                old.unlink()
        self._last = time.monotonic()


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else \
        f"{seconds // 60}m{seconds % 60:02d}s"


class ProgressLogger(keras.callbacks.Callback):
    """One line every ``every`` epochs (about ten per run by default), never a progress bar:
    Keras' bars redraw many times a second and a notebook stores every frame."""

    def __init__(self, label: str, epochs: int, every: int | None = None):
        super().__init__()
        self.label, self.epochs = label, epochs
        self.every = every or max(1, epochs // 10)
        self._seconds: list[float] = []
        self._test = (float("nan"), float("nan"))

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self._seconds.append(logs.get("epoch_seconds", 0.0))
        if "val_accuracy" in logs:  # with eval_every > 1, show the latest evaluation
            self._test = (logs["val_loss"], logs["val_accuracy"])
        done = epoch + 1
        if done % self.every and done != self.epochs and not self.model.stop_training:
            return
        recent = float(np.median(self._seconds[-5:]))
        print(f"{self.label}: epoch {done}/{self.epochs}  loss {logs.get('loss', float('nan')):.3f}"
              f"  acc {100 * logs.get('accuracy', float('nan')):.1f}%"
              f"  test loss {self._test[0]:.3f}  test acc {100 * self._test[1]:.1f}%"
              f"  {recent:.2f} s/epoch  ETA {_duration(recent * (self.epochs - done))}", flush=True)

    def finished(self, record: RunRecord) -> None:
        print(f"{self.label}: {record.status} in {_duration(record.wall_seconds)}, "
              f"test acc {record.test_acc:.2f} % (best {record.best_test_acc:.2f} % "
              f"at epoch {record.best_epoch})", flush=True)


def load_records(out_dir: str | os.PathLike = DEFAULT_OUT_DIR) -> list[RunRecord]:
    """Every finished run under ``out_dir`` (unfinished runs have no record yet)."""
    paths = sorted(Path(out_dir).glob(f"**/{RECORD_FILE}"))
    return [RunRecord.from_file(p) for p in paths]


