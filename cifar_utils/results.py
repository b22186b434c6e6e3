"""Run records into tables: per-experiment means and spreads over seeds, next to the study."""

from __future__ import annotations

import json
from collections.abc import Iterable

import numpy as np
import pandas as pd

from . import noise
from .experiments import STUDY_EXPERIMENTS, get_experiment
from .runs.record import RunRecord


def select_records(records: Iterable[RunRecord], epochs: int | None = None,
                   batch_size: int | None = None) -> list[RunRecord]:
    """Keep the runs made with these settings, so quick and full runs never mix in a table."""
    return [r for r in records
            if (epochs is None or r.params["epochs"] == epochs)
            and (batch_size is None or r.params["batch_size"] == batch_size)]


def distinct_runs(records: Iterable[RunRecord]) -> list[RunRecord]:
    """Each run once: the same run seen twice (``seeds=[0, 0]``, a folder copied under a
    second name) is one seed, not two. A run is its experiment, variant, seed and params."""
    seen, kept = set(), []
    for record in records:
        key = (record.experiment, record.variant, record.seed, json.dumps(record.params, sort_keys=True))
        if key not in seen:
            seen.add(key)
            kept.append(record)
    return kept


def by_experiment(records: Iterable[RunRecord], variant: str = "") -> dict[int, list[RunRecord]]:
    """Distinct runs by experiment number, at one setting: the registry's own (``variant``
    "") or one variant label's (chapter 6's small setting labels all its runs alike). Other
    variants (sweep points) are kept apart by the sweeps' own tables and never mix in."""
    grouped: dict[int, list[RunRecord]] = {}
    for record in sorted(distinct_runs(records), key=lambda r: (r.experiment, r.seed)):
        if record.variant == variant:
            grouped.setdefault(record.experiment, []).append(record)
    return grouped


def metric_values(records: Iterable[RunRecord], metric: str) -> np.ndarray:
    """One value per seed; ``gap`` is the final model's train minus test accuracy, both in
    inference mode (``RunRecord.gap``; NaN for runs made before it was recorded)."""
    if metric == "gap":
        return np.array([r.gap for r in records], dtype=float)
    return np.array([getattr(r, metric) for r in records], dtype=float)


def side(runs: list[RunRecord], metric: str) -> noise.Side:
    """One experiment's runs as a side of a comparison: values per seed and binomial noise."""
    values = tuple(float(v) for v in metric_values(runs, metric))
    per_run = [noise.binomial_var(r.test_acc, r.params["test_size"]) for r in runs]
    if metric == "gap":
        per_run = [b + noise.binomial_var(r.train_eval_acc, r.train_eval_images) for b, r in zip(per_run, runs,
                                                                                                     strict=True)]
    return noise.Side(values, float(sum(per_run) / len(per_run)) if per_run else float("nan"))


def setting_spread(records: Iterable[RunRecord], metric: str = "test_acc") -> noise.Spread | None:
    """The seed variance of one run at these records' settings, pooled over every
    experiment (or sweep point) with two or more distinct seeds; None if there is none."""
    groups: dict[tuple[int, str], list[RunRecord]] = {}
    for record in distinct_runs(records):
        if record.status == "completed":
            groups.setdefault((record.experiment, record.variant), []).append(record)
    parts = [(len(v) - 1, float(np.var(v, ddof=1))) for v in
             (metric_values(runs, metric) for runs in groups.values()) if len(v) >= 2 and np.isfinite(v).all()]
    dof = sum(d for d, _ in parts)
    if not dof:
        return None
    return noise.Spread(sum(d * var for d, var in parts) / dof, dof, len(parts))


def mean_std(values: np.ndarray) -> tuple[float, float]:
    """Mean and sample standard deviation (NaN std for a single seed: spread unknown)."""
    if len(values) == 0:
        return float("nan"), float("nan")
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else float("nan")


def format_mean_std(mean: float, std: float, digits: int = 2) -> str:
    if np.isnan(mean):
        return "not run"
    return f"{mean:.{digits}f}" if np.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _bn_baseline(record: RunRecord) -> float:
    """The score ``bn_reestimated_test_acc`` is measured like: the plain view's, or in
    records made before it was kept (whose re-estimated figure used the recipe's views), the
    test accuracy."""
    plain = float(record.single_view_test_acc)
    return plain if np.isfinite(plain) else float(record.test_acc)


def bn_statistics_matter(runs: list[RunRecord]) -> bool:
    """Does re-estimating the batch-norm statistics change the test accuracy by more than
    the noise (``noise``: seeds and both test evaluations)?"""
    runs = [r for r in runs if np.isfinite(r.bn_reestimated_test_acc)]
    if not runs:
        return False
    noise_of_one = side(runs, "test_acc").binomial_var
    plain = noise.Side(tuple(_bn_baseline(r) for r in runs), noise_of_one)
    reestimated = noise.Side(tuple(float(r.bn_reestimated_test_acc) for r in runs), noise_of_one)
    return abs(reestimated.mean - plain.mean) > noise.difference_noise(plain, reestimated).threshold()


def results_table(records: Iterable[RunRecord], experiments: Iterable[int] | None = None,
                  variant: str = "") -> pd.DataFrame:
    """One row per experiment (the study's 17 by default, NaN where not run). Test accuracy
    is the final model's; ``train_acc_mean`` and the gap are the final model's in inference
    mode (``running_train_acc_mean`` is Keras' figure during the last epoch);
    ``best_test_acc`` exists only where the test set was evaluated every epoch (the study's
    way); the study's columns are NaN for the course's own experiments."""
    grouped = by_experiment(records, variant)
    numbers = list(experiments) if experiments is not None else [e.number for e in STUDY_EXPERIMENTS]
    rows = []
    nan = float("nan")
    for number in numbers:
        exp, runs = get_experiment(number), grouped.get(number, [])
        study = exp.study
        test_mean, test_std = mean_std(metric_values(runs, "test_acc"))
        gap_mean, _ = mean_std(metric_values(runs, "gap"))
        rows.append({
            "experiment": number, "name": exp.name, "chapter": exp.chapter,
            "study_test_acc": study.test_acc if study else nan, "test_acc_mean": test_mean,
            "test_acc_std": test_std, "seeds": len(runs),
            "difference": test_mean - study.test_acc if study else nan,
            "train_acc_mean": mean_std(metric_values(runs, "train_eval_acc"))[0], "train_test_gap": gap_mean,
            "running_train_acc_mean": mean_std(metric_values(runs, "train_acc"))[0],
            "bn_reestimated_test_acc": mean_std(metric_values(runs, "bn_reestimated_test_acc"))[0],
            "bn_statistics_matter": bn_statistics_matter(runs),
            "study_gap": study.train_acc - study.test_acc if study else nan,
            "best_test_acc": mean_std(metric_values(runs, "best_test_acc"))[0],
            "best_epoch": float(np.median(metric_values(runs, "best_epoch"))) if runs else nan,
            "epochs": runs[0].params["epochs"] if runs else np.nan,
            "seconds_per_epoch": mean_std(metric_values(runs, "seconds_per_epoch"))[0],
            "study_seconds_per_epoch": study.seconds_per_epoch if study else nan,
            "wall_seconds": float(metric_values(runs, "wall_seconds").sum()) if runs else nan,
            "diverged": sum(r.status == "diverged" for r in runs),
            "params": runs[0].param_count if runs else (study.params if study else nan),
            "data_source": "; ".join(sorted({r.data_source for r in runs})),
            "backend": "; ".join(sorted({r.backend for r in runs})),
            "device": "; ".join(sorted({r.device for r in runs})),
        })
    return pd.DataFrame(rows).set_index("experiment")


def display_table(table: pd.DataFrame) -> pd.DataFrame:
    """The table as a reader wants it: rounded, mean ± std as text, plain column names."""
    shown = pd.DataFrame({
        "experiment": [f"{n}. {name}" for n, name in zip(table.index, table["name"], strict=True)],
        "study test acc": table["study_test_acc"].map(lambda v: "" if np.isnan(v) else f"{v:.2f}"),
        "ours (mean ± std)": [format_mean_std(m, s) for m, s in
                              zip(table["test_acc_mean"], table["test_acc_std"], strict=True)],
        "seeds": table["seeds"],
        "difference": table["difference"].map(lambda v: "" if np.isnan(v) else f"{v:+.2f}"),
        "train-test gap": table["train_test_gap"].map(lambda v: "" if np.isnan(v) else f"{v:.2f}"),
        "BN stats re-estimated": [f"{v:.2f}" if matter else "" for v, matter in
                                  zip(table["bn_reestimated_test_acc"], table["bn_statistics_matter"], strict=True)],
        "best epoch": table["best_epoch"].map(lambda v: "" if np.isnan(v) else f"{v:.0f}"),
        "epochs": table["epochs"].map(lambda v: "" if np.isnan(v) else f"{v:.0f}"),
        "s/epoch (study)": [("" if np.isnan(s) else f"{s:.2f}") + ("" if np.isnan(t) else f" ({t:g})") for s, t in
                            zip(table["seconds_per_epoch"], table["study_seconds_per_epoch"], strict=True)],
    })
    return shown.set_index("experiment")
