"""Train one experiment by its recipe and keep a complete, resumable record of it.

A run lives in its own folder, named after the experiment, the seed and a hash of every
parameter that changes the result, so a finished run is found again instead of retrained:

    .lock                        held (flock) by the one process that owns the run
    params.json                  what was asked for (written first)
    history.csv                  one row per epoch, fixed columns, flushed as it is written
    checkpoint-eNNNN.weights.h5  model + optimiser state after epoch NNNN (the last two, while running)
    model.weights.h5             final weights
    record.json                  the result; written last, atomically: its presence means done

Everything that could leave a wrong number behind is checked when a run is touched: a
second process waits for the owner instead of training the same run, a damaged record
is rebuilt from the history and the final weights, a damaged checkpoint gives way to an
older one, a history that lost rows is never paired with a later checkpoint, and a full
disk stops the run with one message naming the folder while the finished epochs stay.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import math
import os
import shutil
import socket
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from . import backend
from .batches import EpochDraws, fit_data
from .data import NUM_CLASSES, load_cifar10, stratified_share
from .experiments import Experiment, Recipe, get_experiment
from .final_model import batch_norm_layers, reestimate_batch_norm, restore_batch_norm, train_eval_indices
from .models import build_model, compile_model, prepare_model
from .parameters import check_seed, check_seeds
from .recipes import evaluate_views, predict_views, scores, steps_per_epoch
from .speed import Speed

RECORD_FILE = "record.json"
HISTORY_FILE = "history.csv"
PARAMS_FILE = "params.json"
LOCK_FILE = ".lock"
WEIGHTS_FILE = "model.weights.h5"
PREDICTIONS_FILE = "test_predictions.npz"
KEPT_MISTAKES = 24  # the most confident test mistakes keep their pixels, for figures without the data
CHECKPOINT_GLOB = "checkpoint-e*.weights.h5"
DEFAULT_OUT_DIR = "runs"
HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "epoch_seconds")
KEEP_CHECKPOINTS = 2  # an older intact one to fall back on if the newest is damaged
VALIDATION_SEED = 0  # one fixed held-out set, so every run of a sweep is judged on the same images
SMALL_SETTING_SEED = 1  # one fixed set of images for ``Recipe.train_images``, whatever the run's seed
# Recipe fields added after runs were first named, with their defaults: left out of a run's
# identity at their default, so every run named before a field existed keeps its folder.
LATER_RECIPE_FIELDS = {"train_images": 0}


class RunError(RuntimeError):
    """A run folder holds something that cannot be trusted or written; the message names the file."""


class RunStorageError(RunError):
    """No space left to save a run's progress; nothing finished is lost."""


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
    # images (``final_model.TRAIN_EVAL_IMAGES``), with the recipe's test-time views: the
    # training side of the train-test gap. ``train_acc`` is Keras' running figure.
    train_eval_acc: float = float("nan")
    train_eval_loss: float = float("nan")
    train_eval_images: int = 0
    # Batch-norm models: "running" (the statistics training left, the study's way) or
    # "re-estimated" (weight-averaged recipes, whose final model needs them); "" without BN.
    bn_statistics: str = ""
    # Test accuracy with the statistics re-estimated on those training images, no weight
    # changed: a diagnostic beside ``test_acc``, never instead of it.
    bn_reestimated_test_acc: float = float("nan")

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
        return json.dumps(asdict(self), indent=1)

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


# --- files -----------------------------------------------------------------------------

def _is_disk_full(error: OSError) -> bool:
    return error.errno in (errno.ENOSPC, errno.EDQUOT) or "No space left" in str(error) or "errno = 28" in str(error)


def _storage_error(folder: Path, what: str, needed: float, error: OSError | None = None) -> RunStorageError:
    free = shutil.disk_usage(folder).free if folder.exists() else 0
    cause = f" ({error})" if error else ""
    return RunStorageError(f"{folder}: not enough disk space to write {what}: about {needed / 1e6:.1f} MB needed, "
                           f"{free / 1e6:.1f} MB free{cause}. Free some space and run again: the run resumes "
                           "from its last checkpoint, and finished runs are untouched.")


def ensure_space(folder: Path, needed: float, what: str) -> None:
    """Refuse before writing rather than fail halfway (h5py can crash on a full disk)."""
    if shutil.disk_usage(folder).free < needed:
        raise _storage_error(folder, what, needed)


def write_atomic(path: Path, text: str) -> None:
    """Write via a temp file and rename, so readers never see half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        if _is_disk_full(error):
            raise _storage_error(path.parent, path.name, len(text.encode()), error) from None
        raise


def _save_weights_atomic(model: keras.Model, path: Path, needed: float) -> None:
    ensure_space(path.parent, needed, path.name)
    tmp = path.with_name("tmp-" + path.name)  # Keras insists on the .weights.h5 suffix
    try:
        model.save_weights(tmp)
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        if _is_disk_full(error):
            raise _storage_error(path.parent, path.name, needed, error) from None
        raise


def _weights_bytes(model: keras.Model, run_dir: Path) -> float:
    """What the next checkpoint will need: the last one's size, else weights + optimiser
    state estimated from the parameter count, with room to spare."""
    existing = [p.stat().st_size for p in run_dir.glob(CHECKPOINT_GLOB)]
    if existing:
        return 1.5 * max(existing)
    return 4.0 * 4 * model.count_params() + 1e6


def _clean_leftovers(run_dir: Path) -> None:
    """Temp files of a process killed just before its rename: never complete, never needed."""
    for path in run_dir.iterdir():
        name = path.name
        if path.is_file() and ((name.startswith(".") and name.endswith(".tmp")) or name.startswith("tmp-")):
            path.unlink(missing_ok=True)


def _clear(run_dir: Path) -> None:
    """Empty a run folder for a forced retrain, keeping the lock file its owner holds."""
    for path in run_dir.iterdir():
        if path.name == LOCK_FILE:
            continue
        shutil.rmtree(path) if path.is_dir() else path.unlink()


@contextmanager
def run_lock(run_dir: Path, label: str, wait: float | None = None) -> Iterator[None]:
    """Own a run folder: one process trains a run; another waits, then finds it finished.

    ``flock`` is released by the kernel when its owner dies, however it dies, so a killed
    run never stays locked. The lock file says who holds it (pid, host, run, since when),
    for the waiting message. A stopped or hung owner keeps its lock, so a waiter gives up
    once nothing in the folder has changed for ``wait`` seconds (default
    ``$CIFAR_UTILS_LOCK_WAIT``, else ``LOCK_WAIT_SECONDS``): an owner that trains writes
    its history every epoch, so a long run is waited for and a dead one is not."""
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not _try_lock(fd):
            _wait_for_lock(fd, run_dir, label, lock_wait_seconds() if wait is None else wait)
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} ({label}) since {stamp}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


# No change in a held run folder for this long means its owner is stopped or hung: 5x the
# longest stretch without a history row in the cost table (costs.py: experiment 21, 193.5 s
# an epoch and 310.7 s after its last epoch), as CPUs differ by up to 5x.
LOCK_WAIT_SECONDS = 1800.0
LOCK_NOTE_SECONDS = 300.0  # a waiter says it still waits this often (a sign of life to the pool)


class RunLockTimeout(RunError):
    """Another process holds a run folder and nothing in it changed for the stated time."""


def lock_wait_seconds() -> float:
    """How long a waiter lets a held run folder stay unchanged: ``$CIFAR_UTILS_LOCK_WAIT``
    (``./run_all.sh --stall-timeout`` sets it for its workers and notebooks) or the default."""
    text = os.environ.get("CIFAR_UTILS_LOCK_WAIT", "").strip()
    if not text:
        return LOCK_WAIT_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0:
        raise RunError(f"$CIFAR_UTILS_LOCK_WAIT={text!r}: give a number of seconds above 0")
    return seconds


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _folder_state(run_dir: Path) -> list[tuple]:
    """Name, size and modification time of each file: what changes while an owner trains."""
    state = []
    for path in run_dir.iterdir():
        try:
            info = path.stat()
        except OSError:  # removed between listing and looking
            continue
        state.append((path.name, info.st_size, info.st_mtime_ns))
    return sorted(state)


def _wait_for_lock(fd: int, run_dir: Path, label: str, wait: float) -> None:
    """Wait for the owner of ``run_dir``; give up when the folder stayed unchanged for
    ``wait`` seconds, measured on this machine's clock (another machine's may differ)."""
    owner = os.pread(fd, 300, 0).decode(errors="replace").strip() or "another process"
    print(f"{label}: waiting for {run_dir}: {owner} is training it (giving up if nothing there changes for "
          f"{_duration(wait)})", flush=True)
    seen, changed = _folder_state(run_dir), time.monotonic()
    noted = changed
    while not _try_lock(fd):
        time.sleep(min(1.0, wait / 10))
        now, state = time.monotonic(), _folder_state(run_dir)
        if state != seen:
            seen, changed = state, now
        elif now - changed >= wait:
            raise RunLockTimeout(
                f"{run_dir}: gave up waiting for {owner}: nothing in the run folder changed for {_duration(wait)} "
                "(a stopped or hung process?). End that process, or let it finish, and run again: the run "
                "resumes from its last checkpoint")
        if now - noted >= min(LOCK_NOTE_SECONDS, wait / 3):
            noted = now
            print(f"{label}: still waiting for {run_dir}: {owner}; last change {_duration(now - changed)} ago",
                  flush=True)


# --- history ---------------------------------------------------------------------------

def _parse_row(line: str, expected_epoch: int) -> list[float] | None:
    parts = line.rstrip("\n").split(",")
    if len(parts) != len(HISTORY_COLUMNS):
        return None
    try:
        values = [float(v) if v not in ("", "NA") else float("nan") for v in parts]
    except ValueError:
        return None
    return values if values[0] == expected_epoch else None


def read_history(path: Path) -> pd.DataFrame:
    """The consistent prefix of a history file: the header, then rows for epochs 0, 1, ...
    with every field. A row cut by a kill, or anything after a gap, is not history."""
    columns = list(HISTORY_COLUMNS)
    if not path.exists():
        return pd.DataFrame(columns=columns)
    try:
        lines = path.read_text().splitlines(keepends=True)
    except (OSError, UnicodeDecodeError) as error:
        warnings.warn(f"{path}: unreadable history ({error}); treating it as empty", stacklevel=2)
        return pd.DataFrame(columns=columns)
    if not lines or lines[0].strip() != ",".join(columns):
        return pd.DataFrame(columns=columns)
    rows = []
    for line in lines[1:]:
        if not line.endswith("\n"):
            break  # the last line was still being written
        row = _parse_row(line, len(rows))
        if row is None:
            break
        rows.append(row)
    frame = pd.DataFrame(rows, columns=columns)
    return frame.astype({"epoch": int})


def _write_history(path: Path, frame: pd.DataFrame) -> None:
    text = ",".join(HISTORY_COLUMNS) + "\n" + "".join(_format_row(row) for row in frame.itertuples(index=False))
    write_atomic(path, text)


def _format_row(values) -> str:
    cells = [str(int(values[0]))] + ["" if not math.isfinite(float(v)) else repr(float(v)) for v in values[1:]]
    return ",".join(cells) + "\n"


class HistoryWriter(keras.callbacks.Callback):
    """One row per epoch in fixed columns, flushed and synced as it is written.

    Written by hand because ``CSVLogger`` fixes its columns from the first epoch it sees:
    resumed on an epoch without a test evaluation (``eval_every`` > 1) it wrote rows of
    another width under the old header, and the run could never be read again."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = path

    def on_train_begin(self, logs=None):
        if not self.path.exists() or self.path.stat().st_size == 0:
            write_atomic(self.path, ",".join(HISTORY_COLUMNS) + "\n")

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        row = _format_row([epoch] + [float(logs.get(c, float("nan"))) for c in HISTORY_COLUMNS[1:]])
        try:
            with open(self.path, "a") as stream:
                stream.write(row)
                stream.flush()
                os.fsync(stream.fileno())
        except OSError as error:
            if _is_disk_full(error):
                raise _storage_error(self.path.parent, self.path.name, len(row), error) from None
            raise


# --- planning ----------------------------------------------------------------------------

def as_model_input(images: np.ndarray, normalize: bool, normalized: bool | None = None) -> np.ndarray:
    """Bring images to the scale an experiment expects (0-1 or 0-255)."""
    if normalized is None:  # plain arrays: raw pixels go above 1
        normalized = float(np.max(images)) <= 1.0
    if normalize == normalized:
        return images
    return images / np.float32(255.0) if normalize else images * np.float32(255.0)


def data_fingerprint(data) -> str:
    """A short content hash of a dataset, the same whatever scale it was loaded at, so
    run folders tell data sources apart and experiment 1 (0-255) shares its data's id."""
    (x_train, y_train), (x_test, y_test) = data
    normalized = getattr(data, "normalized", None)
    if normalized is None:
        normalized = float(np.max(x_train)) <= 1.0
    digest = hashlib.sha1()
    for images, labels in ((x_train, y_train), (x_test, y_test)):
        rows = np.asarray(images[::97], dtype="float32")
        rows = rows if normalized else rows / np.float32(255.0)
        digest.update(f"{np.shape(images)}{np.shape(labels)}".encode())
        digest.update(np.ascontiguousarray(rows).tobytes())
        digest.update(np.ascontiguousarray(np.asarray(labels[::97], dtype="float32")).tobytes())
    return digest.hexdigest()[:10]


def validation_split(labels: np.ndarray, fraction: float, seed: int = VALIDATION_SEED,
                     what: str = "this recipe") -> tuple[np.ndarray, ...]:
    """Indices (train, validation): ``fraction`` of each class held out, the same every run;
    refuses (``split_problem``) labels too few for it, naming ``what`` asked for it."""
    problem = split_problem(class_sizes(labels), fraction, what)
    if problem:
        raise ValueError(problem)
    held = stratified_share(labels, fraction, seed)
    return np.setdiff1d(np.arange(len(labels)), held), held


def fewer_images(train: tuple[np.ndarray, np.ndarray], count: int, label: str) -> tuple[np.ndarray, np.ndarray]:
    """A fixed, stratified ``count`` of the training images (``Recipe.train_images``): the
    same images for every seed, so seeds vary the training, not the data."""
    images, labels = train
    if not 10 * NUM_CLASSES <= count <= len(labels):
        raise ValueError(f"{label}: train_images={count}: needs between {10 * NUM_CLASSES} (ten a class) and the "
                         f"{len(labels)} training images there are")
    chosen = stratified_share(labels, count / len(labels), SMALL_SETTING_SEED)
    return images[chosen], labels[chosen]


def recipe_identity(recipe: Recipe) -> dict:
    """The recipe as a run's identity holds it (``LATER_RECIPE_FIELDS`` at their default left out)."""
    return {k: v for k, v in asdict(recipe).items() if LATER_RECIPE_FIELDS.get(k, object()) != v}


def class_sizes(labels: np.ndarray) -> list[int]:
    """Images per class present (labels as integers or one-hot)."""
    classes = labels.argmax(axis=1) if labels.ndim == 2 else np.asarray(labels)
    return [int(n) for n in np.unique(classes, return_counts=True)[1]]


def subset_class_sizes(subset: int) -> list[int]:
    """Images per class of ``load_cifar10(subset=...)``'s stratified training subset."""
    return [subset // NUM_CLASSES + (i < subset % NUM_CLASSES) for i in range(NUM_CLASSES)]


def split_sizes(count: int, fraction: float) -> tuple[int, int]:
    """(kept, held out) of a class of ``count`` images, rounded as ``data.stratified_share`` does."""
    held = int(round(fraction * count))
    return count - held, held


def smallest_split_class(fraction: float) -> int:
    """The fewest images a class needs for ``fraction`` (in (0, 1)) to hold out one and keep one."""
    count = max(2, math.floor(0.5 / min(fraction, 1 - fraction)))
    while min(split_sizes(count, fraction)) < 1:
        count += 1
    return count


def split_problem(sizes: Sequence[int], fraction: float, what: str = "this recipe") -> str | None:
    """Why ``fraction`` of classes of these sizes cannot be held out for validation. Each side
    must keep at least one image of every class: an empty validation set failed deep in
    Keras (``UnboundLocalError``), an empty training set was recorded as "diverged". A
    batch larger than the training side is fine (one partial batch an epoch)."""
    smallest = min(sizes)
    kept, held = split_sizes(smallest, fraction)
    if min(kept, held) >= 1:
        return None
    need = smallest_split_class(fraction)
    return (f"{what} holds out {fraction:g} of the training images for validation: {held} of a class of "
            f"{smallest} images, keeping {kept}. Each side needs at least one image of every class, so this split "
            f"needs {need} training images a class: a subset of at least {need * NUM_CLASSES}")


def splits_problem(experiments: Iterable[Experiment], sizes: Sequence[int]) -> str | None:
    """``split_problem`` for the first of these experiments whose split classes of these sizes
    cannot make (checked before anything trains); names how many others share its fraction."""
    by_fraction: dict[float, list[str]] = {}
    for exp in experiments:
        if exp.recipe.validation and exp.label not in by_fraction.get(exp.recipe.validation, []):
            by_fraction.setdefault(exp.recipe.validation, []).append(exp.label)
    for fraction, labels in by_fraction.items():
        what = f"experiment {labels[0]}" + (f" (and {len(labels) - 1} more)" if len(labels) > 1 else "")
        problem = split_problem(sizes, fraction, what)
        if problem:
            return problem
    return None


def effective_recipe(exp: Experiment, epochs: int | None = None, batch_size: int | None = None) -> Recipe:
    """The experiment's recipe with the run's overrides (``--quick`` trains 2 epochs)."""
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if value is not None and (not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1):
            raise ValueError(f"{name} must be a positive integer or None (the recipe's), got {value!r}")
    return replace(exp.recipe, epochs=int(epochs or exp.recipe.epochs),
                   batch_size=int(batch_size or exp.recipe.batch_size))


@dataclass
class RunPlan:
    """Everything a run needs, decided before anything is trained."""

    experiment: Experiment
    recipe: Recipe
    seed: int
    train: tuple[np.ndarray, np.ndarray]
    evaluation: tuple[np.ndarray, np.ndarray]  # what val_* measures each epoch
    test: tuple[np.ndarray, np.ndarray]
    params: dict
    run_dir: Path
    source: str
    eval_every: int

    @property
    def label(self) -> str:
        return f"{self.experiment.label} seed {self.seed}"

    @property
    def evaluated_on(self) -> str:
        return "validation" if self.recipe.validation else "test"

    @property
    def train_eval(self) -> tuple[np.ndarray, np.ndarray]:
        """The fixed training images the final model is measured on (``final_model``)."""
        chosen = train_eval_indices(self.train[1])
        return self.train[0][chosen], self.train[1][chosen]


def plan_run(experiment: int | str | Experiment, data, seed: int = 0, out_dir: str | os.PathLike = DEFAULT_OUT_DIR,
             epochs: int | None = None, batch_size: int | None = None, eval_every: int = 1) -> RunPlan:
    """The model inputs, every parameter that changes the result, and the run's folder."""
    exp = get_experiment(experiment)
    recipe = effective_recipe(exp, epochs, batch_size)
    seed = check_seed("seed", seed)  # before the run's folder exists: keras.utils.set_random_seed would fail in it
    if not isinstance(eval_every, int) or eval_every < 1:
        raise ValueError(f"eval_every must be a positive integer, got {eval_every!r}")
    (x_train, y_train), (x_test, y_test) = data
    normalized = getattr(data, "normalized", None)
    x_train = as_model_input(x_train, exp.normalize, normalized)
    x_test = as_model_input(x_test, exp.normalize, normalized)
    if recipe.validation:
        kept, held = validation_split(y_train, recipe.validation, what=f"experiment {exp.label}")
        train, evaluation = (x_train[kept], y_train[kept]), (x_train[held], y_train[held])
    else:
        train, evaluation = (x_train, y_train), (x_test, y_test)
    if recipe.train_images:
        train = fewer_images(train, recipe.train_images, exp.label)
    spec = {"kind": type(exp.spec).__name__, **asdict(exp.spec)}
    params = {
        "experiment": exp.number, "variant": exp.variant, "spec": spec, "normalize": exp.normalize,
        "recipe": recipe_identity(recipe), "epochs": recipe.epochs, "batch_size": recipe.batch_size, "seed": seed,
        "eval_every": eval_every, "train_size": len(train[0]), "validation_size": len(evaluation[0])
        if recipe.validation else 0, "test_size": len(x_test), "data_fingerprint": data_fingerprint(data),
    }
    params = json.loads(json.dumps(params))  # as it will read back from disk (lists, not tuples)
    run_dir = Path(out_dir) / f"{exp.key}-seed{seed}-{_params_hash(params)}"
    return RunPlan(exp, recipe, seed, train, evaluation, (x_test, y_test), params, run_dir,
                   getattr(data, "source", "arrays"), eval_every)


def _params_hash(params: dict) -> str:
    return hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:8]


# --- running -----------------------------------------------------------------------------

def run_experiment(experiment: int | str | Experiment, epochs: int | None = None, batch_size: int | None = None,
                   seed: int = 0, data=None, out_dir: str | os.PathLike = DEFAULT_OUT_DIR,
                   seeds: Sequence[int] | None = None, force: bool = False, log_every: int | None = None,
                   checkpoint_seconds: float = 30.0, eval_every: int = 1, speed: Speed | Mapping | None = None,
                   callbacks: Sequence[keras.callbacks.Callback] = ()) -> RunRecord | list[RunRecord]:
    """Train (or reuse) one experiment; with ``seeds`` run each seed and return a list.

    ``epochs`` and ``batch_size`` default to the experiment's recipe (the study's: 300 and
    512). ``data`` is what ``load_cifar10`` returns (None loads the default source); pixels
    are rescaled to what the experiment expects. An interrupted run resumes from its last
    checkpoint; a finished one with the same parameters is reused unless ``force``; a run
    another process is training is waited for, then reused.
    ``callbacks`` run after the package's own (timing, NaN stop, history, checkpoint, log).
    ``eval_every`` evaluates after every that many epochs (and after the first and last)
    instead of after each: the curves get fewer points and "best accuracy" is the best of
    those, so it names the run when it is not 1.
    ``speed`` (a ``Speed`` or a dict of its fields) changes how fast a run goes, not what it
    computes, so it does not name the run.
    """
    exp = get_experiment(experiment)
    speed = Speed.coerce(speed)
    effective_recipe(exp, epochs, batch_size)  # refuse bad values before loading anything
    seeds = None if seeds is None else check_seeds("seeds", seeds)
    if data is None:
        data = load_cifar10(normalize=exp.normalize)
    if seeds is not None:
        return [run_experiment(exp, epochs=epochs, batch_size=batch_size, seed=s, data=data, out_dir=out_dir,
                               force=force, log_every=log_every, checkpoint_seconds=checkpoint_seconds,
                               eval_every=eval_every, speed=speed, callbacks=callbacks) for s in seeds]
    plan = plan_run(exp, data, seed, out_dir, epochs, batch_size, eval_every)
    with run_lock(plan.run_dir, plan.label):
        _clean_leftovers(plan.run_dir)
        if force:
            _clear(plan.run_dir)
        record = finished_record(plan)
        if record is not None:
            print(f"{plan.label}: reusing finished run {plan.run_dir} (test acc {record.test_acc:.2f} %)", flush=True)
            return record
        write_atomic(plan.run_dir / PARAMS_FILE, json.dumps(plan.params, indent=1))
        return _train(plan, speed, log_every, checkpoint_seconds, callbacks)


def _train(plan: RunPlan, speed: Speed, log_every: int | None, checkpoint_seconds: float,
           callbacks: Sequence[keras.callbacks.Callback]) -> RunRecord:
    run_dir, recipe = plan.run_dir, plan.recipe
    model, initial_epoch, fit_batch, speed = _model_at_last_checkpoint(plan, speed)
    progress = ProgressLogger(plan.label, recipe.epochs, log_every, plan.evaluated_on)
    if initial_epoch < recipe.epochs:
        data = fit_data(plan.train, plan.evaluation, recipe.batch_size, plan.seed, fit_batch, speed.eval_batch_size,
                        speed.data_on_device)
        model.fit(**data, epochs=recipe.epochs, initial_epoch=initial_epoch,
                  validation_freq=evaluation_epochs(recipe.epochs, plan.eval_every), verbose=0,
                  callbacks=[EpochDraws(plan.seed, data["x"]), EpochTimer(), keras.callbacks.TerminateOnNaN(),
                             HistoryWriter(run_dir / HISTORY_FILE),
                             Checkpointer(run_dir, recipe.epochs, checkpoint_seconds), progress, *callbacks])
    elif recipe.ema:  # resumed after the last checkpoint: do what the end of ``fit`` does
        model.optimizer.finalize_variable_values(model.trainable_variables)
    history = read_history(run_dir / HISTORY_FILE)
    _finalize_statistics(plan, model, history)
    probabilities = predict_views(model, plan.test[0], recipe.tta, recipe.batch_size)
    record = _make_record(plan, model, history, speed, probabilities)
    _save_weights_atomic(model, run_dir / WEIGHTS_FILE, _weights_bytes(model, run_dir))
    if record.status == "completed":
        write_predictions(run_dir, probabilities, *plan.test)
    write_atomic(run_dir / RECORD_FILE, record.to_json())
    for leftover in [*run_dir.glob(CHECKPOINT_GLOB), *run_dir.glob("*.damaged")]:
        leftover.unlink()
    progress.finished(record)
    return record


def _finalize_statistics(plan: RunPlan, model: keras.Model, history: pd.DataFrame) -> None:
    """A weight-averaged model's batch-norm statistics come from the weights it averaged,
    never from itself: re-estimate them, so the final model is consistent."""
    if plan.recipe.ema and batch_norm_layers(model) and len(history) and math.isfinite(history["loss"].iloc[-1]):
        reestimate_batch_norm(model, plan.train_eval[0])


def finished_record(plan: RunPlan) -> RunRecord | None:
    """The run's record if it is finished and intact. A damaged record is rebuilt from
    the history and the final weights when both are complete, else set aside (the run
    then resumes or retrains); never trusted as it is."""
    path = plan.run_dir / RECORD_FILE
    if not path.exists():
        return None
    try:
        record = RunRecord.from_file(path)
        if record.params != plan.params:
            raise RunError(f"{path}: its parameters are not this run's (edited or copied by hand?)")
        return record
    except RunError as error:
        rebuilt = _rebuild_record(plan)
        if rebuilt is not None:
            warnings.warn(f"{error}; rebuilt it from {HISTORY_FILE} and {WEIGHTS_FILE}", stacklevel=2)
            write_atomic(path, rebuilt.to_json())
            return rebuilt
        aside = path.with_name(RECORD_FILE + ".damaged")
        os.replace(path, aside)
        warnings.warn(f"{error}; moved it to {aside.name} and the run will be trained again", stacklevel=2)
        return None


def _rebuild_record(plan: RunPlan) -> RunRecord | None:
    history = read_history(plan.run_dir / HISTORY_FILE)
    weights = plan.run_dir / WEIGHTS_FILE
    finished = len(history) == plan.recipe.epochs or (len(history) and not np.isfinite(history["loss"].iloc[-1]))
    if not weights.exists() or not finished:
        return None
    model = _compiled_model(plan, Speed())[0]
    try:
        model.optimizer.build(model.trainable_variables)
        model.load_weights(weights)
    except (OSError, ValueError, KeyError) as error:
        warnings.warn(f"{weights}: damaged final weights ({error})", stacklevel=3)
        return None
    return _make_record(plan, model, history, Speed())


def find_finished(experiment: int | str | Experiment, data, epochs: int | None = None,
                  batch_size: int | None = None, seeds: Sequence[int] = (0,),
                  out_dir: str | os.PathLike = DEFAULT_OUT_DIR, eval_every: int = 1) -> list[RunRecord]:
    """The finished, intact runs ``run_experiment`` would reuse for these settings; trains
    nothing and changes nothing (a damaged record is skipped with a warning)."""
    found = []
    for seed in seeds:
        plan = plan_run(experiment, data, seed, out_dir, epochs, batch_size, eval_every)
        path = plan.run_dir / RECORD_FILE
        if not path.exists():
            continue
        try:
            record = RunRecord.from_file(path)
        except RunError as error:
            warnings.warn(f"{error}: left out", stacklevel=2)
            continue
        if record.params == plan.params:
            found.append(record)
    return found


def evaluation_epochs(epochs: int, every: int = 1) -> list[int]:
    """The 1-based epochs after which the evaluation set is evaluated: the first, every
    ``every``-th and the last (the first fixes the history file's columns)."""
    return sorted({1, epochs, *range(every, epochs + 1, every)})


def evaluation_phrase(every: int) -> str:
    """How often the test set is evaluated, as chapters and the report say it."""
    return "test set evaluated every epoch" if every == 1 else f"test set evaluated every {every} epochs"


def _compiled_model(plan: RunPlan, speed: Speed) -> tuple[keras.Model, int, Speed]:
    """A fresh compiled model for the plan; returns it, the batch size ``fit`` gets (larger
    when JAX fuses steps) and the speed settings in effect (a backend may fall back)."""
    recipe = plan.recipe
    model = build_model(plan.experiment, seed=plan.seed)
    prepare_model(model, plan.train[0])
    compile_steps, fit_batch = backend.prepare_steps(model, speed.steps_per_execution, recipe.batch_size)
    jit_compile = backend.usable_jit_compile(speed.jit_compile)
    compile_model(model, recipe, steps_per_epoch(len(plan.train[0]), recipe.batch_size), recipe.epochs,
                  jit_compile=jit_compile, steps_per_execution=compile_steps)
    speed = replace(speed, jit_compile=jit_compile, steps_per_execution=compile_steps * fit_batch // recipe.batch_size)
    return model, fit_batch, speed


def _checkpoint_epoch(path: Path) -> int:
    return int(path.name[len("checkpoint-e"):].split(".")[0])


def _model_at_last_checkpoint(plan: RunPlan, speed: Speed) -> tuple[keras.Model, int, int, Speed]:
    """A compiled model at the newest checkpoint that is intact and that the history
    reaches (else at the start), and the epoch to start from; history past it is dropped."""
    run_dir = plan.run_dir
    rows = len(read_history(run_dir / HISTORY_FILE))
    checkpoints = sorted(run_dir.glob(CHECKPOINT_GLOB), key=_checkpoint_epoch, reverse=True)
    for checkpoint in [*checkpoints, None]:
        epoch = _checkpoint_epoch(checkpoint) if checkpoint else 0
        if epoch > rows:
            warnings.warn(f"{checkpoint}: not used: {run_dir / HISTORY_FILE} holds only {rows} epochs, "
                          f"so resuming after epoch {epoch} would leave a gap", stacklevel=3)
            continue
        keras.utils.set_random_seed(plan.seed)  # order and draws per epoch: batches.EpochDraws
        model, fit_batch, effective = _compiled_model(plan, speed)
        if checkpoint is not None:
            try:
                model.optimizer.build(model.trainable_variables)
                model.load_weights(checkpoint)
            except (OSError, ValueError, KeyError) as error:
                aside = checkpoint.with_name(checkpoint.name + ".damaged")
                os.replace(checkpoint, aside)
                warnings.warn(f"{checkpoint}: damaged checkpoint ({type(error).__name__}: {error}); "
                              f"moved to {aside.name}, trying an older one", stacklevel=3)
                continue
            print(f"{plan.label}: resuming after epoch {epoch} from {checkpoint}", flush=True)
        _truncate_history(run_dir / HISTORY_FILE, epoch)
        return model, epoch, fit_batch, effective
    raise AssertionError("unreachable: starting from scratch always succeeds")


def _truncate_history(path: Path, epochs: int) -> None:
    """Keep the rows of the first ``epochs`` epochs: no duplicates or gaps after a resume."""
    if epochs == 0:
        path.unlink(missing_ok=True)
        return
    _write_history(path, read_history(path).iloc[:epochs])


def _make_record(plan: RunPlan, model: keras.Model, history: pd.DataFrame, speed: Speed,
                 test_probabilities: np.ndarray | None = None) -> RunRecord:
    """The record of a finished run; ``test_probabilities`` (the final model's, with the
    recipe's test-time augmentation) are computed here when not given."""
    recipe, run_dir = plan.recipe, plan.run_dir
    if history.empty:
        raise RunError(f"{run_dir / HISTORY_FILE}: training produced no history")
    last = history.iloc[-1]
    diverged = not math.isfinite(last["loss"])
    if len(history) != recipe.epochs and not diverged:
        raise RunError(f"{run_dir / HISTORY_FILE}: holds {len(history)} of {recipe.epochs} epochs although "
                       "training ended normally (was the file changed while the run was training?)")
    evaluated = history["val_accuracy"]
    best = int(evaluated.fillna(-1).idxmax())
    seconds = history["epoch_seconds"]
    per_epoch = float(seconds.iloc[1:].median() if len(seconds) > 1 else seconds.iloc[0])
    final_eval = bool(recipe.validation or recipe.tta != "none" or recipe.ema)
    if final_eval and not diverged:
        if test_probabilities is None:
            test_probabilities = predict_views(model, plan.test[0], recipe.tta, recipe.batch_size)
        test_loss, test_acc = scores(test_probabilities, plan.test[1])
        val_acc = evaluate_views(model, *plan.evaluation, "none", recipe.batch_size)[1]
    else:
        test_loss, test_acc = float(last["val_loss"]), float(last["val_accuracy"])
        val_acc = test_acc
    on_test = plan.evaluated_on == "test"
    final = _final_model_figures(plan, model, diverged, test_acc)
    return RunRecord(
        experiment=plan.experiment.number, name=plan.experiment.name, seed=plan.seed,
        status="diverged" if diverged else "completed", epochs_completed=len(history),
        train_loss=float(last["loss"]), test_loss=test_loss, train_acc=100 * float(last["accuracy"]),
        test_acc=100 * test_acc, best_test_acc=100 * float(evaluated.iloc[best]) if on_test else float("nan"),
        best_epoch=best + 1, param_count=model.count_params(), wall_seconds=float(seconds.sum()),
        seconds_per_epoch=per_epoch, images_per_second=plan.params["train_size"] / per_epoch,
        backend=backend.backend_name(), device=backend.device_description(), data_source=plan.source,
        versions=backend.versions(), params=plan.params, speed=speed.as_dict(),
        history={k: [float(v) for v in history[k]] for k in history.columns}, run_dir=str(run_dir),
        variant=plan.experiment.variant, evaluated_on=plan.evaluated_on,
        val_acc=float("nan") if on_test else 100 * val_acc,
        best_val_acc=float("nan") if on_test else 100 * float(evaluated.iloc[best]), **final)


def _final_model_figures(plan: RunPlan, model: keras.Model, diverged: bool, test_acc: float) -> dict:
    """The record's inference-mode training figures and, for batch-norm models, the test
    accuracy with re-estimated statistics (see ``final_model``); NaN for a diverged run."""
    nan = float("nan")
    has_bn = bool(batch_norm_layers(model))
    figures = {"train_eval_acc": nan, "train_eval_loss": nan, "train_eval_images": 0, "bn_reestimated_test_acc": nan,
               "bn_statistics": ("re-estimated" if plan.recipe.ema else "running") if has_bn else ""}
    if diverged:
        return figures
    recipe, (images, labels) = plan.recipe, plan.train_eval
    loss, accuracy = evaluate_views(model, images, labels, recipe.tta, recipe.batch_size)
    figures.update(train_eval_acc=100 * accuracy, train_eval_loss=loss, train_eval_images=len(images))
    if has_bn and recipe.ema:
        figures["bn_reestimated_test_acc"] = 100 * test_acc  # the final model already is
    elif has_bn:
        old = reestimate_batch_norm(model, images)
        try:
            figures["bn_reestimated_test_acc"] = 100 * evaluate_views(model, *plan.test, recipe.tta,
                                                                      recipe.batch_size)[1]
        finally:
            restore_batch_norm(model, old)
    return figures


class EpochTimer(keras.callbacks.Callback):
    """Adds ``epoch_seconds`` to the epoch logs, so the history and the record keep it."""

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["epoch_seconds"] = time.perf_counter() - self._start


class Checkpointer(keras.callbacks.Callback):
    """Saves model and optimiser state at most every ``seconds`` and after the last epoch,
    keeping the last two.

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
        _save_weights_atomic(self.model, path, _weights_bytes(self.model, self.run_dir))
        older = sorted(self.run_dir.glob(CHECKPOINT_GLOB), key=_checkpoint_epoch, reverse=True)[KEEP_CHECKPOINTS:]
        for old in older:
            old.unlink()
        self._last = time.monotonic()


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else \
        f"{seconds // 60}m{seconds % 60:02d}s"


class ProgressLogger(keras.callbacks.Callback):
    """One line every ``every`` epochs (about ten per run by default), never a progress bar:
    Keras' bars redraw many times a second and a notebook stores every frame."""

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
        print(f"{self.label}: epoch {done}/{self.epochs}  loss {logs.get('loss', float('nan')):.3f}"
              f"  acc {100 * logs.get('accuracy', float('nan')):.1f}%{evaluation}"
              f"  {recent:.2f} s/epoch  ETA {_duration(recent * (self.epochs - done))}", flush=True)

    def finished(self, record: RunRecord) -> None:
        best = (f"best {record.best_test_acc:.2f} % at epoch {record.best_epoch}" if record.evaluated_on == "test"
                else f"validation {record.val_acc:.2f} %, best {record.best_val_acc:.2f} % at epoch "
                     f"{record.best_epoch}")
        print(f"{self.label}: {record.status} in {_duration(record.wall_seconds)}, "
              f"test acc {record.test_acc:.2f} % ({best})", flush=True)


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


def write_predictions(run_dir: Path, probabilities: np.ndarray, images: np.ndarray, labels: np.ndarray) -> None:
    """The final model's test-set probabilities (float16), the true labels, and the pixels
    of its most confident mistakes: enough for a confusion matrix and a figure of errors
    from the run folder alone (a reference folder keeps it; it keeps no weights)."""
    truth = labels.argmax(axis=1) if labels.ndim == 2 else labels
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != truth)
    order = wrong[np.argsort(-probabilities[wrong, predicted[wrong]])][:KEPT_MISTAKES]
    pixels = images[order] if float(np.max(images)) > 1.0 else images[order] * 255.0
    path = run_dir / PREDICTIONS_FILE
    ensure_space(run_dir, probabilities.size * 2 + 1e6, path.name)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as stream:
        np.savez_compressed(stream, probabilities=probabilities.astype("float16"), labels=truth.astype("int8"),
                            mistake_indices=order, mistake_images=np.round(pixels).astype("uint8"))
    os.replace(tmp, path)


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


def load_trained_model(record: RunRecord) -> keras.Model:
    """The final model of a finished run (for predictions: confusion matrix, mistakes)."""
    exp = get_experiment(record.experiment)
    if record.variant:
        raise ValueError(f"{record.run_dir}: a variant run; rebuild it from its experiment's vary(...)")
    weights = Path(record.run_dir) / WEIGHTS_FILE
    model = build_model(exp, seed=record.seed)
    try:
        model.load_weights(weights)
    except (OSError, ValueError, KeyError) as error:
        raise RunError(f"{weights}: cannot load the run's final weights ({error})") from error
    return model
