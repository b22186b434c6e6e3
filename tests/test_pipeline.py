"""The product end to end: ./run_all.sh --quick, the executed notebooks, the report, the browser."""

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import numpy as np
import pytest

from cifar_utils.experiments import EXPERIMENTS, chapter_experiments

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


def test_committed_notebooks_are_stripped_and_parameterised():
    names = [p.stem for p in NOTEBOOKS]
    assert names == ["01_four_layer_cnn", "02_six_seven_layer_cnn", "03_techniques", "04_vgg_and_augmentation",
                     "05_summary"]
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(not c.outputs and c.execution_count is None for c in code), path.name
        tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, path.name
        names_set = set(re.findall(r"^(\w+) =", tagged[0].source, re.M))
        expected = {"out_dir", "epochs", "batch_size"} if path.stem == "05_summary" else \
            {"epochs", "batch_size", "seeds", "data_source", "subset", "out_dir", "experiments"}
        assert expected <= names_set, (path.name, names_set)
        source = "\n".join(c.source for c in code)
        assert "import keras" not in source and "plt." not in source  # the package does the work
        assert "google.colab" in source or path.stem == "05_summary"


def test_quick_run_reports_progress(quick):
    _, _, stdout = quick
    for nb in NOTEBOOKS:
        assert f"{nb.stem}: started" in stdout and f"{nb.stem}: done" in stdout
    assert re.search(r"\] 04_vgg_and_augmentation: 17\. VGG-like \+ augmentation seed 0: epoch 2/2 .* ETA", stdout)
    assert "all 5 notebooks ran" in stdout


def test_every_notebook_executed_and_recorded_its_numbers(quick):
    out, _, _ = quick
    for chapter in (1, 2, 3, 4):
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
        assert all(row["seeds"] == 1 and 0 <= row["test_acc_mean"] <= 100 for row in recorded["experiments"])
        assert recorded["epochs"] == 2 and "sample" in recorded["data"]
    records = sorted((out / "runs").glob("exp*/record.json"))
    assert len(records) == 17  # every experiment covered, each trained once


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


def test_report_is_self_contained_with_every_figure(quick):
    _, report, _ = quick
    html = (report / "index.html").read_text(encoding="utf-8")
    assert html.splitlines()[0].startswith("<!-- QUICK PROFILE")
    parser = ReportParser()
    parser.feed(html)
    figures = sorted((report / "figures").glob("*.png"))
    expected = {f"{e.chapter:02d}_{e.key}_history.png" for e in EXPERIMENTS} | {
        f"{c:02d}_all_comparison.png" for c in (1, 2, 3, 4, 5)} | {"05_all_test_curves.png"}
    assert {f.name for f in figures} == expected
    embedded = [src for src in parser.images if src.startswith("data:image/png;base64,")]
    assert len(embedded) == len(figures) == len(parser.images)
    assert parser.external == []
    assert parser.tables[0] == 2 + 17  # two header rows, then the 17 experiments
    assert "study's conclusion" in html and "Contents" in html
    assert html.index("Summary") < html.index("Chapter 1 ·")


def test_results_csv_has_the_17_experiments(quick):
    _, report, _ = quick
    with open(report / "results.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert [int(r["experiment"]) for r in rows] == list(range(1, 18))
    assert all(0 <= float(r["test_acc_mean"]) <= 100 and r["seeds"] == "1" for r in rows)
    assert rows[16]["study_test_acc"] == "89.02" and rows[0]["backend"]


def test_second_run_reuses_finished_work(quick):
    out, _, _ = quick
    result = run_all("--quick", "--only", "01", "--out", out, "--no-report")
    assert result.returncode == 0, result.stdout[-2000:]
    assert result.stdout.count("reusing finished run") == 2


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
    assert parser.tables and parser.tables[0] == 19 and len(parser.images) >= 23
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, *flags, "--window-size=1280,2400", f"--screenshot={shot}", url],
                   capture_output=True, timeout=120, check=True)
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape[:2] == (2400, 1280)
    dark = (pixels.sum(axis=2) < 200).mean()  # text and table
    coloured = ((pixels.max(axis=2) - pixels.min(axis=2)) > 100).mean()  # plotted curves and bars
    assert dark > 0.002 and coloured > 0.002, (dark, coloured)


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


def test_no_data_stops_before_training(tmp_path):
    result = run_all("--data", tmp_path / "missing.npz", "--out", tmp_path / "out")
    assert result.returncode != 0
    assert "no CIFAR-10 data reachable" in result.stderr and "--quick" in result.stderr
    assert not (tmp_path / "out" / "runs").exists()


def test_help_lists_the_options():
    result = run_all("--help")
    assert result.returncode == 0
    for option in ("--quick", "--only", "--epochs", "--seeds", "--data", "--jobs", "--continue-on-error",
                   "--force"):
        assert option in result.stdout


def test_cost_warning_on_a_machine_without_gpu(monkeypatch):
    from cifar_utils import backend
    from cifar_utils import run_all as driver

    monkeypatch.setattr(backend, "accelerators", lambda: [])
    full = driver.parse_args(["--data", "x.npz"])
    notebooks = driver.chapters(ROOT / "notebooks", [])
    warning = driver.cost_warning(full, notebooks)
    assert "No GPU found: 17 experiments x 300 epochs x 1 seed(s)" in warning and "--quick" in warning
    hours = float(re.search(r"about (\d+) hours", warning).group(1))
    assert 20 < hours < 100  # ~92 GPU-seconds per epoch-set in the study, ~6x slower here
    assert driver.cost_warning(driver.parse_args(["--quick"]), notebooks) is None
    monkeypatch.setattr(backend, "accelerators", lambda: ["NVIDIA H200"])
    assert driver.cost_warning(full, notebooks) is None
