"""Write the README's first screen of results from the committed reference.

    python scripts/readme_results.py           # rewrites the block in README.md and its figure
    python scripts/readme_results.py --check   # exit 1 if README.md's block is not what the reference gives

The block between ``<!-- results:start -->`` and ``<!-- results:end -->`` is generated, never
edited by hand: the study's numbers next to the reference's, experiment by experiment, and
chapter 6's best, with how far the reference is from its profile. ``tests/test_readme.py``
runs ``--check``, so the README cannot drift from ``results/reference/``.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout, installed or not

from cifar_utils.experiments import STUDY_EXPERIMENTS, get_experiment  # noqa: E402
from cifar_utils.results import format_mean_std, results_table  # noqa: E402
from cifar_utils.run_profile import reference_progress  # noqa: E402
from cifar_utils.runs.reference import ReferenceRuns, load_reference  # noqa: E402
from cifar_utils.runs.reference_progress import progress_sentence  # noqa: E402

START, END = "<!-- results:start -->", "<!-- results:end -->"
FIGURE = Path("docs/figures/reference_comparison.png")
BEYOND = (20, 21)  # chapter 6's recipes that aim past the study


def _cell(mean: float, std: float, seeds: int) -> str:
    if seeds == 0:
        return "not trained yet"
    return format_mean_std(mean, std) + (f" ({seeds} seeds)" if seeds > 1 else "")


def results_block(reference: ReferenceRuns, figure: bool) -> str:
    """The generated Markdown: a header line, the table, the figure where there is one."""
    progress = reference_progress(reference)
    held = progress_sentence(progress) if progress else f"{len(reference.records)} runs"
    epochs = reference.profile.get("epochs")
    length = f"for {epochs} of its 300 epochs" if epochs else "(length as its profile.json says)"
    lines = [f"**Results so far**, from the CPU reference (`results/reference/`, {held}): the study's recipe "
             f"{length} on the JPEG copy of CIFAR-10 (which costs the study's recipes 2-5 points), "
             "trained on a 2-core CPU; the study's own numbers are its single 300-epoch runs on a GPU. Only test "
             "accuracy is shown here: the reference was trained beside other work, so its times are not benchmarks. "
             "The rendered report: [`report/index.html`](report/index.html).", "",
             "| experiment | study test acc | ours (test acc) | difference |", "|---|---|---|---|"]
    table = results_table(reference.records, [e.number for e in STUDY_EXPERIMENTS])
    for number, row in table.iterrows():
        ours = _cell(row["test_acc_mean"], row["test_acc_std"], int(row["seeds"]))
        diff = "" if math.isnan(row["difference"]) else f"{row['difference']:+.2f}"
        lines.append(f"| {number}. {row['name']} | {row['study_test_acc']:.2f} | {ours} | {diff} |")
    beyond = results_table(reference.records, BEYOND)
    for number, row in beyond.iterrows():
        exp = get_experiment(number)
        ours = _cell(row["test_acc_mean"], row["test_acc_std"], int(row["seeds"]))
        lines.append(f"| {number}. {row['name']} (chapter 6, {exp.recipe.epochs} epochs) | | {ours} | |")
    if figure:
        lines += ["", f"![Final test accuracy, study against the CPU reference]({FIGURE.as_posix()})"]
    return "\n".join(lines)


def write_figure(reference: ReferenceRuns, path: Path) -> bool:
    """The study-against-ours bar chart of the experiments the reference holds, if any."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cifar_utils.plots import plot_study_comparison

    table = results_table(reference.records, [e.number for e in STUDY_EXPERIMENTS])
    table = table[table["seeds"] > 0]
    if table.empty:
        return False
    fig = plot_study_comparison(table, title="Final test accuracy: the study (300 epochs, GPU) against "
                                              "the CPU reference")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def replace_block(readme: str, block: str) -> str:
    if readme.count(START) != 1 or readme.count(END) != 1:
        raise SystemExit(f"README.md: needs exactly one {START} and one {END}")
    head, rest = readme.split(START)
    _, tail = rest.split(END)
    return f"{head}{START}\n{block}\n{END}{tail}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if the README differs")
    parser.add_argument("--reference", type=Path, default=ROOT / "results" / "reference")
    args = parser.parse_args(argv)
    reference = load_reference(args.reference)
    readme_path = ROOT / "README.md"
    readme = readme_path.read_text()
    if args.check:
        block = results_block(reference, figure=(ROOT / FIGURE).exists())
        if replace_block(readme, block) != readme:
            raise SystemExit("README.md: its results block differs from results/reference; "
                             "run python scripts/readme_results.py")
        return
    has_figure = write_figure(reference, ROOT / FIGURE)
    readme_path.write_text(replace_block(readme, results_block(reference, has_figure)))
    print(f"README.md: results block from {args.reference} ({len(reference.records)} runs)")


if __name__ == "__main__":
    main()
