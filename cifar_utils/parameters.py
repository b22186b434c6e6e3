"""The chapter notebooks' parameters, checked once for ``./run_all.sh`` and the notebooks.

Papermill injects them as YAML (ints, lists, bools, None) and a reader edits them by
hand; either way a value of the wrong type or out of range is refused here, naming the
parameter and the value, before data is loaded, a folder is made or anything trains.
Without it ``seeds=0`` ended in a raw ``TypeError``, ``train="False"`` trained, and a seed
past NumPy's range failed every run after the first cells had run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence

from .errors import ParameterError
from .experiments import get_experiment
from .profiles import PROFILES
from .speed import Speed
from .values import is_number, is_whole

# The seeds every backend takes: ``keras.utils.set_random_seed`` seeds NumPy's global state
# (below 2**32), JAX keeps a seed generator's state as uint32, PyTorch as int32.
MAX_SEED = 2**31 - 1
MIN_SUBSET = 20  # a stratified subset draws from every class for training and test: two a class


def _kind(value) -> str:
    return type(value).__name__


def _list(name: str, value, example: str) -> list:
    """A non-empty list (or tuple, range): a string or a single number is not one."""
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence | range):
        raise ParameterError(name, value, f"must be a list, e.g. {example}, not {_kind(value)}")
    if not value:
        raise ParameterError(name, value, f"is empty, so nothing would run: give at least one value, e.g. {example}")
    return list(value)


def _distinct(name: str, value, items: list) -> list:
    repeated = next((v for i, v in enumerate(items) if v in items[:i]), None)
    if repeated is not None:
        raise ParameterError(name, value, f"{name} must be distinct: {repeated!r} is repeated")
    return items


def check_seed(name: str, seed, value=None) -> int:
    """A whole seed from 0 to ``MAX_SEED``; ``value``: the list it came from, for the message."""
    value = seed if value is None else value
    if not is_whole(seed):
        raise ParameterError(name, value, f"seed {seed!r} is not a whole number")
    if not 0 <= seed <= MAX_SEED:
        raise ParameterError(name, value, f"seed {seed} is outside 0..{MAX_SEED}, the range every Keras "
                                          "backend takes (NumPy's global seed, JAX uint32, PyTorch int32)")
    return int(seed)


def check_seeds(name: str, value) -> list[int]:
    """A non-empty list of distinct seeds (``check_seed``)."""
    seeds = [check_seed(name, seed, value) for seed in _list(name, value, "[0, 1, 2]")]
    return _distinct(name, value, seeds)


def check_count(name: str, value, minimum: int = 1, optional: bool = True) -> int | None:
    """A whole number of at least ``minimum``, or None where ``optional`` (the default's)."""
    if value is None and optional:
        return None
    if not is_whole(value):
        none = " or None" if optional else ""
        raise ParameterError(name, value, f"must be a whole number{none}, not {_kind(value)}")
    if value < minimum:
        raise ParameterError(name, value, f"must be at least {minimum}")
    return int(value)


def check_flag(name: str, value) -> bool:
    """``True`` or ``False`` itself: the string "False" is truthy and would train."""
    if not isinstance(value, bool):
        raise ParameterError(name, value, f"must be True or False, not {_kind(value)}")
    return value


def check_subset(name: str, value) -> int | None:
    if value is not None and is_whole(value) and value < MIN_SUBSET:
        raise ParameterError(name, value, f"need at least {MIN_SUBSET} images (two per class)")
    return check_count(name, value)


def check_path(name: str, value, optional: bool = True):
    if value is None and optional:
        return None
    if not isinstance(value, str | os.PathLike) or not str(value):
        raise ParameterError(name, value, "must be a folder or file path (a non-empty string)"
                                          + (" or None" if optional else ""))
    return value


# What a chapter does with runs (the ``runs`` parameter); any other value is a reference folder's path.
REFERENCE, TRAIN, READ = "reference", "train", "read"
RUNS_MODES = (REFERENCE, TRAIN, READ)


def check_runs(name: str, value) -> str | os.PathLike:
    """One of ``RUNS_MODES`` or the path of a reference folder. A word that is neither a
    mode nor an existing folder is refused as a misspelt mode, not looked up as a path."""
    if isinstance(value, os.PathLike) or (isinstance(value, str) and value in RUNS_MODES):
        return value
    if not isinstance(value, str) or not value:
        raise ParameterError(name, value, f"must be {', '.join(map(repr, RUNS_MODES))} or a reference folder's path")
    if os.sep not in value and "/" not in value and not os.path.isdir(value):
        raise ParameterError(name, value, f"not a mode ({', '.join(map(repr, RUNS_MODES))}) nor a folder here")
    return value


def _text(name: str, value) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ParameterError(name, value, f"must be a string or None, not {_kind(value)}")
    return value


def _profile(name: str, value) -> str | None:
    if value is not None and (not isinstance(value, str) or value not in PROFILES):
        raise ParameterError(name, value, f"unknown profile; choose one of {', '.join(PROFILES)} or None")
    return value


def _experiments(name: str, value) -> list[int] | None:
    if value is None:
        return None
    found = []
    for item in _list(name, value, "[7, 8]"):
        if not (is_whole(item) or isinstance(item, str)):
            raise ParameterError(name, value, f"{item!r} is not an experiment number")
        try:
            found.append(get_experiment(item).number)
        except KeyError as error:
            raise ParameterError(name, value, str(error.args[0])) from None
    return _distinct(name, value, found)


def _speed(name: str, value):
    try:
        return Speed.coerce(value)
    except (TypeError, ValueError) as error:
        raise ParameterError(name, value, str(error)) from None


def _numbers(name: str, value, low: float, high: float | None, example: str) -> list[float] | None:
    """None, or a list of distinct numbers in [low, high) (above ``low`` where ``high`` is None)."""
    if value is None:
        return None
    for item in _list(name, value, example):
        inside = is_number(item) and (item > low if high is None else low <= item < high)
        if not inside:
            where = f"above {low:g}" if high is None else f"in [{low:g}, {high:g})"
            raise ParameterError(name, value, f"{item!r} is not a number {where}")
    return _distinct(name, value, [float(v) for v in value])


def _whole_list(name: str, value) -> list[int] | None:
    if value is None:
        return None
    for item in _list(name, value, "[128, 512]"):
        if not (is_whole(item) and item >= 1):
            raise ParameterError(name, value, f"{item!r} is not a whole number of at least 1")
    return _distinct(name, value, [int(v) for v in value])


def _small_subset(name: str, value) -> int | None:
    """None (the profile's), 0 (the full training set) or at least ten images a class."""
    if value is None:
        return None
    if not is_whole(value) or not (value == 0 or value >= 100):
        raise ParameterError(name, value, "must be None, 0 (every training image) or a whole number of at least "
                                          "100 (ten images a class)")
    return int(value)


def _optional_seeds(name: str, value) -> list[int] | None:
    return None if value is None else check_seeds(name, value)


CHECKS: dict[str, Callable] = {
    "profile": _profile,
    "epochs": check_count,
    "batch_size": check_count,
    "seeds": check_seeds,
    "data_source": check_path,
    "subset": check_subset,
    "out_dir": lambda name, value: check_path(name, value, optional=False),
    "experiments": _experiments,
    "log_every": check_count,
    "eval_every": lambda name, value: check_count(name, value, optional=False),
    "speed": _speed,
    "runs": check_runs,
    "run_token": _text,
    "exercises": check_flag,
    # chapter 6's own (None: the profile's)
    "factorial_seeds": _optional_seeds,
    "modern_seeds": _optional_seeds,
    "fast_seeds": _optional_seeds,
    "grid_epochs": check_count,
    "learning_rates": lambda name, value: _numbers(name, value, 0.0, None, "[1e-3, 3e-3]"),
    "batch_sizes": _whole_list,
    "dropout_rates": lambda name, value: _numbers(name, value, 0.0, 1.0, "[0.0, 0.5]"),
    "small_subset": _small_subset,
}


def check_parameters(values: Mapping) -> dict:
    """Each parameter checked (``ParameterError`` for the first bad one), returned with
    its value normalised: seeds and sizes as Python ints, ``speed`` as a ``Speed``."""
    unknown = sorted(set(values) - set(CHECKS))
    if unknown:
        raise ParameterError(unknown[0], values[unknown[0]], f"not a notebook parameter; known: {', '.join(CHECKS)}")
    return {name: CHECKS[name](name, value) for name, value in values.items()}
