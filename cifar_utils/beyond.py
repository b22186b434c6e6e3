"""Chapter 6, beyond the study: the dropout x batch norm x He init factorial, the sweeps,
and their analysis.

The study ran 7 of the 8 cells of a 2x2x2 design (dropout, batch norm, He initialisation)
and read them one comparison at a time. Run as a whole, with several seeds per cell, the
design gives every main effect and interaction with a standard error: the question "why
did techniques that did little alone work together" becomes a number with an error bar.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from . import noise
from .experiments import Experiment, chapter_experiments, distinct_variants, exact, get_experiment
from .results import by_experiment, metric_values, side

FACTORS = ("dropout", "batch_norm", "he_init")
# (dropout, batch norm, He init) -> experiment; 18 is the cell the study did not run.
FACTORIAL: dict[tuple[int, int, int], int] = {
    (0, 0, 0): 6, (1, 0, 0): 7, (0, 1, 0): 11, (0, 0, 1): 12,
    (1, 1, 0): 8, (1, 0, 1): 13, (0, 1, 1): 18, (1, 1, 1): 9,
}
SWEEP_BASE = 9  # the hyper-parameter sweeps vary the study's best technique model
SWEEP_VALIDATION = 0.1  # sweeps choose on 5,000 held-out training images, never on the test set


# --- chapter 6's small setting ----------------------------------------------------------
#
# Three seeds per factorial cell and the sweeps cost more than a CPU reference can spend
# on the full training set, so they may run on a fixed, stratified share of it
# (``Recipe.train_images``; the test set stays whole). Those runs are variants labelled
# with the setting: the one-setting rule keeps them out of every full-data table, and the
# factorial and its verdicts read that setting's runs only.

def small_label(train_images: int | None) -> str:
    """The variant label of the small setting, '' for the full training set."""
    return f"train_images={train_images}" if train_images else ""


def _with_setting(label: str, train_images: int | None) -> str:
    return ", ".join(part for part in (label, small_label(train_images)) if part)


def factorial_experiment(number: int, train_images: int | None = None) -> Experiment:
    """A factorial cell: the registry's experiment, or its small-setting variant."""
    exp = get_experiment(number)
    return exp.vary(small_label(train_images), train_images=int(train_images)) if train_images else exp


def grid_label(learning_rate: float, batch_size: int, train_images: int | None = None) -> str:
    """'lr=0.001, batch=512' (and the small setting's label): a grid point's variant."""
    return _with_setting(f"lr={exact(float(learning_rate))}, batch={batch_size}", train_images)


def grid_experiments(learning_rates: Sequence[float], batch_sizes: Sequence[int], epochs: int,
                     train_images: int | None = None) -> list[Experiment]:
    """Experiment 9 at each learning rate x batch size, chosen on a validation split."""
    base = get_experiment(SWEEP_BASE)
    small = {"train_images": int(train_images)} if train_images else {}
    return distinct_variants(
        base.vary(grid_label(lr, bs, train_images), learning_rate=float(lr), batch_size=bs, epochs=epochs,
                  validation=SWEEP_VALIDATION, **small) for lr in learning_rates for bs in batch_sizes)


def dropout_experiments(rates: Sequence[float], epochs: int, train_images: int | None = None) -> list[Experiment]:
    """Experiment 9 at each dropout rate (after every pool and the dense layer)."""
    base = get_experiment(SWEEP_BASE)
    small = {"train_images": int(train_images)} if train_images else {}
    return distinct_variants(base.vary(_with_setting(f"dropout={exact(float(rate))}", train_images),
                                       dropout=float(rate), epochs=epochs, validation=SWEEP_VALIDATION, **small)
                             for rate in rates)


def own_experiments() -> list[Experiment]:
    """Chapter 6's registry experiments other than the factorial's cell (18, run with the
    factorial): each planned, run and shown with the seeds its entry names, in registry order."""
    return [e for e in chapter_experiments(6) if e.number not in FACTORIAL.values()]


def own_seeds(experiment: Experiment, seeds: Sequence[int], seed_lists: dict) -> list[int]:
    """The seeds chapter 6 gives a registry experiment: the list its ``seeds_parameter``
    names, the chapter's ``seeds`` or one of ``seed_lists`` (``course.chapter6_settings``'s)."""
    lists = {"seeds": seeds, **seed_lists}
    if experiment.seeds_parameter not in lists:
        known = ", ".join(k for k in lists if k.endswith("seeds"))
        raise ValueError(f"experiment {experiment.number}: seeds_parameter {experiment.seeds_parameter!r} is not a "
                         f"seed list of chapter 6 ({known})")
    return list(lists[experiment.seeds_parameter])


def chapter6_runs(seeds: Sequence[int], factorial_seeds: Sequence[int], grid_epochs: int,
                  learning_rates: Sequence[float], batch_sizes: Sequence[int], dropout_rates: Sequence[float],
                  small_subset: int | None = None, **seed_lists: Sequence[int]) -> list[tuple[Experiment, int, bool]]:
    """(experiment, seed, keeps its own batch size) for every run chapter 6 shows: the
    factorial, the chapter's registry experiments (``own_experiments``, each with the seed
    list it names: ``seeds`` or one of ``seed_lists``, e.g. ``modern_seeds``), the sweeps;
    ``small_subset``: the factorial and the sweeps on that many training images."""
    unknown = sorted(k for k in seed_lists if not k.endswith("_seeds"))
    if unknown:
        raise TypeError(f"chapter6_runs: unknown parameters {unknown}")
    runs = [(factorial_experiment(n, small_subset), s, False) for n in FACTORIAL.values() for s in factorial_seeds]
    runs += [(e, s, False) for e in own_experiments() for s in own_seeds(e, seeds, seed_lists)]
    runs += [(e, s, True) for e in grid_experiments(learning_rates, batch_sizes, grid_epochs, small_subset)
             for s in seeds]
    runs += [(e, s, False) for e in dropout_experiments(dropout_rates, grid_epochs, small_subset) for s in seeds]
    return runs


# --- the factorial ------------------------------------------------------------------------
#
# With each factor coded -1 (off) / +1 (on), an effect is the mean of the four cells where
# its sign is + minus the mean of the four where it is - (Box, Hunter & Hunter's
# convention): a main effect is "on minus off, averaged over the other two switches";
# the A x B interaction is half the change of A's effect between B off and B on,
#     A x B = [ (A's effect with B on) - (A's effect with B off) ] / 2,
# so He's effect +2 with batch norm and 0 without gives he_init = +1 and BN x He = +1.
# Its noise (``noise.contrast_noise``) pools the seed variance of all cells (df: the sum of
# n - 1) and adds each cell's test-set binomial noise.

def factorial_cells(records: Iterable, variant: str = "", metric: str = "test_acc") -> pd.DataFrame:
    """One row per cell: its factors, experiment, mean, standard deviation, seeds, and the
    ``noise.Side`` the effects are computed from; ``variant``: the setting's label
    (``small_label``), the full training set by default."""
    grouped = {n: runs for n, runs in by_experiment(records, variant).items() if n in FACTORIAL.values()}
    rows = []
    for levels, number in FACTORIAL.items():
        cell = side(grouped.get(number, []), metric)
        rows.append({**dict(zip(FACTORS, levels, strict=True)), "experiment": number, "mean": cell.mean,
                     "std": cell.var ** 0.5 if cell.n > 1 else float("nan"), "seeds": cell.n, "side": cell})
    return pd.DataFrame(rows)


def effect_terms() -> list[tuple[str, ...]]:
    """Main effects, two-way and the three-way interaction, in the usual order."""
    return [term for size in (1, 2, 3) for term in itertools.combinations(FACTORS, size)]


def _contrast(cells: pd.DataFrame, weights: np.ndarray) -> tuple[float, noise.Noise]:
    sides = list(cells["side"])
    estimate = float((weights * cells["mean"].to_numpy()).sum())
    return estimate, noise.contrast_noise(sides, list(weights), pool=True)


def _require_cells(cells: pd.DataFrame) -> None:
    if cells["seeds"].min() < 1:
        missing = cells.loc[cells["seeds"] < 1, "experiment"].tolist()
        raise ValueError(f"the factorial needs every cell; no runs of experiment(s) {missing}")


def factorial_effects(cells: pd.DataFrame) -> pd.DataFrame:
    """Each of the seven effects with its standard error. All seven together are
    exploratory: ``real`` holds at 5 % / 7 (Bonferroni), so that among seven null effects a
    spurious "real" appears in at most one design in twenty. The chapter's two pre-stated
    claims are tested on their own (``judge_largest``, ``judge_only_together``)."""
    _require_cells(cells)
    signs = 2 * cells[list(FACTORS)].to_numpy() - 1
    rows = []
    for term in effect_terms():
        weights = signs[:, [FACTORS.index(f) for f in term]].prod(axis=1) / 4
        estimate, effect_noise = _contrast(cells, weights)
        threshold = effect_noise.threshold(noise.LEVEL / len(effect_terms()))
        rows.append({"effect": " x ".join(term), "order": len(term), "estimate": estimate, "se": effect_noise.se,
                     "threshold": threshold, "real": bool(abs(estimate) > threshold),
                     "seeds per cell": f"{cells['seeds'].min()}-{cells['seeds'].max()}"
                     if cells["seeds"].nunique() > 1 else str(cells["seeds"].iloc[0]), "noise": effect_noise.how})
    return pd.DataFrame(rows)


def simple_effects(cells: pd.DataFrame, factor: str, partner: str) -> dict[str, tuple[float, noise.Noise]]:
    """``factor``'s effect with ``partner`` on and with it off (each averaged over the
    third factor), and their difference (twice the interaction)."""
    _require_cells(cells)
    on = (2 * cells[factor].to_numpy() - 1) / 2
    with_partner, without = on * cells[partner].to_numpy(), on * (1 - cells[partner].to_numpy())
    return {"with": _contrast(cells, with_partner), "without": _contrast(cells, without),
            "difference": _contrast(cells, with_partner - without)}


def describe_effects(effects: pd.DataFrame) -> str:
    """One computed sentence per effect that is real (exploratory level), and which are not."""
    if not effects["se"].map(math.isfinite).all():
        return "The effects' noise could not be computed: some cells have no runs."
    if effects["noise"].str.contains("unknown").any():
        return ("With one seed per cell the seed spread is not measured (one point per run is assumed): run two or "
                "more seeds per cell (`factorial_seeds`) for effects with measured error bars.")
    real = effects[effects["real"]]
    rest = effects[~effects["real"]]["effect"].tolist()
    parts = [f"**{row.effect}**: {row.estimate:+.2f} points (beyond ±{row.threshold:.2f})"
             for row in real.itertuples()]
    text = ("Real, all seven effects tested together (5 % / 7): " + "; ".join(parts) + ".") if parts else \
        "No effect is beyond the noise when all seven are tested together (5 % / 7)."
    return text + (f" Within the noise: {', '.join(rest)}." if rest else "")


def judge_largest(cells: pd.DataFrame, factor: str) -> tuple[str, str]:
    """Is ``factor``'s main effect the largest in size? The margin |own| - |largest rival|
    has the noise of two independent contrasts (orthogonal in a 2^3 design)."""
    effects = factorial_effects(cells).set_index("effect")
    own = effects.loc[factor]
    rivals = effects[(effects["order"] == 1) & (effects.index != factor)]
    rival = rivals["estimate"].abs().idxmax()
    margin = abs(own["estimate"]) - abs(rivals.loc[rival, "estimate"])
    _, main_noise = _contrast(cells, np.full(len(cells), 0.25))  # for its df and description
    margin_noise = noise.Noise(math.sqrt(2) * own["se"], main_noise.df, main_noise.how)
    threshold = margin_noise.threshold()
    verdict = ("supported" if margin > threshold else "contradicted" if -margin > threshold
               else "not separable from noise")
    evidence = (f"main effect of {factor} {own['estimate']:+.2f} points, next largest {rival} "
                f"{rivals.loc[rival, 'estimate']:+.2f}: margin {margin:+.2f}; noise ±{threshold:.2f} at the 5 % level "
                f"({margin_noise.how})")
    if own["estimate"] < 0 and verdict == "supported":
        evidence += "; the largest, but it lowers test accuracy at these settings"
    return verdict, evidence


def judge_only_together(cells: pd.DataFrame, factor: str, partner: str) -> tuple[str, str]:
    """"``factor`` helps only with ``partner``": supported when its effect with the partner
    is positive, the difference (twice the interaction) is positive and its effect without
    the partner is not; contradicted when it helps without the partner or hurts with it.
    Each of the three one-sided tests runs at 5 % / 3, so with no effect at all a verdict
    other than noise comes at most 5 % of the time."""
    parts = simple_effects(cells, factor, partner)
    level = noise.LEVEL / 3
    above = {k: est > n.threshold(level, sides=1) for k, (est, n) in parts.items()}
    hurts_with = -parts["with"][0] > parts["with"][1].threshold(level, sides=1)
    if above["with"] and above["difference"] and not above["without"]:
        verdict = "supported"
    elif above["without"] or hurts_with:
        verdict = "contradicted"
    else:
        verdict = "not separable from noise"
    (w, wn), (wo, won), (d, dn) = parts["with"], parts["without"], parts["difference"]
    evidence = (f"{factor} with {partner} {w:+.2f} (±{wn.threshold(level, 1):.2f}), without {wo:+.2f} "
                f"(±{won.threshold(level, 1):.2f}); interaction {d / 2:+.2f}, half their difference "
                f"(difference ±{dn.threshold(level, 1):.2f}); one-sided tests at 5 %/3 ({wn.how})")
    return verdict, evidence


def plot_interactions(cells: pd.DataFrame, effects: pd.DataFrame):
    """Left: the batch norm x He init interaction plot (each point the mean of its two
    cells over dropout, ± one standard error); parallel lines mean no interaction.
    Right: every effect with its exploratory threshold."""
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    for bn, (color, label) in {0: ("grey", "no batch norm"), 1: ("tab:blue", "batch norm")}.items():
        points = []
        for he in (0, 1):
            pair = cells[(cells["batch_norm"] == bn) & (cells["he_init"] == he)]
            points.append(_contrast(cells, np.where(cells.index.isin(pair.index), 0.5, 0.0)) +
                          (", ".join(map(str, pair["experiment"])),))
        left.errorbar([0, 1], [p[0] for p in points], yerr=[p[1].se for p in points], color=color, marker="o",
                      capsize=3, label=f"{label} (exps {' / '.join(p[2] for p in points)})")
    left.set(xticks=[0, 1], xticklabels=["glorot_uniform", "he_uniform"], xlim=(-0.3, 1.3),
             ylabel="test accuracy (%), mean over dropout", title="Batch norm x He init (± 1 SE)")
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    y = np.arange(len(effects))[::-1]
    colors = ["tab:green" if real else "lightgrey" for real in effects["real"]]
    right.barh(y, effects["estimate"], xerr=effects["threshold"].fillna(0), color=colors, capsize=3)
    right.axvline(0, color="black", linewidth=0.8)
    right.set_yticks(y, effects["effect"], fontsize=8)
    right.set(xlabel="effect on test accuracy (points, ± threshold at 5 % / 7)", title="Effects (green: real)")
    right.grid(axis="x", alpha=0.3)
    return fig


# --- the sweeps ---------------------------------------------------------------------------

def sweep_table(records: Iterable, experiments: Sequence[Experiment]) -> pd.DataFrame:
    """Validation accuracy (mean over seeds) per sweep point, with its recipe values."""
    by_variant: dict[str, list] = {}
    for record in records:
        by_variant.setdefault(record.variant, []).append(record)
    rows = []
    for exp in experiments:
        runs = by_variant.get(exp.variant, [])
        values = metric_values(runs, "best_val_acc")
        finals = metric_values(runs, "val_acc")
        rows.append({"variant": exp.variant, "learning_rate": exp.recipe.learning_rate,
                     "batch_size": exp.recipe.batch_size, "dropout": exp.spec.dropout, "seeds": len(runs),
                     "val_acc": float(finals.mean()) if len(finals) else float("nan"),
                     "best_val_acc": float(values.mean()) if len(values) else float("nan"),
                     "train_acc": float(metric_values(runs, "train_eval_acc").mean()) if runs else float("nan"),
                     "epochs": runs[0].epochs_completed if runs else float("nan")})
    return pd.DataFrame(rows)


def plot_grid(table: pd.DataFrame, title: str):
    """Heat map of final validation accuracy over learning rate x batch size."""
    import matplotlib.pyplot as plt

    grid = table.pivot(index="learning_rate", columns="batch_size", values="val_acc").sort_index(ascending=False)
    fig, ax = plt.subplots(figsize=(6.5, 4.2), layout="constrained")
    image = ax.imshow(grid.to_numpy(), cmap="viridis", aspect="auto")
    ax.set_xticks(range(grid.shape[1]), [str(c) for c in grid.columns])
    ax.set_yticks(range(grid.shape[0]), [f"{v:g}" for v in grid.index])
    for (i, j), value in np.ndenumerate(grid.to_numpy()):
        if math.isfinite(value):
            ax.text(j, i, f"{value:.1f}", ha="center", va="center", color="white" if value < grid.max().max() - 5
                    else "black")
    ax.set(xlabel="batch size", ylabel="Adam learning rate", title=title)
    fig.colorbar(image, ax=ax, label="validation accuracy (%)")
    return fig


def plot_dropout_sweep(table: pd.DataFrame, title: str):
    """Validation accuracy and the train-validation gap against the dropout rate."""
    import matplotlib.pyplot as plt

    table = table.sort_values("dropout")
    fig, ax = plt.subplots(figsize=(6.5, 4), layout="constrained")
    ax.plot(table["dropout"], table["val_acc"], marker="o", label="validation accuracy")
    ax.plot(table["dropout"], table["train_acc"] - table["val_acc"], marker="s", linestyle="--",
            label="train - validation gap")
    ax.set(xlabel="dropout rate (after every pool and the dense layer)", ylabel="points (%)", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def best_point(table: pd.DataFrame) -> pd.Series | None:
    """The sweep point chosen on validation accuracy (never on the test set)."""
    usable = table.dropna(subset=["val_acc"])
    return None if usable.empty else usable.loc[usable["val_acc"].idxmax()]


def point_name(variant: str) -> str:
    """A sweep point's label without the setting every point shares ('lr=0.001, batch=128')."""
    return re.sub(r",? ?train_images=\d+", "", variant)


def sweep_sentence(table: pd.DataFrame, column: str, runs: Iterable) -> str:
    """The sweep's choice on validation, said as it is: the best point, or that the best
    points tie within the validation set's noise; and how the train-validation gap moves."""
    best = best_point(table)
    if best is None:
        return "*No sweep point has finished runs.*"
    by_variant: dict[str, list] = {}
    for record in runs:
        by_variant.setdefault(record.variant, []).append(record)
    size = next(iter(by_variant.values()))[0].params["validation_size"]

    def point(row) -> noise.Side:
        values = tuple(float(r.val_acc) for r in by_variant.get(row["variant"], []))
        return noise.Side(values, noise.binomial_var(row["val_acc"], size))

    usable = table.dropna(subset=["val_acc"]).sort_values("val_acc", ascending=False)
    name = f"{column} {best[column]:g}" if column != "variant" else point_name(best["variant"])
    text = f"Chosen on validation ({size:,} images): **{name}** ({best['val_acc']:.2f} %)."
    if len(usable) > 1:
        runner_up = usable.iloc[1]
        margin = best["val_acc"] - runner_up["val_acc"]
        threshold = noise.difference_noise(point(runner_up), point(best)).threshold()
        if margin <= threshold:
            ties = usable[best["val_acc"] - usable["val_acc"] <= threshold]
            names = "; ".join(f"{v:g}" if column != "variant" else point_name(v) for v in ties[column])
            text = (f"On validation ({size:,} images) the points {names} tie: the best leads the next by "
                    f"{margin:.2f} points, within the noise (±{threshold:.2f}), so no choice among them is "
                    "supported by these runs.")
    if column != "variant":
        ends = table.dropna(subset=["val_acc"]).sort_values(column).iloc[[0, -1]]
        gaps = ends["train_acc"] - ends["val_acc"]
        text += (f" The train-validation gap goes from {gaps.iloc[0]:.1f} points at {column} "
                 f"{ends[column].iloc[0]:g} to {gaps.iloc[1]:.1f} at {ends[column].iloc[1]:g}.")
    return text
