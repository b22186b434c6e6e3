"""The settings that name a run, beside its experiment, its data and its seed: one type.

A run's folder is a hash of every parameter that changes its result (``identity.plan_run``).
Beside the experiment, the data and the seed, exactly four of the settings a run is given do:
its ``epochs`` and ``batch_size`` overrides, how often it is evaluated (``eval_every``) and
its ``precision``. ``RunSettings`` holds those four, checked once, so every caller (a
notebook's chapter, the summary, the pool's and the cluster's tasks) names a run the same
way; everything else a run is given (the speed levers but ``precision``, ``log_every``,
``out_dir``, a run token) changes only how fast it goes or how it is shown, and names nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..speed import PRECISIONS, Speed


def check_override(name: str, value) -> int | None:
    """An epochs or batch-size override: a positive integer, or None for the recipe's."""
    if value is not None and (not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1):
        raise ValueError(f"{name} must be a positive integer or None (the recipe's), got {value!r}")
    return None if value is None else int(value)


@dataclass(frozen=True)
class RunSettings:
    """Exactly the settings, beside the experiment, its data and the seed, that name a run.

    ``epochs``, ``batch_size``: overrides of the experiment's recipe (None: the recipe's).
    ``eval_every``: evaluate after every that many epochs (and the first and last); fewer
    points change "best accuracy", so it names the run.
    ``precision``: the Keras dtype policy (``speed.PRECISIONS``); bfloat16 is another
    computation, so it names the run when it is not float32 (no earlier name changes).
    The other speed levers, ``log_every``, ``out_dir`` and a run token are not here: they
    change how fast a run goes or how it is shown, never its result.
    """

    epochs: int | None = None
    batch_size: int | None = None
    eval_every: int = 1
    precision: str = "float32"

    def __post_init__(self):
        object.__setattr__(self, "epochs", check_override("epochs", self.epochs))
        object.__setattr__(self, "batch_size", check_override("batch_size", self.batch_size))
        if not isinstance(self.eval_every, int) or isinstance(self.eval_every, bool) or self.eval_every < 1:
            raise ValueError(f"eval_every must be a positive integer, got {self.eval_every!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")

    @classmethod
    def from_speed(cls, speed: Speed | Mapping | None = None, epochs: int | None = None,
                   batch_size: int | None = None, eval_every: int = 1) -> RunSettings:
        """A run's settings from what ``run_experiment`` is given: of ``speed`` (a ``Speed``,
        a dict of its fields or None), only its ``precision`` names the run."""
        return cls(epochs, batch_size, eval_every, Speed.coerce(speed).precision)

    def identity_entries(self) -> dict:
        """What ``plan_run`` adds to a run's parameters from these settings (the effective
        epochs and batch size come from the recipe): ``eval_every``, and ``precision`` only
        when it is not float32, so a float32 run's parameters gain no key."""
        entries: dict = {"eval_every": self.eval_every}
        if self.precision != "float32":
            entries["precision"] = self.precision
        return entries


DEFAULT_SETTINGS = RunSettings()  # the recipe's epochs and batch size, evaluated each epoch, float32
