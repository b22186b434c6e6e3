"""The study's conclusions, and chapter 6's, as data, each judged against our runs.

A claim compares experiments on one metric, or reads one effect of chapter 6's factorial.
The verdict allows for run-to-run noise:
with two or more seeds per side the threshold is two standard errors of the difference;
with a single seed the spread is unknown and the threshold is the study's own caution
(a 1-point difference could be chance). Verdicts: "supported", "not separable from
noise", "contradicted", or "not run" when an experiment has no record.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from .experiments import get_experiment
from .results import by_experiment, mean_std, metric_values
from .training import RunRecord

SINGLE_SEED_NOISE = 1.0  # points; the study's own "a 1-point difference could be chance"
SUPPORTED, NOISE, CONTRADICTED, NOT_RUN = "supported", "not separable from noise", "contradicted", "not run"
METRIC_NAMES = {"test_acc": "test accuracy", "gap": "train-test gap"}


@dataclass(frozen=True)
class Difference:
    """``after`` minus ``before`` on ``metric``; ``expect`` +1 (rises), -1 (falls), 0 (no gain)."""

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
    """The factorial effect ``term`` (e.g. ("batch_norm", "he_init")) is real, with sign ``expect``."""

    term: tuple[str, ...]
    expect: int = 1
    largest_main: bool = False  # and it is the largest of the three main effects


@dataclass(frozen=True)
class Claim:
    key: str
    text: str
    test: Difference | Best | Effect
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
    Claim("augment_alone", "Augmentation alone does not help", Difference(9, 16, expect=0)),
    Claim("augment_depth", "Augmentation plus depth helps", Difference(15, 17)),
    Claim("cnn_beats_dnn", "Even the smallest CNN beats a dense network with 70x its parameters",
          Difference(19, 2), source="chapter 6"),
    Claim("bn_he_together", "He initialisation helps only together with batch norm (a positive interaction)",
          Effect(("batch_norm", "he_init")), source="chapter 6"),
    Claim("dropout_main", "Dropout is the largest single effect of the three techniques",
          Effect(("dropout",), largest_main=True), source="chapter 6"),
    Claim("modern_recipe", "The modern recipe beats the study's on the same network (exp 17's), in a tenth of the "
          "epochs", Difference(17, 20), source="chapter 6"),
    Claim("fast_network", "The airbench-style network beats the modern recipe on the VGG-like network",
          Difference(20, 21), source="chapter 6"),
)


def _stats(runs: list[RunRecord], metric: str) -> tuple[float, float, int]:
    values = metric_values(runs, metric)
    mean, std = mean_std(values)
    return mean, std, len(values)


def _threshold(sides: Iterable[tuple[float, float, int]]) -> tuple[float, str]:
    sides = list(sides)
    if all(n >= 2 for _, _, n in sides):
        se = math.sqrt(sum(std ** 2 / n for _, std, n in sides))
        return 2 * se, f"2 standard errors over {'/'.join(str(n) for _, _, n in sides)} seeds"
    return SINGLE_SEED_NOISE, "single seed: spread unknown, 1-point threshold"


def _study_value(number: int, metric: str) -> float:
    study = get_experiment(number).study
    if study is None:
        return float("nan")
    return study.train_acc - study.test_acc if metric == "gap" else getattr(study, metric)


def _judge_difference(test: Difference, grouped: dict[int, list[RunRecord]]) -> tuple[str, str]:
    before, after = _stats(grouped[test.before], test.metric), _stats(grouped[test.after], test.metric)
    diff = after[0] - before[0]
    threshold, how = _threshold([before, after])
    study_diff = _study_value(test.after, test.metric) - _study_value(test.before, test.metric)
    if test.expect == 0:
        verdict = SUPPORTED if diff <= threshold else CONTRADICTED
    elif test.expect * diff > threshold:
        verdict = SUPPORTED
    elif test.expect * diff < -threshold:
        verdict = CONTRADICTED
    else:
        verdict = NOISE
    name = METRIC_NAMES.get(test.metric, test.metric)
    study = "study did not run both" if math.isnan(study_diff) else f"study {study_diff:+.2f}"
    evidence = (f"{name}: exp {test.before} {before[0]:.2f} → exp {test.after} {after[0]:.2f}, "
                f"{diff:+.2f} points ({study}); noise ±{threshold:.2f} ({how})")
    return verdict, evidence


def _judge_best(test: Best, grouped: dict[int, list[RunRecord]]) -> tuple[str, str]:
    stats = {n: _stats(grouped[n], "test_acc") for n in test.among}
    ranked = sorted(stats, key=lambda n: stats[n][0], reverse=True)
    winner = stats[test.winner]
    rival = ranked[1] if ranked[0] == test.winner else ranked[0]
    margin = winner[0] - stats[rival][0]
    threshold, how = _threshold([winner, stats[rival]])
    if margin > threshold:
        verdict = SUPPORTED
    elif margin < -threshold:
        verdict = CONTRADICTED
    else:
        verdict = NOISE
    evidence = (f"exp {test.winner} {winner[0]:.2f} vs best rival exp {rival} {stats[rival][0]:.2f}: "
                f"{margin:+.2f} points; noise ±{threshold:.2f} ({how}); "
                f"ranking {', '.join(str(n) for n in ranked)}")
    return verdict, evidence


def _judge_effect(test: Effect, records: list[RunRecord]) -> tuple[str, str]:
    from .beyond import factorial_cells, factorial_effects

    effects = factorial_effects(factorial_cells(records)).set_index("effect")
    key = " x ".join(test.term)
    row = effects.loc[key]
    if not math.isfinite(row["se"]):
        return NOISE, f"effect {row['estimate']:+.2f} points; one seed per cell, so its spread is unknown"
    verdict = NOISE if not row["real"] else SUPPORTED if test.expect * row["estimate"] > 0 else CONTRADICTED
    evidence = (f"effect {row['estimate']:+.2f} ± {row['se']:.2f} points (real beyond ±{2 * row['se']:.2f}, "
                f"{row['seeds per cell']} seeds per cell)")
    if test.largest_main:
        mains = effects[effects["order"] == 1].drop(key)
        rival = mains["estimate"].abs().idxmax()
        margin = abs(row["estimate"]) - abs(mains.loc[rival, "estimate"])
        threshold = 2 * math.sqrt(2) * row["se"]  # two effects of one design: independent, equal SE
        evidence += f"; next largest main effect: {rival} {mains.loc[rival, 'estimate']:+.2f}"
        if margin < -threshold:
            verdict = CONTRADICTED
        elif margin <= threshold and verdict == SUPPORTED:
            verdict = NOISE
    return verdict, evidence


def evaluate(test: Difference | Best | Effect, records: Iterable[RunRecord]) -> tuple[str, str]:
    """(verdict, evidence) for one comparison of experiments or one factorial effect."""
    records = list(records)
    grouped = by_experiment(records)
    if isinstance(test, Effect):
        from .beyond import FACTORIAL

        missing = [n for n in FACTORIAL.values() if not grouped.get(n)]
        if missing:
            return NOT_RUN, f"no runs of factorial cell(s) {', '.join(map(str, missing))}"
        return _judge_effect(test, records)
    needed = (test.before, test.after) if isinstance(test, Difference) else test.among
    missing = [n for n in needed if not grouped.get(n)]
    if missing:
        return NOT_RUN, f"no runs of experiment(s) {', '.join(map(str, missing))}"
    return _judge_difference(test, grouped) if isinstance(test, Difference) else _judge_best(test, grouped)


def judge(claim: Claim, records: Iterable[RunRecord]) -> Judgement:
    return Judgement(claim, *evaluate(claim.test, records))


def judge_all(records: Iterable[RunRecord], claims: Iterable[Claim] = CLAIMS) -> list[Judgement]:
    records = list(records)
    return [judge(claim, records) for claim in claims]


def get_claim(key: str) -> Claim:
    for claim in CLAIMS:
        if claim.key == key:
            return claim
    raise KeyError(f"unknown claim {key!r}; known: {', '.join(c.key for c in CLAIMS)}")
