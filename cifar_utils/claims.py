"""The study's conclusions, and chapter 6's, as data, each judged against our runs.

A claim compares experiments on one metric, or reads chapter 6's factorial. The rules
that decide a verdict live in ``noise``: the standard error adds the seeds' spread and
the test set's binomial noise, the threshold is a t quantile at the 5 % level (two-sided),
and runs that cannot carry a verdict (near chance, too few epochs or steps, too few test
images, diverged) get "too short to judge" with the reason. Verdicts: "supported",
"not separable from noise", "contradicted", "too short to judge", or "not run" when an
experiment has no record.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from . import noise
from .experiments import STUDY_RECIPE, get_experiment
from .results import by_experiment, setting_spread, side
from .runs.record import RunRecord

SUPPORTED, NOISE, CONTRADICTED, NOT_RUN = "supported", "not separable from noise", "contradicted", "not run"
TOO_SHORT = "too short to judge"
VERDICTS = (SUPPORTED, NOISE, CONTRADICTED, TOO_SHORT, NOT_RUN)
METRIC_NAMES = {"test_acc": "test accuracy", "gap": "train-test gap (final model, inference mode)"}
_READ = {"supported": SUPPORTED, "contradicted": CONTRADICTED, "noise": NOISE}


@dataclass(frozen=True)
class Difference:
    """``after`` minus ``before`` on ``metric``; ``expect`` +1 (rises), -1 (falls), 0 (no
    change: within ``noise.EQUIVALENCE_MARGIN``, shown by two one-sided tests)."""

    before: int
    after: int
    metric: str = "test_acc"
    expect: int = 1


@dataclass(frozen=True)
class Best:
    """``winner`` has the highest mean test accuracy among ``among``."""

    winner: int
    among: tuple[int, ...]


@dataclass(frozen=True)
class Effect:
    """The factorial's main effect ``factor`` is the largest of the three (in size)."""

    factor: str


@dataclass(frozen=True)
class OnlyTogether:
    """``factor`` helps only when ``partner`` is on: its simple effect with ``partner`` is
    positive, the interaction is positive, and without ``partner`` it does not help."""

    factor: str
    partner: str


@dataclass(frozen=True)
class Claim:
    key: str
    text: str
    test: Difference | Best | Effect | OnlyTogether
    source: str = "study"  # whose conclusion: the study's, or this course's chapter 6


@dataclass(frozen=True)
class Judgement:
    claim: Claim
    verdict: str
    evidence: str


CLAIMS: tuple[Claim, ...] = (
    Claim("normalisation", "Normalising inputs (pixels / 255) raises test accuracy", Difference(1, 2)),
    Claim("dropout_gap", "Dropout removes overfitting (closes the train-test gap)",
          Difference(6, 7, metric="gap", expect=-1)),
    Claim("dropout_acc", "Dropout raises test accuracy", Difference(6, 7)),
    Claim("batch_norm", "Batch norm on top of dropout raises test accuracy", Difference(7, 8)),
    Claim("he_init", "He initialisation on top of dropout + batch norm raises test accuracy", Difference(8, 9)),
    Claim("best_technique", "Batch norm + dropout + He init is the best of the technique models",
          Best(9, tuple(range(7, 15)))),
    Claim("bn_order", "Batch norm before the activation is worse than after it", Difference(9, 10, expect=-1)),
    Claim("bn_alone", "Batch norm alone does not stop overfitting (gap larger than with dropout)",
          Difference(7, 11, metric="gap", expect=1)),
    Claim("depth", "Depth (VGG-like, two convs per block) raises test accuracy", Difference(9, 15)),
    Claim("augment_alone", "Augmentation alone makes no real difference (within ±2 points)",
          Difference(9, 16, expect=0)),
    Claim("augment_depth", "Augmentation plus depth helps", Difference(15, 17)),
    Claim("cnn_beats_dnn", "Even the smallest CNN beats a dense network with 70x its parameters",
          Difference(19, 2), source="chapter 6"),
    Claim("bn_he_together", "He initialisation helps only together with batch norm",
          OnlyTogether("he_init", "batch_norm"), source="chapter 6"),
    Claim("dropout_main", "Dropout is the largest single effect of the three techniques",
          Effect("dropout"), source="chapter 6"),
    Claim("modern_recipe", "The modern recipe beats the study's on the same network (exp 17's)",
          Difference(17, 20), source="chapter 6"),
    Claim("fast_network", "The airbench-style network beats the modern recipe on the VGG-like network",
          Difference(20, 21), source="chapter 6"),
)


def _study_value(number: int, metric: str) -> float:
    study = get_experiment(number).study
    if study is None:
        return float("nan")
    return study.train_acc - study.test_acc if metric == "gap" else getattr(study, metric)


def _noise_text(estimate_noise: noise.Noise) -> str:
    return f"noise ±{estimate_noise.threshold():.2f} at the 5 % level ({estimate_noise.how})"


def _judge_difference(test: Difference, grouped: dict[int, list[RunRecord]],
                      setting: noise.Spread | None) -> tuple[str, str]:
    before, after = side(grouped[test.before], test.metric), side(grouped[test.after], test.metric)
    diff = after.mean - before.mean
    name = METRIC_NAMES.get(test.metric, test.metric)
    if not math.isfinite(diff):
        return TOO_SHORT, f"{name} was not measured for these runs (made before this version)"
    estimate_noise = noise.difference_noise(before, after, setting)
    verdict = _READ[noise.classify(diff, estimate_noise, test.expect)]
    study_diff = _study_value(test.after, test.metric) - _study_value(test.before, test.metric)
    study = "study did not run both" if math.isnan(study_diff) else f"study {study_diff:+.2f}"
    epochs = {r.epochs_completed for n in (test.before, test.after) for r in grouped[n]}
    evidence = (f"{name}: exp {test.before} {before.mean:.2f} → exp {test.after} {after.mean:.2f}, "
                f"{diff:+.2f} points ({study}); {_noise_text(estimate_noise)}")
    if len(epochs) > 1:
        evidence += "; epochs " + " vs ".join(str(grouped[n][0].epochs_completed) for n in (test.before, test.after))
    elif max(epochs) < STUDY_RECIPE.epochs and all(get_experiment(n).study for n in (test.before, test.after)):
        evidence += f"; at {max(epochs)} of the study's {STUDY_RECIPE.epochs} epochs"  # a shorter run, said each time
    if test.expect == 0 and verdict == CONTRADICTED:
        evidence += f"; a real {'increase' if diff > 0 else 'decrease'}, not 'no difference'"
    elif test.expect == 0 and verdict == NOISE:
        evidence += f"; not shown to lie within ±{noise.EQUIVALENCE_MARGIN:g} points either"
    return verdict, evidence


def _judge_best(test: Best, grouped: dict[int, list[RunRecord]], setting: noise.Spread | None) -> tuple[str, str]:
    """The winner must beat its best rival beyond noise; it is contradicted when some rival
    beats it beyond a threshold corrected for the number of rivals (Bonferroni)."""
    sides = {n: side(grouped[n], "test_acc") for n in test.among}
    ranked = sorted(sides, key=lambda n: sides[n].mean, reverse=True)
    winner = sides[test.winner]
    rival = ranked[1] if ranked[0] == test.winner else ranked[0]
    margin = winner.mean - sides[rival].mean
    estimate_noise = noise.difference_noise(sides[rival], winner, setting)
    rivals = len(test.among) - 1
    if margin > estimate_noise.threshold(noise.LEVEL / 2, sides=1):
        verdict = SUPPORTED
    elif -margin > estimate_noise.threshold(noise.LEVEL / 2 / rivals, sides=1):
        verdict = CONTRADICTED
    else:
        verdict = NOISE
    evidence = (f"exp {test.winner} {winner.mean:.2f} vs best rival exp {rival} {sides[rival].mean:.2f}: "
                f"{margin:+.2f} points; {_noise_text(estimate_noise)}; ranking {', '.join(map(str, ranked))}")
    return verdict, evidence


def _judge_factorial(test: Effect | OnlyTogether, records: list[RunRecord], variant: str) -> tuple[str, str]:
    from .beyond import factorial_cells, judge_largest, judge_only_together

    cells = factorial_cells(records, variant)
    if isinstance(test, Effect):
        return judge_largest(cells, test.factor)
    return judge_only_together(cells, test.factor, test.partner)


def _needed(test) -> list[int]:
    if isinstance(test, Effect | OnlyTogether):
        from .beyond import FACTORIAL

        return list(FACTORIAL.values())
    return [test.before, test.after] if isinstance(test, Difference) else list(test.among)


def evaluate(test: Difference | Best | Effect | OnlyTogether, records: Iterable[RunRecord],
             context: Iterable[RunRecord] | None = None, variant: str = "") -> tuple[str, str]:
    """(verdict, evidence) for one comparison of experiments or one factorial claim.
    ``context``: runs of the same settings whose seed spread may stand in for a side with
    one seed (default: ``records`` themselves; ``noise.seed_spread``). ``variant``: the
    setting judged (``results.by_experiment``), the registry's own by default."""
    records = list(records)
    grouped = by_experiment(records, variant)
    needed = _needed(test)
    missing = [n for n in needed if not grouped.get(n)]
    if missing:
        what = "factorial cell(s)" if isinstance(test, Effect | OnlyTogether) else "experiment(s)"
        return NOT_RUN, f"no runs of {what} {', '.join(map(str, missing))}"
    problem = noise.carry_problem({f"exp {n}": grouped[n] for n in needed})
    if problem:
        return TOO_SHORT, problem
    if isinstance(test, Effect | OnlyTogether):
        return _judge_factorial(test, [r for n in needed for r in grouped[n]], variant)
    metric = test.metric if isinstance(test, Difference) else "test_acc"
    # The spread of this setting's runs only: a sweep point or the small setting has its own.
    setting = setting_spread([r for r in [*records, *(context or [])] if r.variant == variant], metric)
    if isinstance(test, Difference):
        return _judge_difference(test, grouped, setting)
    return _judge_best(test, grouped, setting)


def judge(claim: Claim, records: Iterable[RunRecord], context: Iterable[RunRecord] | None = None,
          variant: str = "") -> Judgement:
    return Judgement(claim, *evaluate(claim.test, records, context, variant))


def judge_all(records: Iterable[RunRecord], claims: Iterable[Claim] = CLAIMS,
              factorial_variant: str = "") -> list[Judgement]:
    """Every claim; the factorial's at ``factorial_variant`` (chapter 6's small setting)."""
    records = list(records)
    return [judge(claim, records, variant=factorial_variant if isinstance(claim.test, Effect | OnlyTogether) else "")
            for claim in claims]


def get_claim(key: str) -> Claim:
    for claim in CLAIMS:
        if claim.key == key:
            return claim
    raise KeyError(f"unknown claim {key!r}; known: {', '.join(c.key for c in CLAIMS)}")
