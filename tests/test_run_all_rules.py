"""./run_all.sh's contract without a full run: arguments checked before anything trains, a
report that holds only what it says, a summary that never averages unlike runs."""

import json
import shutil
from pathlib import Path

import nbformat
import pytest

from cifar_utils import load_cifar10, run_experiment
from cifar_utils import run_all as driver
from cifar_utils.report import build_report, chapter_status
from cifar_utils.summary import Summary

ROOT = Path(__file__).resolve().parents[1]


# --- arguments --------------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["--quick", "--epochs", "0"], "--epochs: '0': must be at least 1"),
    (["--quick", "--subset", "0"], "--subset: '0': must be at least 1"),
    (["--quick", "--subset", "10"], "--subset 10: need at least 20 images"),
    (["--quick", "--batch-size", "0"], "--batch-size: '0': must be at least 1"),
    (["--quick", "--seeds", ""], "--seeds: '': give comma-separated whole numbers"),
    (["--quick", "--seeds", "a,b"], "--seeds: 'a,b': seeds must be whole numbers"),
    (["--quick", "--seeds", "0,,1"], "--seeds: '0,,1': give comma-separated whole numbers"),
    (["--quick", "--seeds", "1,1"], "--seeds: '1,1': seeds must be distinct"),
    (["--quick", "--jobs", "0"], "--jobs: '0': must be at least 1"),
    (["--quick", "--epochs", "two"], "--epochs: 'two' is not a whole number"),
    (["--quick", "--reference", "results"], "--quick and --reference exclude each other"),
])
def test_bad_arguments_are_refused_by_name(argv, message, capsys):
    # On b2552c0 --epochs 0, --subset 0 and --seeds '' silently became the defaults (300
    # epochs, the full data), and 'a,b' or '0,,1' ended in a raw ValueError traceback.
    with pytest.raises(SystemExit) as caught:
        driver.parse_args(argv)
    assert caught.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--out", "--report"])
def test_an_output_folder_that_is_a_file_is_refused_before_training(flag, tmp_path, capsys):
    # On b2552c0 --report pointing at a file failed with FileExistsError after every notebook ran.
    occupied = tmp_path / "taken"
    occupied.write_text("not a folder")
    with pytest.raises(SystemExit):
        driver.parse_args(["--quick", flag, str(occupied)])
    assert f"{flag} {occupied}: exists and is not a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        driver.parse_args(["--quick", flag, str(occupied / "below")])
    assert "is not a folder" in capsys.readouterr().err


def test_good_arguments_and_profiles():
    quick = driver.parse_args(["--quick", "--seeds", "0,1,2", "--subset", "500"])
    assert quick.seeds == [0, 1, 2] and quick.epochs == 2 and quick.subset == 500 and quick.data == "sample"
    full = driver.parse_args(["--data", "x.npz"])
    assert full.epochs is None and full.batch_size is None and full.profile == "full"


def test_cost_warning_on_a_machine_without_gpu(monkeypatch):
    monkeypatch.setattr(driver, "gpu_ids", lambda: [])
    full = driver.parse_args(["--data", "x.npz", "--only", "01,02,03,04"])
    notebooks = driver.chapters(ROOT / "notebooks", full.only)
    warning = driver.cost_warning(full, driver.training_tasks(full, notebooks))
    assert "No GPU found: 17 runs of 17 experiments" in warning and "--quick" in warning
    hours = float(warning.split("about ")[1].split(" hours")[0])
    assert 20 < hours < 100  # the cost table: about 11 minutes per epoch of all 17, 300 epochs
    quick = driver.parse_args(["--quick"])
    assert driver.cost_warning(quick, driver.training_tasks(quick, driver.chapters(ROOT / "notebooks", []))) is None
    monkeypatch.setattr(driver, "gpu_ids", lambda: ["0"])
    assert driver.cost_warning(full, driver.training_tasks(full, notebooks)) is None


def test_training_tasks_cover_every_chapter_once():
    args = driver.parse_args(["--quick"])
    tasks = driver.training_tasks(args, driver.chapters(ROOT / "notebooks", []))
    keys = [(t.experiment, t.variant_label, t.seed) for t in tasks]
    assert len(keys) == len(set(keys))  # a run two chapters share is trained once
    assert {(n, None, 0) for n in range(1, 22)} <= set(keys)
    assert {(n, None, 1) for n in range(1, 22)}.isdisjoint(keys)  # quick: one seed everywhere
    grid = [t for t in tasks if t.variant_label and t.variant_label.startswith("lr=")]
    assert grid and all(t.batch_size is None for t in grid)  # the grid varies the batch size itself


# --- what a report may hold -----------------------------------------------------------------

def fake_executed(out: Path, stem: str, parameters: dict, marker_token: str | None, figures=()):
    """An executed notebook as papermill leaves it, and the chapter's results marker."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {stem} title"), nbformat.v4.new_markdown_cell("body")]
    nb.metadata["papermill"] = {"parameters": parameters, "end_time": "2026-11-28T10:00:00"}
    (out / "notebooks").mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out / "notebooks" / f"{stem}.ipynb")
    (out / "results").mkdir(exist_ok=True)
    (out / "figures").mkdir(exist_ok=True)
    for name in figures:
        (out / "figures" / name).write_bytes(b"\x89PNG\r\n\x1a\n")
    if marker_token is not None:
        name = "summary.json" if stem == "05_summary" else f"chapter_{stem[:2]}.json"
        (out / "results" / name).write_text(json.dumps({"run_token": marker_token, "figures": list(figures)}))


def test_report_holds_only_finished_chapters_with_these_settings(tmp_path):
    out = tmp_path / "out"
    now = {"epochs": 3, "data_source": "sample", "run_token": "now"}
    profile = {"profile": "quick", "run_token": "now", "epochs": 3,
               "parameters": {s: {k: v for k, v in now.items() if k != "run_token"} for s in
                              ("01_a", "02_b", "03_c", "04_d", "05_summary")}}
    (tmp_path / "out").mkdir()
    (out / "profile.json").write_text(json.dumps(profile))
    fake_executed(out, "01_a", now, "now", ["01_exp01_history.png"])  # ran now
    fake_executed(out, "02_b", {**now, "epochs": 2, "run_token": "old"}, "old", ["02_exp03_history.png"])
    fake_executed(out, "03_c", {**now, "run_token": "older"}, "oldest", ["03_exp07_history.png"])  # interrupted
    fake_executed(out, "04_d", {**now, "run_token": "before"}, "before", ["04_exp15_history.png"])  # same settings
    fake_executed(out, "05_summary", now, "now", ["05_all_comparison.png"])
    statuses = {p.stem: chapter_status(p, out, profile) for p in sorted((out / "notebooks").glob("*.ipynb"))}
    assert statuses["01_a"].included and statuses["01_a"].note == "ran in this invocation"
    assert not statuses["02_b"].included and "other settings: epochs 2 (now 3)" in statuses["02_b"].note
    assert not statuses["03_c"].included and "did not finish" in statuses["03_c"].note
    assert statuses["04_d"].included and "earlier invocation with the same settings" in statuses["04_d"].note
    index = build_report(out, tmp_path / "report")
    html = index.read_text()
    assert "01_a title" in html and "04_d title" in html and "02_b title" not in html and "03_c title" not in html
    assert "Not in this report" in html and "left out: made with other settings" in html
    copied = sorted(p.name for p in (tmp_path / "report" / "figures").iterdir())
    assert copied == ["01_exp01_history.png", "04_exp15_history.png", "05_all_comparison.png"]  # no stale figures


def test_a_chapter_failing_in_this_invocation_is_marked(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    params = {"epochs": 2, "run_token": "now"}
    (out / "profile.json").write_text(json.dumps({"run_token": "now", "parameters": {"01_a": {"epochs": 2}}}))
    fake_executed(out, "01_a", params, None)
    status = chapter_status(out / "notebooks" / "01_a.ipynb", out, json.loads((out / "profile.json").read_text()))
    assert status.included and status.note.startswith("FAILED in this invocation")
    html = build_report(out, tmp_path / "report").read_text()
    assert "This chapter FAILED in this invocation" in html


# --- a summary never averages unlike runs --------------------------------------------------

def test_summary_keeps_one_dataset_and_says_what_it_left_out(tmp_path, capsys):
    # On b2552c0 a run on the sample and one on an npz subset were averaged as "2 seeds".
    sample = load_cifar10("sample", subset=200)
    other = load_cifar10("sample", subset=300)
    runs = tmp_path / "runs"
    run_experiment(2, epochs=1, batch_size=64, data=sample, out_dir=runs)
    run_experiment(2, epochs=1, batch_size=64, data=other, out_dir=runs)
    run_experiment(2, epochs=2, batch_size=64, data=sample, out_dir=runs)
    summary = Summary(tmp_path, epochs=1, batch_size=64, seeds=[0], data_source="sample", subset=200)
    assert len(summary.registry) == 1 and summary.table.loc[2, "seeds"] == 1
    assert len(summary.left_out) == 2
    summary.overview()
    out = capsys.readouterr().out
    assert "1 runs of 1 of the 21 experiments" in out and "2 finished run(s)" in out and "left out" in out
    assert "(subset 200, seed 0)" in out


def test_summary_leaves_a_damaged_record_out_and_names_it(tmp_path, capsys):
    sample = load_cifar10("sample", subset=200)
    good = run_experiment(2, epochs=1, batch_size=64, data=sample, out_dir=tmp_path / "runs", seeds=[0, 1])
    (Path(good[1].run_dir) / "record.json").write_text("{")
    with pytest.warns(UserWarning, match="damaged run record"):
        summary = Summary(tmp_path, epochs=1, batch_size=64, seeds=[0, 1], data_source="sample", subset=200)
    assert [r.seed for r in summary.registry] == [0]
    summary.overview()
    assert "1 damaged record(s) left out" in capsys.readouterr().out
    shutil.rmtree(tmp_path / "runs")


def test_an_earlier_chapter_whose_runs_were_retrained_is_left_out(tmp_path):
    # On b2552c0 a chapter from an earlier invocation stayed in the report after --force had
    # retrained (or an interruption had removed) the runs it showed.
    out = tmp_path / "out"
    data = load_cifar10("sample", subset=200)
    record = run_experiment(2, epochs=1, batch_size=64, data=data, out_dir=out / "runs")
    profile = {"run_token": "now", "parameters": {"01_a": {"epochs": 1}}}
    (out / "profile.json").write_text(json.dumps(profile))
    fake_executed(out, "01_a", {"epochs": 1, "run_token": "before"}, "before")
    marker = out / "results" / "chapter_01.json"
    marker.write_text(json.dumps({"run_token": "before", "runs_in": str(out / "runs"),
                                  "runs": {Path(record.run_dir).name: record.digest()}}))
    path = out / "notebooks" / "01_a.ipynb"
    assert chapter_status(path, out, profile).included  # the same runs are still there
    run_experiment(2, epochs=1, batch_size=64, data=data, out_dir=out / "runs", force=True)
    status = chapter_status(path, out, profile)
    assert not status.included and "retrained or removed since" in status.note


def test_jobs_default_to_one_per_gpu_or_two_on_a_cpu(monkeypatch):
    monkeypatch.setattr(driver, "gpu_ids", lambda: ["0", "1", "2"])
    assert driver.default_jobs() == 3
    monkeypatch.setattr(driver, "gpu_ids", lambda: [])
    monkeypatch.setattr(driver.os, "cpu_count", lambda: 8)
    assert driver.default_jobs() == 2  # two workers on a CPU: measured faster than one (docs/benchmarks.md)
    monkeypatch.setattr(driver.os, "cpu_count", lambda: 1)
    assert driver.default_jobs() == 1
    args = driver.parse_args(["--quick", "--jobs", "3", "--out", "/tmp/never-made"])
    assert args.jobs == 3 and args.subset == 500 and args.epochs == 2


def test_a_folder_trained_in_pieces_names_each_piece(tmp_path, monkeypatch):
    monkeypatch.setattr(driver, "data_identity", lambda args: {"data_fingerprint": "abc"})
    args_list = ["--profile", "cpu", "--data", "x.npz", "--out", str(tmp_path / "out"), "--train-only"]
    args = driver.parse_args(args_list)
    notebooks = driver.chapters(ROOT / "notebooks", [])
    monkeypatch.setattr(driver, "source_identity", lambda: {"package_version": "0.2.0", "commit": "aaa"})
    first = driver.write_profile(args, notebooks)
    assert driver.write_profile(args, notebooks)["pieces"] == first["pieces"]  # the same invocation once
    monkeypatch.setattr(driver, "source_identity", lambda: {"package_version": "0.2.0", "commit": "bbb"})
    second = driver.write_profile(args, notebooks)
    assert [p["commit"] for p in second["pieces"]] == ["aaa", "bbb"]
    chapter_one = driver.write_profile(driver.parse_args([*args_list, "--only", "01"]), driver.chapters(
        ROOT / "notebooks", ["01"]))
    assert [p["chapters"] for p in chapter_one["pieces"]][-2:] == [[nb.stem for nb in notebooks], ["01_four_layer_cnn"]]
    second = driver.write_profile(args, notebooks)
    assert json.loads((tmp_path / "out" / "profile.json").read_text())["pieces"] == second["pieces"]
    other = driver.parse_args(["--profile", "cpu", "--data", "x.npz", "--out", str(tmp_path / "out"), "--epochs", "5"])
    assert [p["commit"] for p in driver.write_profile(other, notebooks)["pieces"]] == ["bbb"]  # other runs: anew


def test_only_names_the_summary_for_what_it_is_and_unknown_chapters_by_number():
    summary = (r"--only 05: 05_summary.ipynb is the summary, which runs after the chosen chapters every time; "
               r"--only takes chapter numbers \(01, 02, 03, 04, 06\)")
    with pytest.raises(SystemExit, match=summary):
        driver.chapters(ROOT / "notebooks", ["05"])
    with pytest.raises(SystemExit, match="no chapter notebook numbered 09 in"):
        driver.chapters(ROOT / "notebooks", ["09"])
    assert [p.stem[:2] for p in driver.chapters(ROOT / "notebooks", ["06", "01"])] == ["01", "06"]


def test_only_the_shipped_reference_writes_the_committed_report_by_default(tmp_path):
    shipped = driver.parse_args(["--reference", str(ROOT / "results" / "reference"), "--out", str(tmp_path / "r")])
    assert shipped.report == (ROOT / "report").resolve()
    quick = driver.parse_args(["--quick", "--out", str(tmp_path / "q")])
    assert quick.report == (tmp_path / "q-report").resolve()
    assert driver.parse_args(["--quick"]).report == (ROOT / "output" / "quick-report").resolve()
    other = tmp_path / "other-reference"
    other.mkdir()
    assert driver.parse_args(["--reference", str(other), "--out", str(tmp_path / "o")]).report == tmp_path / "o-report"
