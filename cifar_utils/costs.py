"""What a run costs on a CPU: the measured cost table, and a run's estimate from it.

``bench/cost_table.py`` measured every experiment one at a time (3 epochs on a stratified
10,000-image subset, the test set evaluated every epoch, each recipe's own batch size),
projected a full-data epoch from the training and evaluation times apart, and timed what
follows the last epoch (the final test prediction with the recipe's test-time views, the
final model on 2,000 training images, batch-norm statistics re-estimated). The figures
are the machine's in ``MEASURED_ON`` (raw output: docs/cost_table.json). They are planning
figures good to about a factor of 2: on that machine, with nothing else running, the speed
of the same work varied up to 2x from minute to minute (experiments 8 and 9, one network
with two initialisers, measured 72 and 39 s an epoch), and CPUs differ by up to ~5x.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .runs.settings import RunSettings

MEASURED_ON = "2 cores of an AMD EPYC, TensorFlow 2.21.0, float32, 2026-12-01"
FULL_TRAIN = 50_000
SAMPLE_TRAIN = 2_000  # the bundled sample's training images

# Seconds per epoch on the full training set (the test set evaluated), per experiment.
CPU_EPOCH_SECONDS: dict[int, float] = {
    1: 15.1, 2: 19.4, 3: 18.2, 4: 18.1, 5: 31.9, 6: 19.4, 7: 39.4, 8: 72.2, 9: 39.2, 10: 60.3,
    11: 41.9, 12: 30.3, 13: 20.6, 14: 30.3, 15: 86.6, 16: 37.9, 17: 76.0, 18: 40.3, 19: 4.1,
    20: 82.3, 21: 193.5,
}
# Seconds after the last epoch (final prediction, train-eval, BN re-estimation).
CPU_AFTER_SECONDS: dict[int, float] = {
    1: 1.4, 2: 2.0, 3: 3.5, 4: 2.7, 5: 4.7, 6: 3.2, 7: 2.9, 8: 11.9, 9: 11.5, 10: 9.4, 11: 10.1,
    12: 2.6, 13: 2.4, 14: 3.1, 15: 23.8, 16: 9.6, 17: 21.1, 18: 12.0, 19: 1.8, 20: 29.2, 21: 310.7,
}


class Task(Protocol):
    experiment: int
    data_source: str | None
    subset: int | None
    settings: RunSettings

    def experiment_object(self): ...


def priced_as(experiment) -> int:
    """The measured experiment whose figures price ``experiment``: its own; for a registry
    line not measured yet, the first measured one with the same network, else the costliest
    measured one with a network of the same kind (an upper estimate until
    ``bench/cost_table.py`` measures it)."""
    if experiment.number in CPU_EPOCH_SECONDS:
        return experiment.number
    from . import experiments

    measured = [e for e in experiments.EXPERIMENTS if e.number in CPU_EPOCH_SECONDS]
    same = [e.number for e in measured if e.spec == experiment.spec]
    kind = [e.number for e in measured if type(e.spec) is type(experiment.spec)] or list(CPU_EPOCH_SECONDS)
    return same[0] if same else max(kind, key=CPU_EPOCH_SECONDS.__getitem__)


def cpu_seconds(experiment, epochs: int | None, images: int) -> float:
    """About how long one run of ``experiment`` (an ``Experiment``) takes on the measured
    CPU: ``epochs`` (None: its recipe's) times the full-data epoch scaled to ``images``
    training images, plus what follows the last epoch (``priced_as``: whose figures)."""
    number = priced_as(experiment)
    per_epoch = CPU_EPOCH_SECONDS[number] * min(images, FULL_TRAIN) / FULL_TRAIN
    return (epochs or experiment.recipe.epochs) * per_epoch + CPU_AFTER_SECONDS[number]


def cpu_run_seconds(task: Task) -> float:
    """``cpu_seconds`` of a ``runs.pool.RunTask``."""
    images = task.subset or (SAMPLE_TRAIN if task.data_source == "sample" else FULL_TRAIN)
    exp = task.experiment_object()
    return cpu_seconds(exp, task.settings.epochs, min(images, exp.recipe.train_images or images))


def duration(seconds: float) -> str:
    """'about 40 seconds', 'about 12 minutes', 'about 3.5 hours'."""
    if seconds < 90:
        return f"about {seconds:.0f} seconds"
    if seconds < 5400:
        return f"about {seconds / 60:.0f} minutes"
    return f"about {seconds / 3600:.1f} hours"
