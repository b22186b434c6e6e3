"""The product end to end: ./run_all.sh --quick, the executed notebooks, the report, the browser."""

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import types
from html.parser import HTMLParser
from pathlib import Path

import keras
import nbformat
import numpy as np
import pytest

from cifar_utils.chapter import Chapter, as_experiment
from cifar_utils.course import CHAPTER_PARAMETERS
from cifar_utils.experiments import EXPERIMENTS, STUDY_EXPERIMENTS, chapter_experiments, get_experiment
from cifar_utils.model_code import code_changes, model_code, model_differences
from cifar_utils.models import build_model

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def run_all(*args, timeout=1200):
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run([str(ROOT / "run_all.sh"), *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """One real --quick run (all five notebooks, all 17 experiments), shared by the tests below."""
    base = tmp_path_factory.mktemp("quick")
    out, report = base / "output", base / "report"
    result = run_all("--quick", "--out", out, "--report", report)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out, report, result.stdout


SUMMARY_PARAMETERS = {"out_dir", "epochs", "batch_size", "seeds", "data_source", "subset", "eval_every",
                      "runs", "run_token"}
# The figures each chapter must show, so they also appear in --quick (issue #8, #9).
TEACHING_FIGURES = {
    "01_all_examples", "01_all_input_scale", "02_all_parameters", "02_all_train_vs_test", "03_all_dropout_mask",
    "03_all_batch_norm", "03_all_bn_momentum", "03_all_init_spread", "03_all_gap", "04_all_augment_draws",
    "04_all_15_vs_17", "05_all_confusion", "05_all_mistakes", "05_all_accuracy_vs_time", "06_all_factorial",
    "06_all_grid", "06_all_dropout_sweep", "06_all_accuracy_vs_time", "06_all_schedules", "06_all_label_smoothing",
    "06_all_whitening", "06_all_tta",
}


def code_cells(path):
    return [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


def test_committed_notebooks_are_stripped_and_parameterised():
    names = [p.stem for p in NOTEBOOKS]
    assert names == ["01_four_layer_cnn", "02_six_seven_layer_cnn", "03_techniques", "04_vgg_and_augmentation",
                     "05_summary", "06_beyond_the_study"]
    for path in NOTEBOOKS:
        code = code_cells(path)
        assert all(not c.outputs and c.execution_count is None for c in code), path.name
        tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, path.name
        names_set = set(re.findall(r"^(\w+) =", tagged[0].source, re.M))
        expected = SUMMARY_PARAMETERS if path.stem == "05_summary" else set(CHAPTER_PARAMETERS)
        assert expected <= names_set, (path.name, expected - names_set)
        # literals only: papermill injects its values after this cell, derived values belong below
        assert all(re.match(r"^(\w+ = [-\w\[\]{}.,:\"' ]+(  #.*)?|#.*)$", line)
                   for line in tagged[0].source.splitlines()), path.name
        assert "google.colab" in "\n".join(c.source for c in code)


def test_each_chapter_ends_with_exercises_and_a_runnable_starter():
    for path in NOTEBOOKS:
        cells = nbformat.read(path, as_version=4).cells
        exercises = [i for i, c in enumerate(cells) if c.cell_type == "markdown" and c.source.startswith(
            "## Exercises")]
        assert len(exercises) == 1, path.name
        items = re.findall(r"^\d\. \*\*", cells[exercises[0]].source, re.M)
        assert 3 <= len(items) <= 5, (path.name, len(items))
        after = [c for c in cells[exercises[0] + 1:] if c.cell_type == "code"]
        if path.stem != "05_summary":  # the summary trains nothing; its exercises are questions
            assert "try_out(" in after[0].source and "Hint" in cells[exercises[0]].source, path.name
        assert "record_results()" in after[-1].source and cells[-1] is after[-1], path.name  # the marker is last


def test_the_code_chapter_1_shows_is_the_model_experiment_1_trains():
    (cell,) = [c for c in code_cells(NOTEBOOKS[0]) if "model-1" in c.metadata.get("tags", [])]
    namespace = {}
    exec("import keras\nfrom keras import layers", namespace)  # as the chapter's first cell does
    exec(compile(cell.source.replace("model.summary()", ""), "chapter 1", "exec"), namespace)
    assert model_differences(namespace["model"], build_model(1)) == []
    assert namespace["model"].count_params() == 24_522


@pytest.mark.slow
def test_chapter_1_shows_the_studys_compile_and_fit_and_trains_only_when_asked(tmp_path, capsys):
    import keras
    from keras import layers

    from cifar_utils.data import load_cifar10, stratified_share

    cells = nbformat.read(NOTEBOOKS[0], as_version=4).cells
    (index,) = [i for i, c in enumerate(cells) if c.cell_type == "code" and "model.fit(" in c.source]
    cell, before = cells[index], cells[index - 1]
    source = " ".join(cell.source.split())
    assert ('model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3), loss="categorical_crossentropy", '
            'metrics=["accuracy"])') in source  # the study's own lines
    assert "model.fit(x_train, y_train, batch_size=512, epochs=epochs, validation_data=(x_test, y_test)" in source
    (shown_at,) = [i for i, c in enumerate(cells) if "model-1" in c.metadata.get("tags", [])]
    assert shown_at < index <= shown_at + 4  # right after the model's code, its note and its check
    assert before.cell_type == "markdown" and "What it costs" in before.source  # the cost, before the cell
    assert "cifar_utils.compile_model" in before.source and "run_experiment" in before.source

    (x_train, y_train), (x_test, y_test) = load_cifar10("sample", subset=300)
    shown = []

    def run(chapter):
        namespace = {"keras": keras, "layers": layers, "stratified_share": stratified_share, "show": shown.append,
                     "chapter": chapter, "x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
        exec(compile(cell.source, "chapter 1", "exec"), namespace)
        return namespace

    reference = Chapter(1, out_dir=tmp_path, data_source="sample", runs=str(ROOT / "results" / "reference"))
    quick = Chapter(1, out_dir=tmp_path, data_source="sample", exercises=False)  # as ./run_all.sh --quick sets it
    for chapter in (reference, quick):
        assert "history" not in run(chapter)
    said = capsys.readouterr().out
    assert "shows the reference results and trains nothing" in said and "`exercises = False`" in said
    trained = run(types.SimpleNamespace(exercise_allowed=lambda cost: True))
    history, model = trained["history"], trained["study_model"]
    assert history.epoch == [0] and history.params["steps"] == 1  # 300 images, batch 512
    assert {"accuracy", "val_accuracy", "loss", "val_loss"} <= set(history.history)
    assert model.loss == "categorical_crossentropy" and float(model.optimizer.learning_rate) == pytest.approx(1e-3)
    assert model.layers[-1].get_config()["activation"] == "softmax"  # the slide's model, not the logits one
    assert "After 1 epoch on 300 training images (1 step of up to 512" in shown[0]
    assert not (tmp_path / "runs").exists()


def starter_calls(path):
    """What each of a chapter's exercise starter cells hands to ``try_out``: one list per cell."""
    calls = []

    class Recorder:
        def try_out(self, experiments, **_):
            calls.append(list(experiments))

    for cell in code_cells(path):
        if re.search(r"^chapter\.try_out\(", cell.source, re.M):  # a call, not one quoted in a sentence
            exec(cell.source, {"chapter": Recorder(), "get_experiment": get_experiment, "keras": keras})
    return calls


def starter_experiments(path):
    """The experiments a chapter's first exercise starter cell hands to ``try_out``."""
    return starter_calls(path)[0]


@pytest.mark.slow
@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.stem != "05_summary"], ids=lambda p: p.stem[:2])
def test_every_exercise_starter_builds_its_models(path):
    for call in starter_calls(path):
        assert len(call) >= 2, path.name  # a comparison: the chapter's model and a variant
        experiments = [as_experiment(model) for model in call]
        models = [build_model(exp) for exp in experiments]
        assert all(m.count_params() > 0 for m in models)
        first, second = experiments[:2]
        assert (first.spec, first.recipe) != (second.spec, second.recipe), path.name  # something to compare


def test_chapter_3s_own_dropout_networks_are_experiment_7_and_its_channel_wise_twin():
    element_wise, channel_wise = starter_calls(NOTEBOOKS[2])[1]
    assert model_differences(element_wise, build_model(7)) == []  # the code shown is experiment 7's network
    assert model_differences(channel_wise, build_model(7)) == [
        f"layer {i}: SpatialDropout2D != Dropout" for i in (2, 5, 8, 11, 14)]  # after each of the five pools


@pytest.mark.slow
def test_a_starter_trains_briefly_into_its_own_folder(tmp_path):
    chapter = Chapter(3, out_dir=tmp_path, data_source="sample")
    records = chapter.try_out(starter_experiments(NOTEBOOKS[2]), epochs=1, subset=300)
    assert [r.epochs_completed for r in records] == [1, 1] and records[1].params["variant"] == "dropout=0.5"
    assert {p.parent.name for p in tmp_path.glob("exercises/*/record.json")} == {
        Path(r.run_dir).name for r in records} and not (tmp_path / "runs").exists()
    skipped = Chapter(3, out_dir=tmp_path / "quick", data_source="sample", exercises=False)
    assert skipped.try_out([9]) == [] and not (tmp_path / "quick").exists()


@pytest.mark.slow
def test_quick_run_reports_progress(quick):
    _, _, stdout = quick
    for nb in NOTEBOOKS:
        assert f"{nb.stem}: started" in stdout and f"{nb.stem}: done" in stdout
    assert re.search(r"\] train: 17\. VGG-like \+ augmentation seed 0: epoch 2/2 .* ETA", stdout)
    total = int(re.search(r"pool: (\d+) runs on", stdout).group(1))
    assert f"pool: {total}/{total} runs done" in stdout and re.search(r"pool: 1/\d+ runs done .* ETA", stdout)
    assert "all 6 notebooks ran" in stdout


@pytest.mark.slow
def test_every_notebook_executed_and_recorded_its_numbers(quick):
    out, _, _ = quick
    for chapter in (1, 2, 3, 4, 6):
        executed = next((out / "notebooks").glob(f"{chapter:02d}_*.ipynb"))
        nb = nbformat.read(executed, as_version=4)
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
        assert not [o for o in outputs if o.output_type == "error"], executed.name
        text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
        assert "\r" not in text and "\x08" not in text  # no progress bars stored
        assert executed.stat().st_size < 3_000_000
        recorded = json.loads((out / "results" / f"chapter_{chapter:02d}.json").read_text())
        numbers = [row["experiment"] for row in recorded["experiments"]]
        assert numbers == [e.number for e in chapter_experiments(chapter)]
        assert all(row["seeds"] >= 1 and 0 <= row["test_acc_mean"] <= 100 for row in recorded["experiments"])
        assert recorded["epochs"] == 2 and "sample" in recorded["data"]
    records = [json.loads(p.read_text()) for p in (out / "runs").glob("exp*/record.json")]
    registry = {(r["experiment"], r["seed"]) for r in records if not r["variant"]}
    assert {(e.number, 0) for e in EXPERIMENTS} <= registry  # every experiment covered
    assert len(records) == len({Path(r["run_dir"]).name for r in records})  # each run trained once


@pytest.mark.slow
def test_the_code_each_chapter_shows_is_the_model_it_trains(quick):
    """Every experiment's listing, or its diff from an earlier one, is shown; both are
    generated from the very model that trains (tests/test_model_code.py runs each listing)."""
    out, _, _ = quick
    shown = ""
    for path in sorted((out / "notebooks").glob("0[1-46]_*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            for output in cell.get("outputs", []):
                shown += output.get("data", {}).get("text/markdown", "")
    for exp in STUDY_EXPERIMENTS[1:]:
        shows_code = model_code(exp) in shown or any(
            code_changes(before, exp) in shown for before in range(exp.number - 1, 0, -1))  # nearest first
        assert shows_code, f"experiment {exp.number}: no listing or diff shown"
    for number in [e.number for e in chapter_experiments(6)]:
        assert model_code(number) in shown or any(code_changes(b, number) in shown for b in range(number - 1, 0, -1))


class ReportParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.external, self.tables, self._rows = [], [], [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        if tag in ("script", "link", "img") and re.match(r"https?:", attrs.get("src") or attrs.get("href") or ""):
            self.external.append(attrs)
        if tag == "table":
            self._rows = 0
        if tag == "tr" and self._rows is not None:
            self._rows += 1

    def handle_endtag(self, tag):
        if tag == "table" and self._rows is not None:
            self.tables.append(self._rows)
            self._rows = None


@pytest.mark.slow
def test_report_is_self_contained_with_every_figure(quick):
    out, report, _ = quick
    html = (report / "index.html").read_text(encoding="utf-8")
    assert html.splitlines()[0].startswith("<!-- QUICK PROFILE")
    parser = ReportParser()
    parser.feed(html)
    figures = {f.stem for f in (report / "figures").glob("*.png")}
    recorded = set()
    for marker in (out / "results").glob("*.json"):
        recorded |= {Path(name).stem for name in json.loads(marker.read_text()).get("figures", [])}
    assert figures == recorded  # exactly the figures of the chapters in the report
    expected = {f"{e.chapter:02d}_{e.key}_history" for e in STUDY_EXPERIMENTS} | {
        f"{c:02d}_all_comparison" for c in (1, 2, 3, 4, 5)} | {"05_all_test_curves"} | TEACHING_FIGURES
    assert expected <= figures, expected - figures
    embedded = [src for src in parser.images if src.startswith("data:image/png;base64,")]
    assert len(embedded) == len(parser.images) >= len(figures)
    assert parser.external == []
    assert parser.tables[0] == 2 + 17  # the study's table: two header rows, then the 17 experiments
    assert "conclusion" in html and "Contents" in html and "ran in this invocation" in html
    assert html.index("Summary") < html.index("Chapter 1 ·") < html.index("Chapter 6 ·")
    for explanation in ("Why the input scale should matter", "Dropout: train many thinned networks",
                        "Augmentation: new training images", "Exercises", "Why the techniques only work together"):
        assert explanation in html
    assert "optimistic number" in html  # the honesty note where the best epoch is shown


@pytest.mark.slow
def test_results_csv_has_the_17_experiments(quick):
    _, report, _ = quick
    with open(report / "results.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert [int(r["experiment"]) for r in rows] == [e.number for e in EXPERIMENTS]
    assert all(0 <= float(r["test_acc_mean"]) <= 100 and int(r["seeds"]) >= 1 for r in rows)
    assert rows[16]["study_test_acc"] == "89.02" and rows[0]["backend"]
    assert all(r["study_test_acc"] == "" for r in rows[len(STUDY_EXPERIMENTS):])  # the course's own


@pytest.mark.slow
def test_second_run_reuses_finished_work(quick):
    out, _, _ = quick
    result = run_all("--quick", "--only", "01", "--out", out, "--no-report")
    assert result.returncode == 0, result.stdout[-2000:]
    assert len(re.findall(r"\] train: .*reusing finished run", result.stdout)) == 2  # the pool trains nothing
    assert "pool: 2/2 runs done" in result.stdout


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM and not os.environ.get("CI"), reason="chromium not installed")
def test_report_renders_in_headless_chromium(quick, tmp_path):
    assert CHROMIUM, "CI must install Debian's chromium (see .ci/run)"
    _, report, _ = quick
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars"]
    url = (report / "index.html").as_uri()
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    parser = ReportParser()
    parser.feed(dom)
    assert parser.tables and parser.tables[0] == 19 and len(parser.images) >= 40
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, *flags, "--window-size=1280,2400", f"--screenshot={shot}", url],
                   capture_output=True, timeout=120, check=True)
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape[:2] == (2400, 1280)
    dark = (pixels.sum(axis=2) < 200).mean()  # text and table
    coloured = ((pixels.max(axis=2) - pixels.min(axis=2)) > 100).mean()  # plotted curves and bars
    assert dark > 0.002 and coloured > 0.002, (dark, coloured)


@pytest.mark.slow
def test_failing_notebook_fails_the_run_by_name(tmp_path):
    notebooks = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", notebooks)
    path = notebooks / "01_four_layer_cnn.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(4, nbformat.v4.new_code_cell('raise RuntimeError("deliberate failure")'))
    nbformat.write(nb, path)
    result = run_all("--quick", "--only", "01", "--notebooks", notebooks, "--out", tmp_path / "out", "--no-report")
    assert result.returncode == 1
    assert "FAILED notebooks: 01_four_layer_cnn" in result.stdout
    executed = nbformat.read(tmp_path / "out" / "notebooks" / "01_four_layer_cnn.ipynb", as_version=4)
    errors = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert errors and errors[0].evalue == "deliberate failure"  # the partial executed copy is kept


@pytest.mark.slow
def test_no_data_stops_before_training(tmp_path):
    result = run_all("--data", tmp_path / "missing.npz", "--out", tmp_path / "out")
    assert result.returncode != 0
    assert "no CIFAR-10 data reachable" in result.stderr and "--quick" in result.stderr
    assert not (tmp_path / "out" / "runs").exists()


@pytest.mark.slow
def test_help_lists_the_options():
    result = run_all("--help")
    assert result.returncode == 0
    for option in ("--quick", "--only", "--epochs", "--seeds", "--data", "--jobs", "--continue-on-error",
                   "--force"):
        assert option in result.stdout


@pytest.mark.slow
def test_reference_folder_renders_every_chapter_without_training(quick, tmp_path):
    """The committed report is built this way from results/reference (a GPU run); here from quick runs."""
    from cifar_utils.runs.reference import export_reference, load_reference

    out, _, _ = quick
    reference = tmp_path / "reference"
    copied = export_reference(out, reference)
    assert copied == len(list((out / "runs").glob("*/record.json")))
    assert not list(reference.rglob("*.weights.h5"))  # records, histories and predictions only
    assert len(load_reference(reference).records) == copied
    result = run_all("--reference", reference, "--only", "01", "--out", tmp_path / "out",
                     "--report", tmp_path / "report")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "nothing is trained" in result.stdout and "pool:" not in result.stdout
    assert ": epoch " not in result.stdout  # not one epoch trained, exercises included
    html = (tmp_path / "report" / "index.html").read_text(encoding="utf-8")
    assert html.splitlines()[0].startswith("<!-- Reference results from")
    assert "Not in this report" not in html and "Reference results from" in html
    figures = {f.stem for f in (tmp_path / "report" / "figures").glob("*.png")}
    expected = {f for f in TEACHING_FIGURES if f.startswith(("01", "05"))} | {"05_all_comparison", "05_all_test_curves"}
    assert expected <= figures, expected - figures
    assert "06_all_factorial" not in figures  # chapter 6 was not rendered: neither it nor its figures
    table = (tmp_path / "out" / "results" / "results.csv").read_text()
    assert table == (out / "results" / "results.csv").read_text()  # the same numbers as the run that made them
