"""What names a run: every parameter that changes its result, decided before anything trains.

``plan_run`` turns an experiment, its data and the run's settings into a ``RunPlan``: the
split it trains and is judged on, its model inputs at the experiment's pixel scale (made
when first used: naming a run copies no images), and the run's folder,
``<experiment key>-seed<seed>-<hash of the parameters>``. Two runs with the same
parameters share a folder, so a finished run is found again (``find_finished``) instead of
retrained; speed settings change no result, so they name nothing, except bfloat16
``precision`` (another computation), which joins the parameters when it is on. The settings
that name a run beside its experiment, data and seed travel together as a ``RunSettings``
(``settings``). The names
are a contract with every finished run on disk (tests/test_run_identity.py pins them).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np

from ..errors import RunError
from ..experiments import Experiment, Recipe, get_experiment
from ..parameters import check_seed
from .folder import DEFAULT_OUT_DIR, RECORD_FILE
from .record import RunRecord
from .settings import DEFAULT_SETTINGS, RunSettings, check_override
from .splits import fewer_images, train_eval_indices, validation_split

# Recipe fields added after runs were first named, with their defaults: left out of a run's
# identity at their default, so every run named before a field existed keeps its folder.
LATER_RECIPE_FIELDS = {"train_images": 0}


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


def recipe_identity(recipe: Recipe) -> dict:
    """The recipe as a run's identity holds it (``LATER_RECIPE_FIELDS`` at their default left out)."""
    return {k: v for k, v in asdict(recipe).items() if LATER_RECIPE_FIELDS.get(k, object()) != v}


def effective_recipe(exp: Experiment, epochs: int | None = None, batch_size: int | None = None) -> Recipe:
    """The experiment's recipe with the run's overrides (``--quick`` trains 2 epochs)."""
    epochs, batch_size = check_override("epochs", epochs), check_override("batch_size", batch_size)
    return replace(exp.recipe, epochs=int(epochs or exp.recipe.epochs),
                   batch_size=int(batch_size or exp.recipe.batch_size))


def evaluation_epochs(epochs: int, every: int = 1) -> list[int]:
    """The 1-based epochs after which the evaluation set is evaluated: the first, every
    ``every``-th and the last (the first fixes the history file's columns)."""
    return sorted({1, epochs, *range(every, epochs + 1, every)})


def params_hash(params: dict) -> str:
    """The last part of a run folder's name (``reference.run_identity`` reads it back)."""
    return hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:8]


@dataclass
class RunPlan:
    """Everything a run needs, decided before anything is trained. Its arrays are made from
    ``data`` when first used, so a plan that only names a run (``find_finished``, a
    chapter's cost line) neither rescales nor copies the images (0.6 GB on the full set)."""

    experiment: Experiment
    recipe: Recipe
    seed: int
    params: dict
    run_dir: Path
    source: str
    settings: RunSettings  # what named the run beside its experiment, data and seed
    data: object = field(repr=False)
    kept: np.ndarray | None = field(default=None, repr=False)  # training images trained on (None: all)
    held: np.ndarray | None = field(default=None, repr=False)  # held out for validation (None: no split)

    @property
    def eval_every(self) -> int:
        return self.settings.eval_every

    @property
    def precision(self) -> str:
        """The dtype policy the model is built with (``speed.PRECISIONS``)."""
        return self.settings.precision

    @cached_property
    def _scaled(self) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        (x_train, y_train), (x_test, y_test) = self.data
        normalized = getattr(self.data, "normalized", None)
        return ((as_model_input(x_train, self.experiment.normalize, normalized), y_train),
                (as_model_input(x_test, self.experiment.normalize, normalized), y_test))

    @cached_property
    def train(self) -> tuple[np.ndarray, np.ndarray]:
        images, labels = self._scaled[0]
        return (images, labels) if self.kept is None else (images[self.kept], labels[self.kept])

    @cached_property
    def evaluation(self) -> tuple[np.ndarray, np.ndarray]:
        """What val_* measures each epoch: the held-out images, or the test set."""
        images, labels = self._scaled[0]
        return self.test if self.held is None else (images[self.held], labels[self.held])

    @property
    def test(self) -> tuple[np.ndarray, np.ndarray]:
        return self._scaled[1]

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
             settings: RunSettings = DEFAULT_SETTINGS) -> RunPlan:
    """The model inputs, every parameter that changes the result, and the run's folder.
    ``settings`` adds its entries (``RunSettings.identity_entries``): its precision names the
    run only when it is not float32, so no earlier name changes."""
    if not isinstance(settings, RunSettings):
        raise TypeError(f"settings must be a RunSettings, got {settings!r}")
    exp = get_experiment(experiment)
    recipe = effective_recipe(exp, settings.epochs, settings.batch_size)
    seed = check_seed("seed", seed)  # before the run's folder exists: keras.utils.set_random_seed would fail in it
    (_, y_train), (x_test, _) = data
    kept = held = None
    if recipe.validation:
        kept, held = validation_split(y_train, recipe.validation, what=f"experiment {exp.label}")
    if recipe.train_images:
        pool = np.arange(len(y_train)) if kept is None else kept
        kept = pool[fewer_images(y_train[pool], recipe.train_images, exp.label)]
    spec = {"kind": type(exp.spec).__name__, **asdict(exp.spec)}
    params = {
        "experiment": exp.number, "variant": exp.variant, "spec": spec, "normalize": exp.normalize,
        "recipe": recipe_identity(recipe), "epochs": recipe.epochs, "batch_size": recipe.batch_size, "seed": seed,
        **settings.identity_entries(), "train_size": len(y_train) if kept is None else len(kept),
        "validation_size": 0 if held is None else len(held), "test_size": len(x_test),
        "data_fingerprint": data_fingerprint(data),
    }
    params = json.loads(json.dumps(params))  # as it will read back from disk (lists, not tuples)
    run_dir = Path(out_dir) / f"{exp.key}-seed{seed}-{params_hash(params)}"
    return RunPlan(exp, recipe, seed, params, run_dir, getattr(data, "source", "arrays"), settings, data, kept, held)


def find_finished(experiment: int | str | Experiment, data, settings: RunSettings = DEFAULT_SETTINGS,
                  seeds: Sequence[int] = (0,), out_dir: str | os.PathLike = DEFAULT_OUT_DIR) -> list[RunRecord]:
    """The finished, intact runs ``run_experiment`` would reuse for these settings; trains
    nothing and changes nothing (a damaged record is skipped with a warning)."""
    found = []
    for seed in seeds:
        plan = plan_run(experiment, data, seed, out_dir, settings)
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
