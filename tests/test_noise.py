"""The verdict rules are calibrated: on simulated runs with no true difference each rule
calls a difference real at most 5 % of the time, for 1, 2, 3 and 5 seeds, and it finds a
real one. Runs are simulated as the course measures them: a seed-to-seed spread on top of
the binomial noise of a 10,000-image test set."""

import math

import numpy as np
import pytest

from cifar_utils import noise
from cifar_utils.beyond import FACTORIAL
from cifar_utils.claims import (
    CONTRADICTED,
    NOISE,
    SUPPORTED,
    TOO_SHORT,
    Best,
    Difference,
    Effect,
    OnlyTogether,
    evaluate,
)
from tests.factories import make_record, make_runs

TEST_IMAGES = 10_000
TRIALS = 1_500
# Monte Carlo slack: the standard error of a 5 % rate over TRIALS is 0.56 points.
ALLOWED = noise.LEVEL + 2 * np.sqrt(noise.LEVEL * (1 - noise.LEVEL) / TRIALS)


def simulated(rng, experiment, true_acc, seeds, seed_sd):
    """``seeds`` runs: each model's accuracy drawn around ``true_acc``, then measured on the test set."""
    models = np.clip(true_acc + rng.normal(0, seed_sd, seeds), 1, 99)
    measured = 100 * rng.binomial(TEST_IMAGES, models / 100) / TEST_IMAGES
    return make_runs(experiment, measured, test_size=TEST_IMAGES)


def rate(verdicts, *kinds):
    return float(np.mean([v in kinds for v in verdicts]))


@pytest.mark.slow
@pytest.mark.parametrize("seeds", [1, 2, 3, 5])
@pytest.mark.parametrize("seed_sd", [0.2, 1.0])
def test_difference_rule_false_positive_rate_is_at_most_5_percent(seeds, seed_sd):
    rng = np.random.default_rng(seeds * 10 + int(seed_sd * 10))
    verdicts = [evaluate(Difference(1, 2), simulated(rng, 1, 70, seeds, seed_sd) +
                         simulated(rng, 2, 70, seeds, seed_sd))[0] for _ in range(TRIALS)]
    assert rate(verdicts, SUPPORTED, CONTRADICTED) <= ALLOWED


def test_mixed_seed_counts_use_the_measured_spread():
    rng = np.random.default_rng(7)
    verdicts = [evaluate(Difference(1, 2), simulated(rng, 1, 70, 1, 1.0) + simulated(rng, 2, 70, 3, 1.0))[0]
                for _ in range(TRIALS)]
    assert rate(verdicts, SUPPORTED, CONTRADICTED) <= ALLOWED
    # a side of 3 with a 2.5-point spread widens the noise of a 1-vs-3 comparison beyond the assumed 1 point
    wide = evaluate(Difference(1, 2), make_runs(1, [70.0]) + make_runs(2, [71.0, 73.5, 76.0]))
    assert wide[0] == NOISE and "pooled" in wide[1]


@pytest.mark.parametrize("seeds, effect", [(1, 6.0), (3, 3.0), (5, 2.0)])
def test_difference_rule_finds_a_real_effect(seeds, effect):
    rng = np.random.default_rng(3)
    verdicts = [evaluate(Difference(1, 2), simulated(rng, 1, 70, seeds, 0.5) +
                         simulated(rng, 2, 70 + effect, seeds, 0.5))[0] for _ in range(300)]
    assert rate(verdicts, SUPPORTED) >= 0.8
    assert rate(verdicts, CONTRADICTED) == 0


@pytest.mark.slow
@pytest.mark.parametrize("seeds", [1, 3])
def test_no_change_rule_false_positive_rate(seeds):
    """expect=0: "supported" needs the difference shown within +-2 points; a real 2.5-point
    change must not be called "no difference" more than 5 % of the time."""
    rng = np.random.default_rng(11)
    verdicts = [evaluate(Difference(1, 2, expect=0), simulated(rng, 1, 70, seeds, 0.5) +
                         simulated(rng, 2, 72.5, seeds, 0.5))[0] for _ in range(TRIALS)]
    assert rate(verdicts, SUPPORTED) <= ALLOWED


def test_best_rule_false_positive_rate():
    rng = np.random.default_rng(5)
    among = tuple(range(7, 15))
    verdicts = [evaluate(Best(9, among), [r for n in among for r in simulated(rng, n, 75, 2, 0.5)])[0]
                for _ in range(500)]
    assert rate(verdicts, SUPPORTED, CONTRADICTED) <= noise.LEVEL + 0.02


def factorial_runs(rng, seeds, means=None):
    means = means or {}
    return [r for levels, n in FACTORIAL.items() for r in simulated(rng, n, means.get(levels, 70.0), seeds, 0.5)]


@pytest.mark.slow
@pytest.mark.parametrize("seeds", [1, 2, 3, 5])
@pytest.mark.parametrize("test", [OnlyTogether("he_init", "batch_norm"), Effect("dropout")],
                         ids=["bn_he_together", "dropout_main"])
def test_factorial_claims_false_positive_rate(seeds, test):
    rng = np.random.default_rng(seeds)
    verdicts = [evaluate(test, factorial_runs(rng, seeds))[0] for _ in range(500)]
    assert rate(verdicts, SUPPORTED, CONTRADICTED) <= noise.LEVEL + 0.02


def test_only_together_tests_what_it_says():
    """He +3 with batch norm and +3 without: a positive main effect, no interaction: not "only together"."""
    rng = np.random.default_rng(2)
    both = {(d, b, 1): 73.0 for d in (0, 1) for b in (0, 1)}
    verdicts = [evaluate(OnlyTogether("he_init", "batch_norm"), factorial_runs(rng, 3, both))[0] for _ in range(100)]
    assert rate(verdicts, SUPPORTED) == 0 and rate(verdicts, CONTRADICTED) >= 0.8
    only_with_bn = {(d, 1, 1): 74.0 for d in (0, 1)}
    verdicts = [evaluate(OnlyTogether("he_init", "batch_norm"), factorial_runs(rng, 3, only_with_bn))[0]
                for _ in range(100)]
    assert rate(verdicts, SUPPORTED) >= 0.8


def test_no_verdict_on_runs_that_cannot_carry_one():
    chance = make_runs(1, [12.0]) + make_runs(2, [30.0])
    assert evaluate(Difference(1, 2), chance) == (TOO_SHORT, "exp 1 is at 12.0 %, within 5 points of chance (10 %)")
    few_images = make_runs(1, [40.0], test_size=100) + make_runs(2, [60.0], test_size=100)
    verdict, why = evaluate(Difference(1, 2), few_images)
    assert verdict == TOO_SHORT and "100 test images" in why
    two_epochs = make_runs(1, [40.0], epochs=2) + make_runs(2, [60.0], epochs=2)
    assert evaluate(Difference(1, 2), two_epochs)[1] == "exp 1 ran with 2 epochs (at least 5 are needed)"
    few_steps = make_runs(1, [40.0], train_size=500, epochs=10) + make_runs(2, [60.0], train_size=500, epochs=10)
    assert "10 training steps" in evaluate(Difference(1, 2), few_steps)[1]
    diverged = make_runs(1, [40.0]) + [make_record(2, float("nan"), status="diverged")]
    assert evaluate(Difference(1, 2), diverged) == (TOO_SHORT, "exp 2 seed 0 diverged")


def test_duplicated_runs_count_once():
    """The same run twice is one seed: no "±0.00" spread from a copy."""
    twice = make_runs(1, [70.0]) * 2 + make_runs(2, [70.4]) * 2
    verdict, evidence = evaluate(Difference(1, 2), twice)
    assert "1/1 seeds" in evidence and verdict == NOISE


def test_noise_floor_is_never_below_the_test_set():
    """Two seeds that agree by chance (75.00/75.01 against 75.20/75.21) are no evidence for +0.2."""
    runs = make_runs(1, [75.00, 75.01]) + make_runs(2, [75.20, 75.21])
    verdict, evidence = evaluate(Difference(1, 2), runs)
    assert verdict == NOISE
    binomial = np.sqrt(2 * 0.752 * 0.248 / TEST_IMAGES) * 100
    threshold = float(evidence.split("noise ±")[1].split(" ")[0])
    assert threshold >= 1.96 * binomial  # at least the test set's own 5 % threshold


def test_single_seed_sides_use_the_spread_measured_at_the_same_settings():
    """One seed a side, but other experiments ran with several seeds here: their pooled
    spread stands in, so a spread larger than the assumed 1 point is not ignored."""
    context = make_runs(6, [50.0, 54.0, 46.0]) + make_runs(7, [44.0, 47.0])  # pooled variance (32 + 4.5) / 3
    verdict, evidence = evaluate(Difference(1, 2), make_runs(1, [50.0]) + make_runs(2, [56.0]), context)
    assert verdict == NOISE and "spread measured over 2 experiments with several seeds here (3 df)" in evidence
    assert evaluate(Difference(1, 2), make_runs(1, [50.0]) + make_runs(2, [56.0]))[0] == SUPPORTED  # 1 point assumed


@pytest.mark.slow
@pytest.mark.parametrize("seed_sd", [1.0, 2.6])
def test_single_seed_rule_with_a_measured_setting_is_calibrated(seed_sd):
    """2.6 points: the seed spread measured at the laptop profile, above the assumed 1 point."""
    rng = np.random.default_rng(int(seed_sd * 10))
    verdicts = []
    for _ in range(TRIALS):
        context = [r for n in range(6, 14) for r in simulated(rng, n, 50, 2, seed_sd)]
        runs = simulated(rng, 1, 50, 1, seed_sd) + simulated(rng, 2, 50, 1, seed_sd)
        verdicts.append(evaluate(Difference(1, 2), runs, context)[0])
    assert rate(verdicts, SUPPORTED, CONTRADICTED) <= ALLOWED


def test_smallest_resolved_difference_is_z_standard_errors_of_the_rule_and_floored_by_the_test_set():
    from scipy import stats

    d, accuracy, images = 0.6, 88.0, 10_000
    sides = [noise.Side((accuracy - d, accuracy, accuracy + d), noise.binomial_var(accuracy, images))] * 2
    se = noise.difference_noise(*sides).se  # three seeds a side, sample sd d
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    assert noise.smallest_resolved(3, d, accuracy, images) == pytest.approx(z * se)
    floor = z * math.sqrt(2 * noise.binomial_var(accuracy, images))
    assert noise.smallest_resolved(10_000, d, accuracy, images) == pytest.approx(floor, rel=1e-3)
    assert noise.smallest_resolved(1, d, accuracy, images) > noise.smallest_resolved(5, d, accuracy, images) > floor


def test_a_verdict_on_shorter_runs_than_the_studys_says_how_long_they_were():
    # The CPU reference trains 30 of the study's 300 epochs; augmentation, for one, pays late.
    claim = Difference(15, 17)
    short = [make_record(15, 78.8, epochs=30), make_record(17, 76.0, epochs=30)]
    full = [make_record(15, 80.1, epochs=300), make_record(17, 89.0, epochs=300)]
    assert evaluate(claim, short, make_runs(3, [60.0, 60.5, 61.0]))[1].endswith("at 30 of the study's 300 epochs")
    assert "of the study's" not in evaluate(claim, full, make_runs(3, [60.0, 60.5, 61.0]))[1]
