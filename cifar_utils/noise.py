"""How large a difference must be before a verdict calls it real: every rule in one place.

A measured test accuracy varies for two reasons: training randomness (another seed gives
another model) and the finite test set (another 10,000 images would score differently).
Each comparison's standard error adds both:

- **seeds**: the sample variance over seeds, each side's over its own count (Welch); with
  one seed on a side, one variance stands for both: the setting's, pooled over every
  experiment that ran with several seeds at the same settings (chapter 6's factorial
  cells, ``Spread``), or the sides' own; only when nothing was measured is
  ``SINGLE_SEED_SD`` assumed per run (a stated assumption, shown in the verdict). Seed
  spreads grow as runs get shorter (2.6 points at the laptop profile, against 0.1-0.5 for
  full-length runs), so a constant would misjudge one of them;
- **the test set**: the binomial variance p(1 - p) / N of each side's accuracy on its N
  test images, so the floor never falls below what the test set can resolve (on 100 test
  images one image is one point). Every seed is scored on the same images, so averaging
  seeds does not shrink this part. Treating the two sides' test noise as independent
  overstates it (both models see the same images), which only makes the rule stricter.

The threshold is a quantile of Student's t (``LEVEL`` two-sided) with Satterthwaite's
degrees of freedom (the measured seed variances carry the uncertainty, the binomial part is
known), never fewer than the smallest side's n - 1, or the normal quantile when nothing was
measured. With 2 seeds per side and no test-set noise that is t = 12.7 (1 df), not 2:
"two standard errors" fired 18 % of the time on equal-mean pairs. ``tests/test_noise.py``
simulates equal-mean runs with 1, 2, 3 and 5 seeds and checks each rule's false-positive
rate is at most 5 %, and that a real effect is found.

Some runs carry no verdict at all (``carry_problem``): a side within ``CHANCE_MARGIN`` of
chance, fewer than ``MIN_EPOCHS`` epochs or ``MIN_STEPS`` optimizer steps, fewer than
``MIN_TEST_IMAGES`` test images, or a diverged run. The verdict then says "too short to
judge" and why.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.05  # two-sided: under no true difference, a "real" call (either way) at most 5 % of the time
# Assumed seed-to-seed standard deviation of one run's test accuracy when no side has two
# seeds: above the spreads measured on full-length CIFAR-10 CNN runs (0.1-0.5 points, e.g.
# airbench94's 0.14 over hundreds of seeds; Picard 2021 for ResNets) and the laptop
# profile's (docs/benchmarks.md), so single-seed verdicts err towards "noise".
SINGLE_SEED_SD = 1.0
CHANCE = 10.0  # percent: ten classes
CHANCE_MARGIN = 5.0  # a model within 5 points of chance has not learnt enough to judge a technique by
MIN_EPOCHS = 5
MIN_STEPS = 500  # optimizer steps: --quick trains 2 (500 images, batch 512, 2 epochs)
MIN_TEST_IMAGES = 1_000  # below this one image is 0.1 points or more and every effect drowns
EQUIVALENCE_MARGIN = 2.0  # points: "no effect" means within +-2 points, shown at the 5 % level (TOST)


@dataclass(frozen=True)
class Side:
    """One side of a comparison: the values over seeds and what the binomial noise needs."""

    values: tuple[float, ...]  # one per seed, in points
    binomial_var: float  # variance of one run's value from the finite test (and train) sets, points^2

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else float("nan")

    @property
    def var(self) -> float:
        return float(np.var(self.values, ddof=1)) if self.n > 1 else float("nan")


def binomial_var(accuracy: float, images: int) -> float:
    """Variance (points^2) of an accuracy in percent measured on ``images`` images."""
    if not images or not math.isfinite(accuracy):
        return float("nan")
    p = min(max(accuracy / 100, 0.0), 1.0)
    return 1e4 * p * (1 - p) / images


@dataclass(frozen=True)
class Noise:
    """The standard error of a difference (or an effect), its degrees of freedom, and how."""

    se: float
    df: float  # math.inf: nothing measured, normal quantile
    how: str

    def critical(self, level: float = LEVEL, sides: int = 2) -> float:
        """The multiplier of ``se`` for a test at ``level`` (two- or one-sided)."""
        q = 1 - level / sides
        return float(stats.norm.ppf(q) if math.isinf(self.df) else stats.t.ppf(q, self.df))

    def threshold(self, level: float = LEVEL, sides: int = 2) -> float:
        return self.critical(level, sides) * self.se


@dataclass(frozen=True)
class Spread:
    """The seed-to-seed variance of one run measured at a setting: pooled over every
    experiment that ran with several seeds (``results.setting_spread``), with its df."""

    var: float
    df: int
    experiments: int


def seed_spread(sides: Sequence[Side], weights: Sequence[float], pool: bool = False,
                setting: Spread | None = None) -> tuple[float, list[tuple[float, int]], str]:
    """Variance of sum(weight_i x mean_i) from the seeds, its parts as (variance, df) for
    Satterthwaite's degrees of freedom, and a phrase.

    The setting's variance (``Spread``: pooled over every experiment with several seeds at
    these settings) when it has more df than the sides' own; else Welch when every side
    has two or more seeds; else, or with ``pool`` (a factorial's cells), the sides' own
    pooled; with nothing measured, ``SINGLE_SEED_SD`` is assumed (no df)."""
    counts = "/".join(str(s.n) for s in sides) if len(sides) <= 3 else \
        f"{min(s.n for s in sides)}-{max(s.n for s in sides)} per cell,"
    per_run = sum(w * w / s.n for s, w in zip(sides, weights, strict=True))
    measured = [s for s in sides if s.n >= 2]
    dof = sum(s.n - 1 for s in measured)
    if not pool and all(s.n >= 2 for s in sides) and (setting is None or setting.df <= dof):
        parts = [(w * w * s.var / s.n, s.n - 1) for s, w in zip(sides, weights, strict=True)]
        return sum(v for v, _ in parts), parts, f"{counts} seeds"
    if setting is not None and setting.df > dof:
        var = setting.var * per_run
        return var, [(var, setting.df)], (f"{counts} seeds, spread measured over {setting.experiments} experiments "
                                          f"with several seeds here ({setting.df} df)")
    if measured:
        pooled = sum((s.n - 1) * s.var for s in measured) / dof
        return pooled * per_run, [(pooled * per_run, dof)], f"{counts} seeds, spread pooled ({dof} df)"
    var = SINGLE_SEED_SD ** 2 * per_run
    return var, [], f"{counts} seeds: seed spread unknown, {SINGLE_SEED_SD:g} point per run assumed"


def contrast_noise(sides: Sequence[Side], weights: Sequence[float], pool: bool = False,
                   setting: Spread | None = None) -> Noise:
    """Noise of sum(weight_i x mean_i): the seeds' spread plus the test sets' binomial noise
    (a known variance: it adds no uncertainty of its own to the degrees of freedom)."""
    seed_var, parts, how = seed_spread(sides, weights, pool, setting)
    test_var = sum(w * w * s.binomial_var for s, w in zip(sides, weights, strict=True))  # seeds share the images
    total = seed_var + test_var
    measured = sum(v * v / d for v, d in parts)
    dof = math.inf if not parts or measured == 0 else max(total * total / measured, min(d for _, d in parts))
    return Noise(math.sqrt(total), dof, how + ", test-set noise included")


def difference_noise(before: Side, after: Side, setting: Spread | None = None) -> Noise:
    """Noise of ``after.mean - before.mean``."""
    return contrast_noise([before, after], [-1.0, 1.0], setting=setting)


def classify(estimate: float, noise: Noise, expect: int, level: float = LEVEL) -> str:
    """"supported" / "contradicted" / "noise" for an expected sign (+1 or -1), two-sided at
    ``level``; for ``expect`` 0 ("no effect"), equivalence within ``EQUIVALENCE_MARGIN``
    (two one-sided tests at ``level``) supports it and a real change either way contradicts it."""
    threshold = noise.threshold(level)
    if expect == 0:
        if abs(estimate) > threshold:
            return "contradicted"
        within = noise.threshold(level, sides=1)
        return "supported" if abs(estimate) + within < EQUIVALENCE_MARGIN else "noise"
    if expect * estimate > threshold:
        return "supported"
    if expect * estimate < -threshold:
        return "contradicted"
    return "noise"


def smallest_resolved(seeds: int, seed_sd: float, accuracy: float, test_images: int, level: float = LEVEL,
                      power: float = 0.8) -> float:
    """The smallest difference (points) between two settings, ``seeds`` runs each, that the
    rule above calls real with probability ``power``: (z for ``level`` + z for ``power``)
    standard errors of ``difference_noise`` (seeds' variance 2 sd^2 / n, both sides' test-set
    variance), normal quantiles, so with few seeds Student's t asks for more. The test set's
    part does not shrink with seeds: it is a floor no number of runs goes below."""
    se = math.sqrt(2 * seed_sd ** 2 / seeds + 2 * binomial_var(accuracy, test_images))
    return float((stats.norm.ppf(1 - level / 2) + stats.norm.ppf(power)) * se)


# --- runs that cannot carry a verdict -----------------------------------------------------

def settings_problem(train_images: int, test_images: int, epochs: int, batch_size: int) -> str | None:
    """Why runs made with these settings cannot carry a verdict (None: they can)."""
    steps = math.ceil(train_images / batch_size) * epochs
    if test_images < MIN_TEST_IMAGES:
        return (f"{test_images:,} test images (one image is {100 / max(test_images, 1):.1f} points; "
                f"at least {MIN_TEST_IMAGES:,} are needed)")
    if epochs < MIN_EPOCHS:
        return f"{epochs} epoch{'s' * (epochs != 1)} (at least {MIN_EPOCHS} are needed)"
    if steps < MIN_STEPS:
        return f"{steps:,} training steps (at least {MIN_STEPS:,} are needed)"
    return None


def carry_problem(runs_by_label: dict[str, Iterable]) -> str | None:
    """Why these runs (``{"exp 6": [records]}``) cannot carry a verdict, naming the run."""
    for label, runs in runs_by_label.items():
        runs = list(runs)
        for run in runs:
            if run.status != "completed" or not math.isfinite(run.test_acc):
                return f"{label} seed {run.seed} diverged"
        for run in runs:
            problem = settings_problem(run.params["train_size"], run.params["test_size"], run.epochs_completed,
                                       run.params["batch_size"])
            if problem:
                return f"{label} ran with {problem}"
        mean = float(np.mean([r.test_acc for r in runs]))
        if mean < CHANCE + CHANCE_MARGIN:
            return f"{label} is at {mean:.1f} %, within {CHANCE_MARGIN:g} points of chance ({CHANCE:g} %)"
    return None
