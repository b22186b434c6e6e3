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
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from .experiments import Experiment, get_experiment
from .results import metric_values

FACTORS = ("dropout", "batch_norm", "he_init")
# (dropout, batch norm, He init) -> experiment; 18 is the cell the study did not run.
FACTORIAL: dict[tuple[int, int, int], int] = {
    (0, 0, 0): 6, (1, 0, 0): 7, (0, 1, 0): 11, (0, 0, 1): 12,
    (1, 1, 0): 8, (1, 0, 1): 13, (0, 1, 1): 18, (1, 1, 1): 9,
}
SWEEP_BASE = 9  # the hyper-parameter sweeps vary the study's best technique model
SWEEP_VALIDATION = 0.1  # sweeps choose on 5,000 held-out training images, never on the test set
REAL_EFFECT_SE = 2.0  # an effect is "real" when it is more than two standard errors from zero


def grid_experiments(learning_rates: Sequence[float], batch_sizes: Sequence[int], epochs: int) -> list[Experiment]:
    """Experiment 9 at each learning rate x batch size, chosen on a validation split."""
    base = get_experiment(SWEEP_BASE)
    return [base.vary(f"lr={lr:g}, batch={bs}", learning_rate=float(lr), batch_size=int(bs), epochs=epochs,
                      validation=SWEEP_VALIDATION)
            for lr in learning_rates for bs in batch_sizes]


def dropout_experiments(rates: Sequence[float], epochs: int) -> list[Experiment]:
    """Experiment 9 at each dropout rate (after every pool and the dense layer)."""
    base = get_experiment(SWEEP_BASE)
    return [base.vary(f"dropout={rate:g}", dropout=float(rate), epochs=epochs, validation=SWEEP_VALIDATION)
            for rate in rates]


def chapter6_runs(seeds: Sequence[int], factorial_seeds: Sequence[int], modern_seeds: Sequence[int],
                  fast_seeds: Sequence[int], grid_epochs: int, learning_rates: Sequence[float],
                  batch_sizes: Sequence[int], dropout_rates: Sequence[float]) -> list[tuple[Experiment, int, bool]]:
    """(experiment, seed, keeps its own batch size) for every run chapter 6 shows."""
    runs = [(get_experiment(n), s, False) for n in FACTORIAL.values() for s in factorial_seeds]
    runs += [(get_experiment(19), s, False) for s in seeds]
    runs += [(get_experiment(20), s, False) for s in modern_seeds]
    runs += [(get_experiment(21), s, False) for s in fast_seeds]
    runs += [(e, s, True) for e in grid_experiments(learning_rates, batch_sizes, grid_epochs) for s in seeds]
    runs += [(e, s, False) for e in dropout_experiments(dropout_rates, grid_epochs) for s in seeds]
    return runs


# --- the factorial ------------------------------------------------------------------------

def factorial_cells(records: Iterable, metric: str = "test_acc") -> pd.DataFrame:
    """One row per cell: its factors, experiment, mean, standard deviation and seeds."""
    grouped: dict[int, list] = {}
    for record in records:
        if not record.variant:
            grouped.setdefault(record.experiment, []).append(record)
    rows = []
    for levels, number in FACTORIAL.items():
        values = metric_values(grouped.get(number, []), metric)
        rows.append({**dict(zip(FACTORS, levels, strict=True)), "experiment": number,
                     "mean": float(values.mean()) if len(values) else float("nan"),
                     "std": float(values.std(ddof=1)) if len(values) > 1 else float("nan"),
                     "seeds": len(values)})
    return pd.DataFrame(rows)


def effect_terms() -> list[tuple[str, ...]]:
    """Main effects, two-way and the three-way interaction, in the usual order."""
    return [term for size in (1, 2, 3) for term in itertools.combinations(FACTORS, size)]


def factorial_effects(cells: pd.DataFrame) -> pd.DataFrame:
    """Each effect of the 2x2x2 design with its standard error.

    An effect is the mean over the cells where its sign is + minus the mean where it is -
    (the sign being the product of the factors' levels as +-1): a main effect is "on minus
    off, averaged over everything else"; an interaction is how much one factor's effect
    changes with another. The standard error pools the seed-to-seed variance of all cells
    (each needs two or more seeds): SE = sqrt(s_pooled^2 x sum(1 / n_cell)) / 4."""
    if cells["seeds"].min() < 1:
        missing = cells.loc[cells["seeds"] < 1, "experiment"].tolist()
        raise ValueError(f"the factorial needs every cell; no runs of experiment(s) {missing}")
    signs = 2 * cells[list(FACTORS)].to_numpy() - 1
    degrees = (cells["seeds"] - 1).clip(lower=0)
    pooled = float((degrees * cells["std"].fillna(0) ** 2).sum() / degrees.sum()) if degrees.sum() else float("nan")
    se = math.sqrt(pooled * float((1 / cells["seeds"]).sum())) / 4 if math.isfinite(pooled) else float("nan")
    rows = []
    for term in effect_terms():
        columns = [FACTORS.index(f) for f in term]
        contrast = signs[:, columns].prod(axis=1)
        estimate = float((contrast * cells["mean"].to_numpy()).sum() / 4)
        real = bool(math.isfinite(se) and abs(estimate) > REAL_EFFECT_SE * se)
        rows.append({"effect": " x ".join(term), "order": len(term), "estimate": estimate, "se": se,
                     "real": real, "seeds per cell": f"{cells['seeds'].min()}-{cells['seeds'].max()}"
                     if cells["seeds"].nunique() > 1 else str(cells["seeds"].iloc[0])})
    return pd.DataFrame(rows)


def describe_effects(effects: pd.DataFrame) -> str:
    """One computed sentence per effect that is real, and which are not."""
    if not effects["se"].map(math.isfinite).all():
        return ("With one seed per cell the spread is unknown, so no effect can be called real: "
                "run two or more seeds per cell (`factorial_seeds`).")
    real = effects[effects["real"]]
    noise = effects[~effects["real"]]["effect"].tolist()
    parts = [f"**{row.effect}**: {row.estimate:+.2f} ± {row.se:.2f} points" for row in real.itertuples()]
    text = ("Real (beyond two standard errors): " + "; ".join(parts) + ".") if parts else \
        "No effect is beyond two standard errors."
    return text + (f" Within the noise: {', '.join(noise)}." if noise else "")


def plot_interactions(cells: pd.DataFrame, effects: pd.DataFrame):
    """Left: the eight cells as four lines over dropout (one per batch norm x He init
    combination); parallel lines mean no interaction. Right: every effect with +-2 SE."""
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    styles = {(0, 0): ("grey", "plain"), (1, 0): ("tab:blue", "batch norm"), (0, 1): ("tab:orange", "He init"),
              (1, 1): ("tab:green", "batch norm + He init")}
    for (bn, he), (color, label) in styles.items():
        part = cells[(cells["batch_norm"] == bn) & (cells["he_init"] == he)].sort_values("dropout")
        left.errorbar(part["dropout"], part["mean"], yerr=part["std"].fillna(0), color=color, marker="o",
                      capsize=3, label=f"{label} (exp {', '.join(map(str, part['experiment']))})")
    left.set(xticks=[0, 1], xticklabels=["no dropout", "dropout 0.3"], ylabel="test accuracy (%)",
             title="Cell means (± std over seeds)")
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    y = np.arange(len(effects))[::-1]
    colors = ["tab:green" if real else "lightgrey" for real in effects["real"]]
    right.barh(y, effects["estimate"], xerr=REAL_EFFECT_SE * effects["se"].fillna(0), color=colors, capsize=3)
    right.axvline(0, color="black", linewidth=0.8)
    right.set_yticks(y, effects["effect"], fontsize=8)
    right.set(xlabel="effect on test accuracy (points, ± 2 SE)", title="Effects (green: real)")
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
                     "train_acc": float(metric_values(runs, "train_acc").mean()) if runs else float("nan"),
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
