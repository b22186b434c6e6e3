"""Adding experiment 22 to chapter 6 is one registry line: with nothing but that line added
(``experiments.EXPERIMENTS`` is the only name these tests change), chapter 6 plans it with
the seeds its line names, ``./run_all.sh`` trains and prices it, chapter 6's notebook shows
it in the cell for experiments no section shows, and the summary tables and draws it."""

import json
from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import nbformat
import pytest

from cifar_utils import experiments, run_plan
from cifar_utils import run_all as driver
from cifar_utils.beyond import own_experiments, own_seeds
from cifar_utils.chapter import Chapter
from cifar_utils.costs import cpu_run_seconds, priced_as
from cifar_utils.course import chapter6_settings, needed_runs
from cifar_utils.data import load_cifar10
from cifar_utils.experiments import Experiment, get_experiment
from cifar_utils.model_code import model_code
from cifar_utils.plots import chapter_colormap, plot_test_accuracy_curves
from cifar_utils.runs.train import run_experiment
from cifar_utils.summary import Summary
from tests.test_chapter6_plan import pinned

ROOT = Path(__file__).resolve().parents[1]
CHAPTER6 = "06_beyond_the_study"
REGISTRY = experiments.EXPERIMENTS  # as the course ships it
# The one line: a variant of an existing network (experiment 2's), in chapter 6.
LINE = Experiment(22, "4-layer model 2, dropout", 6, "Experiment 2 with Dropout(0.2) after every pool",
                  replace(get_experiment(2).spec, dropout=0.2), None, tags=("dropout",))


def add_line(patch: pytest.MonkeyPatch, **changes) -> Experiment:
    line = replace(LINE, **changes)
    patch.setattr(experiments, "EXPERIMENTS", (*REGISTRY, line))
    return line


@pytest.mark.parametrize(("profile", "seeds_parameter", "seeds", "expected"), [
    ("quick", "seeds", [0, 1], [0, 1]),  # the chapter's seeds
    ("full", "fast_seeds", [0], [0, 1, 2, 3, 4]),  # the full profile's fast_seeds
    ("cpu", "modern_seeds", [0], [0]),  # on the full training set, as 19-21 in the CPU reference
])
def test_chapter6_plans_the_new_line_with_the_seeds_it_names(monkeypatch, profile, seeds_parameter, seeds,
                                                             expected):
    add_line(monkeypatch, seeds_parameter=seeds_parameter)
    assert [e.number for e in own_experiments()] == [19, 20, 21, 22]
    runs = needed_runs(CHAPTER6, {"profile": None if profile == "full" else profile, "seeds": seeds})
    words = [f"{r.experiment.key}:{r.seed}" + ("*" if r.keep_batch_size else "") for r in runs]
    new = [w for w in words if w.startswith("exp22")]
    assert new == [f"exp22:{s}" for s in expected]
    last_of_21 = max(i for i, w in enumerate(words) if w.startswith("exp21:"))
    assert words.index(new[0]) == last_of_21 + 1  # after the chapter's other registry experiments, before the sweeps
    assert [w for w in words if w not in new] == pinned(profile, seeds)


def test_a_seed_list_chapter6_does_not_have_is_refused_by_name(monkeypatch):
    add_line(monkeypatch, seeds_parameter="slow_seeds")
    with pytest.raises(ValueError, match="experiment 22: seeds_parameter 'slow_seeds' is not a seed list of chapter 6"):
        needed_runs(CHAPTER6, {"profile": "quick"})
    with pytest.raises(ValueError, match="seeds_parameter must name a seed list parameter"):
        replace(LINE, seeds_parameter="grid_epochs")


def test_run_all_trains_and_prices_the_new_line(monkeypatch):
    quick = driver.parse_args(["--quick"])
    before = driver.training_tasks(quick, driver.chapters(ROOT / "notebooks", []))
    add_line(monkeypatch)
    tasks = driver.training_tasks(quick, driver.chapters(ROOT / "notebooks", []))
    new = [t for t in tasks if t.experiment == 22]
    assert [(t.seed, t.settings.epochs, t.settings.batch_size, t.variant_label) for t in new] == [(0, 2, None, None)]
    assert [t for t in tasks if t.experiment != 22] == before
    # Not measured by the cost table yet: priced as the costliest CNN measured; the same
    # network as a measured experiment would be priced as that one.
    assert priced_as(new[0].experiment_object()) == 15 and cpu_run_seconds(new[0]) > 0
    assert priced_as(replace(LINE, spec=get_experiment(9).spec)) == 9  # (16 shares it: the first measured)
    monkeypatch.setattr(run_plan, "gpu_ids", lambda: [])
    full = driver.parse_args(["--data", "x.npz", "--only", "06"])
    warning = driver.cost_warning(full, driver.training_tasks(full, driver.chapters(ROOT / "notebooks", ["06"])))
    assert "No GPU found: 49 runs of 27 experiments" in warning  # 48 runs of 26 (sweep points apart) and 22


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One-epoch runs of experiments 2 and 22 on 200 sample images, the new line in the registry."""
    out = tmp_path_factory.mktemp("exp22")
    with pytest.MonkeyPatch.context() as patch:
        add_line(patch)
        data = load_cifar10("sample", subset=200)
        for number in (2, 22):
            run_experiment(number, epochs=1, batch_size=64, data=data, out_dir=out / "runs")
        yield out


def test_chapter6_shows_it_in_the_cell_for_experiments_no_section_shows(trained, capsys):
    cells = nbformat.read(ROOT / "notebooks" / f"{CHAPTER6}.ipynb", as_version=4).cells
    (index,) = [i for i, c in enumerate(cells) if "own-experiments" in c.metadata.get("tags", [])]
    assert "Experiment(22" in cells[index - 1].source and "chapter 6" in cells[index - 1].source  # how to add one
    chapter = Chapter(6, data_source="sample", subset=200, epochs=1, batch_size=64, out_dir=trained, runs="read")
    assert chapter.experiments == [18, 19, 20, 21, 22]
    chapter.ran |= {18, 19, 20, 21}  # the sections above ran these cells
    namespace = {"chapter": chapter, "own": chapter6_settings(None, {}), "own_experiments": own_experiments,
                 "own_seeds": own_seeds}
    exec(compile(cells[index].source, "chapter 6", "exec"), namespace)
    shown = capsys.readouterr().out
    assert model_code(22) in shown and "22. 4-layer model 2, dropout" in shown
    assert "Dense network" not in shown  # experiments a section showed are not shown twice
    assert [(r.experiment, r.seed) for r in chapter.records[22]] == [(22, 0)]
    assert "06_exp22_history.png" in chapter.figures
    recorded = json.loads(chapter.record_results().read_text())
    assert [(row["experiment"], row["seeds"]) for row in recorded["experiments"]][-1] == (22, 1)


def test_the_summary_tables_and_draws_it(trained, capsys):
    summary = Summary(trained, epochs=1, batch_size=64, seeds=[0], data_source="sample", subset=200)
    assert summary.table.loc[22, ["seeds", "chapter"]].tolist() == [1, 6]
    assert "22. 4-layer model 2, dropout" in summary.show_table(study_only=False).index
    summary.overview()
    assert f"2 runs of 2 of the {len(REGISTRY) + 1} experiments" in capsys.readouterr().out
    fig = plot_test_accuracy_curves(summary.registry)
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    assert list(lines) == [get_experiment(2).label, get_experiment(22).label]
    assert tuple(lines[get_experiment(22).label].get_color()) == tuple(plt.get_cmap(chapter_colormap(6))(0.45))
    plt.close(fig)
    summary.curves()
    assert (trained / "figures" / "05_all_test_curves.png").exists()
