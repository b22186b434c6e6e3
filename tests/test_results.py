"""Tables, verdicts and figures from synthetic run records (no training)."""

import matplotlib

matplotlib.use("Agg")

import math

import numpy as np
import pytest
from scipy import stats

from cifar_utils.claims import CLAIMS, CONTRADICTED, NOISE, NOT_RUN, SUPPORTED, Best, Claim, Difference, judge
from cifar_utils.noise import SINGLE_SEED_SD
from cifar_utils.plots import figure_path, plot_history, plot_study_comparison, plot_test_accuracy_curves, save_figure
from cifar_utils.results import bn_statistics_matter, display_table, results_table, select_records
from tests.factories import make_record, make_runs


def record(experiment, test_acc, seed=0, train_acc=None, epochs=30, batch_size=512, **kwargs):
    """A run of a 30-epoch profile (enough to carry a verdict) on the full test set."""
    return make_record(experiment, test_acc, seed, train_acc=train_acc, epochs=epochs, batch_size=batch_size,
                       **kwargs)


def runs(experiment, accs, **kwargs):
    return [record(experiment, acc, seed=i, **kwargs) for i, acc in enumerate(accs)]


RISE = Claim("x", "rises", Difference(1, 2))
NO_GAIN = Claim("y", "no gain", Difference(1, 2, expect=0))


def binomial(acc, images=10_000):
    return 1e4 * (acc / 100) * (1 - acc / 100) / images


@pytest.mark.parametrize("before, after, verdict", [
    ([70.0, 70.2, 69.8], [75.0, 75.1, 74.9], SUPPORTED),
    ([70.0, 70.2, 69.8], [65.0, 65.1, 64.9], CONTRADICTED),
    ([70.0, 72.0, 68.0], [70.5, 72.5, 68.5], NOISE),  # +0.5 against a 2-point spread
])
def test_difference_verdicts_with_seeds(before, after, verdict):
    judgement = judge(RISE, runs(1, before) + runs(2, after))
    assert judgement.verdict == verdict
    assert "3/3 seeds, test-set noise included" in judgement.evidence


def test_threshold_is_a_t_quantile_of_seed_and_test_set_noise():
    before, after = runs(1, [70.0, 71.0, 72.0]), runs(2, [72.5, 73.5, 74.5])
    seed_var = 2 * 1.0 ** 2 / 3  # sample std 1.0 on each side, 3 seeds
    test_var = binomial(71.0) + binomial(73.5)  # seeds share the test images: not divided by 3
    total = seed_var + test_var
    df = total ** 2 / (2 * (1.0 / 3) ** 2 / 2)  # Satterthwaite: the seed parts carry the uncertainty
    threshold = stats.t.ppf(0.975, df) * math.sqrt(total)
    judgement = judge(RISE, before + after)
    assert f"noise ±{threshold:.2f} at the 5 % level" in judgement.evidence
    assert judgement.verdict == SUPPORTED  # +2.5 > threshold
    assert 2.0 < threshold < 2.5


def test_single_seed_assumes_the_stated_seed_spread():
    threshold = 1.96 * math.sqrt(2 * SINGLE_SEED_SD ** 2 + binomial(70.0) + binomial(72.0))
    assert judge(RISE, runs(1, [70.0]) + runs(2, [72.0])).verdict == NOISE  # +2.0 < 3.04
    assert judge(RISE, runs(1, [70.0]) + runs(2, [73.5])).verdict == SUPPORTED
    evidence = judge(RISE, runs(1, [70.0]) + runs(2, [72.0])).evidence
    assert "seed spread unknown, 1 point per run assumed" in evidence and f"±{threshold:.2f}" in evidence


def test_no_change_claim_needs_equivalence_and_names_the_sign():
    tight = [70.0, 70.1, 69.9, 70.0, 70.1]
    assert judge(NO_GAIN, runs(1, tight) + runs(2, [t - 0.2 for t in tight])).verdict == SUPPORTED
    assert judge(NO_GAIN, runs(1, [70.0]) + runs(2, [70.5])).verdict == NOISE  # one seed: not shown within ±2
    drop = judge(NO_GAIN, runs(1, [70.0]) + runs(2, [60.0]))
    assert drop.verdict == CONTRADICTED and "a real decrease, not 'no difference'" in drop.evidence


def test_gap_metric_and_best_claim():
    gap_claim = Claim("g", "closes gap", Difference(1, 2, metric="gap", expect=-1))
    wide = runs(1, [70.0], train_acc=99.0, train_eval_acc=100.0)
    narrow = runs(2, [72.0], train_acc=60.0, train_eval_acc=73.0)  # the running figure is not the gap
    judgement = judge(gap_claim, wide + narrow)
    assert judgement.verdict == SUPPORTED and "30.00 → exp 2 1.00" in judgement.evidence
    best = Claim("b", "9 best", Best(9, (7, 8, 9)))
    assert judge(best, runs(7, [80.0]) + runs(8, [81.0]) + runs(9, [86.0])).verdict == SUPPORTED
    assert judge(best, runs(7, [80.0]) + runs(8, [82.8]) + runs(9, [83.0])).verdict == NOISE
    assert judge(best, runs(7, [88.0]) + runs(8, [82.0]) + runs(9, [83.0])).verdict == CONTRADICTED


def test_missing_experiment_is_not_run():
    assert judge(RISE, runs(1, [70.0])).verdict == NOT_RUN
    assert {c.key for c in CLAIMS} >= {"normalisation", "dropout_gap", "best_technique", "augment_alone",
                                       "augment_depth"}


def test_results_table_has_all_17_rows_and_seed_statistics():
    table = results_table(runs(2, [70.0, 72.0, 74.0]) + runs(7, [80.0]))
    assert list(table.index) == list(range(1, 18))
    row = table.loc[2]
    assert row["test_acc_mean"] == pytest.approx(72.0) and row["test_acc_std"] == pytest.approx(2.0)
    assert row["seeds"] == 3 and row["difference"] == pytest.approx(72.0 - 72.87)
    assert row["train_test_gap"] == pytest.approx(5.0) and row["study_test_acc"] == 72.87
    assert np.isnan(table.loc[7, "test_acc_std"]) and np.isnan(table.loc[3, "test_acc_mean"])
    shown = display_table(table)
    assert shown.loc["2. 4-layer model 2", "ours (mean ± std)"] == "72.00 ± 2.00"
    assert shown.loc["7. Dropout model 1", "ours (mean ± std)"] == "80.00"
    assert shown.loc["3. 6-layer model 1", "ours (mean ± std)"] == "not run"


def test_select_records_keeps_one_profile():
    mixed = runs(2, [70.0], epochs=2) + runs(2, [75.0], epochs=300)
    assert [r.test_acc for r in select_records(mixed, epochs=300)] == [75.0]
    assert len(select_records(mixed)) == 2


def test_figures(tmp_path):
    fig = plot_history(runs(7, [80.0, 82.0]))
    loss_ax, acc_ax = fig.axes
    assert len(loss_ax.lines) == 2 and len(acc_ax.lines) == 3  # train, test, study line
    np.testing.assert_allclose(acc_ax.lines[1].get_ydata()[-1], 81.0)  # mean over seeds
    assert "2 seeds" in fig._suptitle.get_text()
    curves = plot_test_accuracy_curves(runs(2, [70.0]) + runs(7, [80.0]) + runs(15, [85.0]))
    assert len(curves.axes[0].lines) == 3
    table = results_table(runs(2, [70.0]) + runs(7, [80.0]))
    bars = plot_study_comparison(table[table["seeds"] > 0])
    assert len(bars.axes[0].patches) == 4
    path = save_figure(fig, tmp_path, 3, 7, "history")
    assert path == figure_path(tmp_path, 3, 7, "history") == tmp_path / "03_exp07_history.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not list(tmp_path.glob(".*"))
    with pytest.raises(ValueError):
        plot_history([])


def test_re_estimated_statistics_are_judged_against_the_plain_view_they_were_measured_on():
    runs = make_runs(21, [90.0, 90.2], bn_reestimated_test_acc=85.1)
    for record in runs:  # the recipe's views add 5 points; re-estimating adds nothing
        record.single_view_test_acc = 85.0
    assert not bn_statistics_matter(runs)
    older = make_runs(21, [90.0, 90.2], bn_reestimated_test_acc=85.1)  # made before the plain view was kept
    assert bn_statistics_matter(older)  # then the figure was measured with the views: 5 points apart
