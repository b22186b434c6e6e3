"""Chapter 6's analysis on synthetic records: the factorial's effects, the sweeps, the claims."""

import math

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from cifar_utils.beyond import (
    FACTORIAL,
    best_point,
    chapter6_runs,
    describe_effects,
    dropout_experiments,
    factorial_cells,
    factorial_effects,
    grid_experiments,
    plot_dropout_sweep,
    plot_grid,
    plot_interactions,
    simple_effects,
    sweep_table,
)
from cifar_utils.claims import CONTRADICTED, NOISE, NOT_RUN, SUPPORTED, get_claim, judge
from tests.factories import make_record as record


def cell_records(mean_of, noise=(-0.5, 0.0, 0.5)):
    """Three seeds per cell around ``mean_of(dropout, batch_norm, he_init)``."""
    return [record(number, mean_of(*levels) + offset, seed=seed)
            for levels, number in FACTORIAL.items() for seed, offset in enumerate(noise)]


def test_the_design_is_complete_and_18_is_the_missing_cell():
    assert sorted(FACTORIAL) == [tuple(int(b) for b in f"{i:03b}") for i in range(8)]
    assert FACTORIAL[(0, 1, 1)] == 18 and FACTORIAL[(1, 1, 1)] == 9 and FACTORIAL[(0, 0, 0)] == 6


def test_effects_recover_a_pure_interaction():
    # 70 everywhere, +4 only when batch norm and He are both on: a main effect of +2 each
    # (averaged over the other levels) and a batch norm x He interaction of +2.
    records = cell_records(lambda d, b, h: 70.0 + 4.0 * b * h)
    cells = factorial_cells(records)
    assert (cells["seeds"] == 3).all() and cells["std"].tolist() == pytest.approx([0.5] * 8)
    effects = factorial_effects(cells).set_index("effect")
    assert effects.loc["batch_norm", "estimate"] == pytest.approx(2.0)
    assert effects.loc["he_init", "estimate"] == pytest.approx(2.0)
    assert effects.loc["batch_norm x he_init", "estimate"] == pytest.approx(2.0)
    for name in ("dropout", "dropout x batch_norm", "dropout x he_init", "dropout x batch_norm x he_init"):
        assert effects.loc[name, "estimate"] == pytest.approx(0.0, abs=1e-9)
    # pooled std 0.5 over 8 cells of 3 seeds, plus each cell's binomial test-set noise
    # (10,000 images; shared by a cell's seeds: the mean of its runs'), each cell weighted 1/4:
    test_var = sum(np.mean([(m + o) * (100 - m - o) / 10_000 for o in (-0.5, 0.0, 0.5)]) for m in cells["mean"]) / 16
    assert effects["se"].iloc[0] == pytest.approx(math.sqrt(0.25 * 8 / 3 / 16 + test_var))
    assert effects.loc["batch_norm x he_init", "real"] and not effects.loc["dropout", "real"]
    text = describe_effects(factorial_effects(cells))
    assert "**batch_norm x he_init**: +2.00 points (beyond ±" in text and "Within the noise: dropout" in text
    parts = simple_effects(cells, "he_init", "batch_norm")
    assert parts["with"][0] == pytest.approx(4.0) and parts["without"][0] == pytest.approx(0.0)
    assert parts["difference"][0] / 2 == pytest.approx(effects.loc["batch_norm x he_init", "estimate"])
    assert judge(get_claim("bn_he_together"), records).verdict == SUPPORTED


def test_noise_hides_a_small_effect_and_one_seed_knows_no_spread():
    noisy = cell_records(lambda d, b, h: 70.0 + 0.6 * b * h, noise=(-3.0, 0.0, 3.0))
    assert judge(get_claim("bn_he_together"), noisy).verdict == NOISE
    single = cell_records(lambda d, b, h: 70.0 + 1.0 * b * h, noise=(0.0,))
    effects = factorial_effects(factorial_cells(single))
    assert (effects["noise"].str.contains("1 point per run assumed")).all() and not effects["real"].any()
    assert "seed spread is not measured" in describe_effects(effects)
    judgement = judge(get_claim("bn_he_together"), single)
    assert judgement.verdict == NOISE and "assumed" in judgement.evidence
    missing = [r for r in noisy if r.experiment != 18]
    assert judge(get_claim("bn_he_together"), missing).verdict == NOT_RUN


def test_largest_main_effect_claim():
    dropout_wins = cell_records(lambda d, b, h: 70.0 + 6.0 * d + 1.0 * b)
    assert judge(get_claim("dropout_main"), dropout_wins).verdict == SUPPORTED
    bn_wins = cell_records(lambda d, b, h: 70.0 + 2.0 * d + 6.0 * b)
    judgement = judge(get_claim("dropout_main"), bn_wins)
    assert judgement.verdict == CONTRADICTED and "next largest batch_norm +6.00" in judgement.evidence


def test_interaction_plot_draws_batch_norm_by_he_and_every_effect():
    cells = factorial_cells(cell_records(lambda d, b, h: 70.0 + 4.0 * b * h + 1.0 * d))
    fig = plot_interactions(cells, factorial_effects(cells))
    left, right = fig.axes[:2]
    lines = [bars.lines[0].get_ydata().tolist() for bars in left.containers]  # each errorbar's line
    assert lines == [pytest.approx([70.5, 70.5]), pytest.approx([70.5, 74.5])]  # BN off, BN on; mean over dropout
    assert len(right.patches) == 7  # three main effects, three two-way, one three-way


def test_sweeps_are_validation_variants_of_experiment_9():
    grid = grid_experiments([1e-3, 3e-3], [128, 512], epochs=30)
    assert [e.variant for e in grid] == ["lr=0.001, batch=128", "lr=0.001, batch=512", "lr=0.003, batch=128",
                                         "lr=0.003, batch=512"]
    assert all(e.number == 9 and e.recipe.validation == 0.1 and e.recipe.epochs == 30 for e in grid)
    rates = dropout_experiments([0.0, 0.5], epochs=5)
    assert [e.spec.dropout for e in rates] == [0.0, 0.5] and len({e.key for e in rates}) == 2
    runs = chapter6_runs(seeds=[0], factorial_seeds=[0, 1, 2], modern_seeds=[0, 1], fast_seeds=[0],
                         grid_epochs=3, learning_rates=[1e-3], batch_sizes=[128, 512], dropout_rates=[0.3])
    assert len(runs) == 8 * 3 + 1 + 2 + 1 + 2 + 1
    assert [keep for exp, _, keep in runs if exp.variant.startswith("lr=")] == [True, True]


def test_sweep_table_chooses_on_validation_and_plots_it():
    grid = grid_experiments([1e-3, 3e-3], [128, 512], epochs=3)
    runs = []
    for i, exp in enumerate(grid):
        run = record(9, 50.0 + i)
        run.variant, run.evaluated_on = exp.variant, "validation"
        run.val_acc, run.best_val_acc = 60.0 + 2 * i, 61.0 + 2 * i
        runs.append(run)
    table = sweep_table(runs, grid)
    assert table["val_acc"].tolist() == [60.0, 62.0, 64.0, 66.0] and (table["seeds"] == 1).all()
    assert best_point(table)["variant"] == "lr=0.003, batch=512"
    heat = plot_grid(table, "grid")
    np.testing.assert_allclose(np.sort(heat.axes[0].images[0].get_array().ravel()), [60, 62, 64, 66])
    rates = dropout_experiments([0.0, 0.5], epochs=3)
    for run, exp in zip(runs[:2], rates, strict=True):
        run.variant = exp.variant
    sweep = sweep_table(runs[:2], rates)
    assert plot_dropout_sweep(sweep, "sweep").axes[0].lines[0].get_ydata().tolist() == [60.0, 62.0]
    assert best_point(sweep_table([], rates)) is None


def test_the_small_setting_is_judged_on_its_own_runs_only():
    # Chapter 6's factorial on 10,000 images: a variant of every cell, never pooled with the
    # full-data runs (seed 0 of chapters 1-4), and judged only where asked for.
    from dataclasses import replace

    from cifar_utils.beyond import dropout_experiments, grid_experiments, grid_label, point_name, small_label
    from cifar_utils.claims import NOT_RUN, Difference, evaluate, get_claim, judge, judge_all
    from cifar_utils.results import setting_spread

    small = small_label(10_000)
    runs = [replace(r, variant=small) for r in cell_records(lambda d, b, h: 60.0 + 4.0 * b * h)]
    full = [record(n, 80.0, seed=0) for n in FACTORIAL.values() if n != 18]
    assert factorial_cells([*runs, *full], small)["mean"].tolist() == factorial_cells(
        [replace(r, variant="") for r in runs])["mean"].tolist()
    assert factorial_cells([*runs, *full])["seeds"].tolist() == [0 if n == 18 else 1 for n in FACTORIAL.values()]
    claim = get_claim("bn_he_together")
    assert judge(claim, [*runs, *full]).verdict == NOT_RUN  # the full setting lacks cell 18
    assert judge(claim, [*runs, *full], variant=small).verdict != NOT_RUN
    verdicts = {j.claim.key: j.verdict for j in judge_all([*runs, *full], factorial_variant=small)}
    assert verdicts["bn_he_together"] != NOT_RUN and verdicts["dropout_main"] != NOT_RUN
    grid = grid_experiments([1e-3], [128, 512], 30, 10_000)
    assert [e.variant for e in grid] == [grid_label(1e-3, b, 10_000) for b in (128, 512)]
    assert point_name(grid[0].variant) == "lr=0.001, batch=128" and grid[0].recipe.train_images == 10_000
    assert [point_name(e.variant) for e in dropout_experiments([0.3], 30, 10_000)] == ["dropout=0.3"]
    # A full-data comparison with one seed a side borrows no spread from the small setting's seeds.
    assert setting_spread([*runs, *full]) is not None
    assert evaluate(Difference(6, 7), [*full, *runs]) == evaluate(Difference(6, 7), full)
