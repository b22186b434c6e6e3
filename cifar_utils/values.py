"""What counts as a whole number and as a number, for the experiments' registry and the
notebooks' parameters alike (YAML's ``true`` is not 1, NaN is not a learning rate)."""

from __future__ import annotations

import math
import numbers


def is_whole(value) -> bool:
    """An integer that is not a bool (YAML's ``true`` must not pass as 1)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value) -> bool:
    """A finite real number that is not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
