"""The summary chapter: every run record read back, tabulated, plotted and judged. No training."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from .chapter import show
from .claims import judge_all
from .plots import plot_study_comparison, plot_test_accuracy_curves, save_figure
from .results import display_table, results_table, select_records
from .speed import Speed
from .training import RunRecord, load_records, write_atomic


class Summary:
    def __init__(self, out_dir: str | os.PathLike = "output", epochs: int | None = None,
                 batch_size: int | None = None):
        self.out_dir = Path(out_dir)
        self.figures_dir = self.out_dir / "figures"
        found = load_records(self.out_dir / "runs")
        self.records: list[RunRecord] = select_records(found, epochs=epochs, batch_size=batch_size)
        self.skipped = len(found) - len(self.records)
        self.table = results_table(self.records)
        self.judgements: pd.DataFrame | None = None  # filled by verdicts()

    def overview(self) -> None:
        """Where the numbers come from: data, backend, device, seeds, epochs."""
        if not self.records:
            show(f"**No finished runs found under `{self.out_dir / 'runs'}`**: run the chapters first.")
            return
        runs = self.table[self.table["seeds"] > 0]
        facts = {
            "runs": f"{len(self.records)} runs of {len(runs)} of the 17 experiments",
            "epochs": ", ".join(str(int(e)) for e in sorted(runs["epochs"].unique())),
            "seeds per experiment": ", ".join(str(s) for s in sorted(runs["seeds"].unique())),
            "data": "; ".join(sorted({r.data_source for r in self.records})),
            "backend": "; ".join(sorted({r.backend for r in self.records})),
            "device": "; ".join(sorted({r.device for r in self.records})),
            "speed settings": "; ".join(sorted({Speed.coerce(r.speed).describe() for r in self.records})),
            "training time": f"{runs['wall_seconds'].sum() / 60:.1f} minutes in all",
        }
        lines = "\n".join(f"- **{k}**: {v}" for k, v in facts.items())
        note = f"\n\n({self.skipped} runs with other epochs or batch size left out.)" if self.skipped else ""
        show(f"{lines}{note}")

    def show_table(self) -> pd.DataFrame:
        shown = display_table(self.table)
        show(shown)
        return shown

    def curves(self) -> None:
        if self.records:
            self._figure(plot_test_accuracy_curves(self.records, "Test accuracy per epoch, all experiments"),
                         "test_curves")

    def comparison(self) -> None:
        if self.records:
            self._figure(plot_study_comparison(self.table[self.table["seeds"] > 0]), "comparison")

    def verdicts(self) -> pd.DataFrame:
        """Each of the study's conclusions, our evidence, and a verdict."""
        judgements = judge_all(self.records)
        frame = pd.DataFrame({"study's conclusion": [j.claim.text for j in judgements],
                              "verdict": [j.verdict for j in judgements],
                              "our evidence": [j.evidence for j in judgements]})
        show(frame.style.hide(axis="index").map(_verdict_style, subset=["verdict"])
             .set_properties(**{"text-align": "left"}))
        counts = frame["verdict"].value_counts()
        show("Verdicts: " + ", ".join(f"{n} {verdict}" for verdict, n in counts.items()) + ".")
        self.judgements = frame
        return frame

    def timing(self) -> None:
        """Measured training time against the study's (its blind spot)."""
        runs = self.table[self.table["seeds"] > 0]
        if runs.empty:
            return
        ours = runs["seconds_per_epoch"]
        study = runs["study_seconds_per_epoch"]
        full_ours = (ours * 300).sum() / 60
        full_study = (study * 300).sum() / 60
        show(f"Median seconds per epoch here vs the study's Colab GPU, over these {len(runs)} experiments: "
             f"a 300-epoch pass would take **{full_ours:.0f} minutes** here (one seed, one after another) "
             f"against the study's **{full_study:.0f} minutes**.")

    def record_results(self) -> Path:
        """``results/results.csv`` (one row per experiment) and ``results/verdicts.csv``."""
        results_dir = self.out_dir / "results"
        results_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(results_dir / "results.csv", self.table.to_csv())
        if self.judgements is not None:
            write_atomic(results_dir / "verdicts.csv", self.judgements.to_csv(index=False))
        show(f"Wrote `{results_dir / 'results.csv'}` ({len(self.table)} experiments).")
        return results_dir / "results.csv"

    def _figure(self, fig, kind: str) -> None:
        save_figure(fig, self.figures_dir, "05", "all", kind)
        show(fig)
        plt.close(fig)


def _verdict_style(verdict: str) -> str:
    colors = {"supported": "#d9f2d9", "contradicted": "#f8d7d7", "not separable from noise": "#fff3cd"}
    return f"background-color: {colors.get(verdict, '#eeeeee')}"
