"""./run_all.sh's contract without a full run: arguments checked before anything trains, a
report that holds only what it says, a summary that never averages unlike runs."""

import errno
import json
import os
import shutil
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest

from cifar_utils import load_cifar10, report, run_args, run_experiment, run_plan, run_profile, storage
from cifar_utils import run_all as driver
from cifar_utils.errors import RunStorageError
from cifar_utils.experiments import EXPERIMENTS
from cifar_utils.report import build_report, chapter_status
from cifar_utils.summary import Summary

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def lock_wait_restored(monkeypatch):
    """``main`` sets $CIFAR_UTILS_LOCK_WAIT for its workers; no other test may inherit it."""
    monkeypatch.setenv("CIFAR_UTILS_LOCK_WAIT", "1800")


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
    # On 41e0ce3 these were found only after the data loaded, with a raw traceback.
    (["--quick", "--cluster", "local:0"], "--cluster 'local:0': a local cluster is local:N with N >= 1"),
    (["--quick", "--cluster", "local:x"], "--cluster 'local:x': a local cluster is local:N with N >= 1"),
    (["--quick", "--cluster", "tcp://gpu-head:port"], "--cluster 'tcp://gpu-head:port': give a scheduler address"),
    (["--quick", "--stall-timeout", "0"], "--stall-timeout: '0': must be at least 1"),
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
    monkeypatch.setattr(run_plan, "gpu_ids", lambda: [])
    full = driver.parse_args(["--data", "x.npz", "--only", "01,02,03,04"])
    notebooks = driver.chapters(ROOT / "notebooks", full.only)
    warning = driver.cost_warning(full, driver.training_tasks(full, notebooks))
    assert "No GPU found: 17 runs of 17 experiments" in warning and "--quick" in warning
    hours = float(warning.split("about ")[1].split(" hours")[0])
    assert 20 < hours < 100  # the cost table: about 11 minutes per epoch of all 17, 300 epochs
    quick = driver.parse_args(["--quick"])
    assert driver.cost_warning(quick, driver.training_tasks(quick, driver.chapters(ROOT / "notebooks", []))) is None
    monkeypatch.setattr(run_plan, "gpu_ids", lambda: ["0"])
    assert driver.cost_warning(full, driver.training_tasks(full, notebooks)) is None


def test_training_tasks_cover_every_chapter_once():
    args = driver.parse_args(["--quick"])
    tasks = driver.training_tasks(args, driver.chapters(ROOT / "notebooks", []))
    keys = [(t.experiment, t.variant_label, t.seed) for t in tasks]
    assert len(keys) == len(set(keys))  # a run two chapters share is trained once
    assert {(e.number, None, 0) for e in EXPERIMENTS} <= set(keys)
    assert {(e.number, None, 1) for e in EXPERIMENTS}.isdisjoint(keys)  # quick: one seed everywhere
    grid = [t for t in tasks if t.variant_label and t.variant_label.startswith("lr=")]
    assert grid and all(t.settings.batch_size is None for t in grid)  # the grid varies the batch size itself


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

@pytest.mark.slow
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
    assert f"1 runs of 1 of the {len(EXPERIMENTS)} experiments" in out
    assert "2 finished run(s)" in out and "left out" in out
    assert "(subset 200, seed 0)" in out


@pytest.mark.slow
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


@pytest.mark.slow
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


def test_the_driver_shows_a_notebooks_run_lines_and_failures_not_its_chatter():
    # papermill --log-output logs each line a cell prints as it is
    line = "2. Baseline seed 0: epoch 3/10  loss 1.2"
    assert driver.notebook_line(line + "\n") == line
    assert driver.notebook_line("@@progress 2. Baseline seed 1: any words\n") == "2. Baseline seed 1: any words"
    assert driver.notebook_line("ValueError: no such file\n") == "ValueError: no such file"
    assert driver.notebook_line("Executing notebook with kernel: python3\n") is None


def test_a_worker_line_is_shown_when_it_is_a_runs_progress_or_a_failure():
    from cifar_utils.runs.pool import relayed

    assert relayed("@@progress exp 2 seed 0: reworded\n", driver.is_progress) == "exp 2 seed 0: reworded"
    assert relayed("Traceback (most recent call last):\n", driver.is_progress) == "Traceback (most recent call last):"
    assert relayed("I0000 cuda_dnn.cc:8] chatter\n", driver.is_progress) is None


def test_jobs_default_to_one_per_gpu_or_two_on_a_cpu(monkeypatch):
    monkeypatch.setattr(run_args, "gpu_ids", lambda: ["0", "1", "2"])
    assert run_args.default_jobs() == 3
    monkeypatch.setattr(run_args, "gpu_ids", lambda: [])
    monkeypatch.setattr(run_args.os, "cpu_count", lambda: 8)
    assert run_args.default_jobs() == 2  # two workers on a CPU: measured faster than one (docs/benchmarks.md)
    monkeypatch.setattr(run_args.os, "cpu_count", lambda: 1)
    assert run_args.default_jobs() == 1
    args = driver.parse_args(["--quick", "--jobs", "3", "--out", "/tmp/never-made"])
    assert args.jobs == 3 and args.subset == 500 and args.epochs == 2


def test_a_folder_trained_in_pieces_names_each_piece(tmp_path, monkeypatch):
    monkeypatch.setattr(run_profile, "data_identity", lambda args: {"data_fingerprint": "abc"})
    args_list = ["--profile", "cpu", "--data", "x.npz", "--out", str(tmp_path / "out"), "--train-only"]
    args = driver.parse_args(args_list)
    notebooks = driver.chapters(ROOT / "notebooks", [])
    monkeypatch.setattr(run_profile, "source_identity", lambda: {"package_version": "0.2.0", "commit": "aaa"})
    first = driver.write_profile(args, notebooks)
    assert driver.write_profile(args, notebooks)["pieces"] == first["pieces"]  # the same invocation once
    monkeypatch.setattr(run_profile, "source_identity", lambda: {"package_version": "0.2.0", "commit": "bbb"})
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


# --- a full disk while writing the report --------------------------------------------------

def _listing(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("how", ["while copying a figure", "before writing"])
def test_a_full_disk_leaves_the_last_report_whole_and_says_so_like_a_run(how, tmp_path, monkeypatch, capsys):
    # On 41e0ce3 a full disk gave a raw OSError 28 and left .index.html.tmp beside a new
    # index whose figures were missing.
    out, report_dir = tmp_path / "out", tmp_path / "report"
    out.mkdir()
    profile = {"run_token": "now", "parameters": {"01_a": {"epochs": 2}}}
    fake_executed(out, "01_a", {"epochs": 2, "run_token": "now"}, "now", ["01_exp01_history.png"])
    build_report(out, report_dir, profile)
    (report_dir / "index.html").write_text("the last report")
    before = _listing(report_dir)

    if how == "before writing":
        real = storage.shutil.disk_usage
        monkeypatch.setattr(storage.shutil, "disk_usage", lambda path: real(path)._replace(free=1000))
    else:
        def full(source, destination):
            Path(destination).write_bytes(b"half a figure")
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(report.shutil, "copyfile", full)
    args = driver.parse_args(["--quick", "--out", str(out), "--report", str(report_dir)])
    assert driver.write_report(args, profile) is False
    line = capsys.readouterr().out
    assert line.startswith(f"run_all: report NOT written: {report_dir}: not enough disk space to write the report: "
                           "about ") and "MB needed" in line and line.count("\n") == 1
    assert _listing(report_dir) == before  # no temp file, the last report as it was
    with pytest.raises(RunStorageError):
        build_report(out, report_dir, profile)
    assert _listing(report_dir) == before


# --- the cluster argument, the deadline, Ctrl-C --------------------------------------------

def test_a_cluster_without_dask_is_refused_before_anything_loads(monkeypatch, capsys):
    real = run_args.importlib.util.find_spec
    monkeypatch.setattr(run_args.importlib.util, "find_spec",
                        lambda name: None if name == "distributed" else real(name))
    with pytest.raises(SystemExit):
        driver.parse_args(["--quick", "--cluster", "local:2"])
    assert "--cluster local:2: needs Dask's distributed package: install the cluster extra" in capsys.readouterr().err


def test_an_unreachable_cluster_is_one_line_naming_the_address(tmp_path, capsys):
    pytest.importorskip("distributed")
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    code = driver.main(["--quick", "--train-only", "--cluster", f"tcp://127.0.0.1:{port}", "--out", str(tmp_path)])
    out = capsys.readouterr()
    assert code == 1 and "Traceback" not in out.out + out.err
    assert out.out.splitlines()[-1].startswith(f"run_all: cluster: cannot reach the Dask scheduler at "
                                               f"tcp://127.0.0.1:{port}: Connection refused")


def _no_notebooks(*args, **kwargs):
    raise AssertionError("a notebook started")


def test_runs_left_by_the_deadline_stop_the_invocation_before_the_notebooks(tmp_path, monkeypatch, capsys):
    # On 41e0ce3 --deadline without --train-only ran every notebook on missing runs, trained
    # their exercises after the deadline, and said "all notebooks ran" with exit status 0.
    monkeypatch.setattr(driver, "train_all", lambda args, notebooks, progress: (["exp 3 seed 0 (boom)"], 4))
    monkeypatch.setattr(driver, "run_notebook", _no_notebooks)
    code = driver.main(["--quick", "--deadline", "60", "--out", str(tmp_path / "out"), "--report",
                        str(tmp_path / "report")])
    out = capsys.readouterr().out
    assert code == 1 and "notebooks ran" not in out and not (tmp_path / "report").exists()
    assert "run_all: 4 run(s) not started (the deadline, or a lost cluster); FAILED runs: exp 3 seed 0 (boom). " \
           "No notebook and no report ran: run the same command again" in out
    monkeypatch.setattr(driver, "train_all", lambda args, notebooks, progress: ([], 4))
    assert driver.main(["--quick", "--deadline", "60", "--out", str(tmp_path / "out")]) == 3


def test_with_a_deadline_the_exercises_are_not_trained():
    notebook = driver.chapters(ROOT / "notebooks", ["01"])[0]
    laptop = ["--profile", "laptop", "--data", "x.npz"]
    assert driver.notebook_parameters(driver.parse_args(laptop), notebook)["exercises"] is True
    assert driver.notebook_parameters(driver.parse_args([*laptop, "--deadline", "600"]), notebook)["exercises"] is False


def test_ctrl_c_in_the_training_phase_is_one_line_and_exit_130(tmp_path, monkeypatch, capsys):
    # On 41e0ce3 Ctrl-C printed a raw KeyboardInterrupt traceback.
    def interrupted(args, notebooks, progress):
        raise KeyboardInterrupt

    monkeypatch.setattr(driver, "train_all", interrupted)
    assert driver.main(["--quick", "--train-only", "--out", str(tmp_path)]) == 130
    out = capsys.readouterr()
    last = out.out.strip().splitlines()[-1]
    assert last == (f"run_all: interrupted during the training phase. Finished runs are kept in {tmp_path / 'runs'} "
                    "and an unfinished one keeps its last checkpoint: run the same command again to resume.")
    assert "Traceback" not in out.out + out.err


def test_ctrl_c_while_notebooks_run_ends_them_and_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(driver, "train_all", lambda args, notebooks, progress: ([], 0))
    children = []
    script = "import time; print('exp 1 seed 0: epoch 1/2', flush=True); time.sleep(120)"

    def fake_papermill(notebook, output, params_file):
        threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()
        children.append(notebook)
        return [sys.executable, "-c", script]

    monkeypatch.setattr(driver, "papermill_command", fake_papermill)
    spawned = []
    real_popen = driver.subprocess.Popen
    monkeypatch.setattr(driver.subprocess, "Popen", lambda *a, **k: spawned.append(real_popen(*a, **k)) or spawned[-1])
    started = time.monotonic()
    code = driver.main(["--quick", "--only", "01", "--out", str(tmp_path / "out"), "--report", str(tmp_path / "r")])
    assert code == 130 and time.monotonic() - started < 60
    assert len(children) == 1 and all(p.poll() is not None for p in spawned)  # the notebook was ended, none started
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err and "KeyboardInterrupt" not in out.out + out.err
    assert out.out.strip().splitlines()[-1].startswith("run_all: interrupted during the notebooks (01_")


def test_a_chapter_made_in_bfloat16_is_not_reported_as_a_float32_one():
    _settings_note = report._settings_note
    base = {"epochs": 2, "speed": {"steps_per_execution": 1, "precision": "float32"}, "log_every": 1}
    faster = {**base, "speed": {"steps_per_execution": 8, "precision": "float32"}, "log_every": 5}
    assert _settings_note(base, faster) is None  # the same numbers, only sooner
    assert _settings_note({**base, "speed": None}, base) is None  # None is the float32 default
    mixed = {**base, "speed": {"steps_per_execution": 1, "precision": "mixed_bfloat16"}}
    assert _settings_note(base, mixed) == "made with other settings: precision 'float32' (now 'mixed_bfloat16')"
