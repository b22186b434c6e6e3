"""Reference and report folders that never lie or lose files (issue 17, second reliability
pass): a report replaces only what reports wrote, a reference is read-only to a render,
one reference holds one invocation's settings and each run once, an earlier chapter on
other data is left out, and each invocation's report reads its own profile.

Nothing is trained: run folders are written as ``run_experiment`` would leave them, with
the parameters ``plan_run`` decides for each run ``./run_all.sh`` schedules."""

import argparse
import json
import shutil
import warnings
from pathlib import Path

import nbformat
import numpy as np
import pytest

from cifar_utils import load_cifar10
from cifar_utils import run_all as driver
from cifar_utils.errors import ReferenceFolderError, ReportFolderError
from cifar_utils.folders import MANIFEST
from cifar_utils.report import build_report, chapter_status, merged_notebook
from cifar_utils.runs.identity import data_fingerprint, plan_run
from cifar_utils.runs.predictions import load_predictions
from cifar_utils.runs.reference import export_reference, load_reference, merged_profile
from cifar_utils.runs.settings import RunSettings
from tests.factories import make_record

ROOT = Path(__file__).resolve().parents[1]
HISTORY = "epoch,loss,accuracy,val_loss,val_accuracy,epoch_seconds\n1,1.0,0.5,1.2,0.4,1.0\n"


@pytest.fixture(scope="module")
def data():
    return load_cifar10("sample", subset=200)


@pytest.fixture(scope="module")
def other_data():
    return load_cifar10("sample", subset=300)


def fake_run(runs_dir, experiment, data, seed=0, epochs=None, batch_size=None, eval_every=1, test_acc=50.0):
    """A finished run folder as ``run_experiment`` leaves it (record, history, predictions),
    with the parameters it would have; nothing trained."""
    plan = plan_run(experiment, data, seed, runs_dir, RunSettings(epochs, batch_size, eval_every))
    history = {"epoch": [1], "loss": [1.0], "accuracy": [0.5], "val_loss": [1.2], "val_accuracy": [test_acc / 100],
               "epoch_seconds": [1.0]}
    record = make_record(plan.experiment.number, test_acc, seed, name=plan.experiment.name,
                         variant=plan.experiment.variant, params=plan.params, history=history, wall_seconds=1.0,
                         run_dir=str(plan.run_dir), data_source="sample")
    plan.run_dir.mkdir(parents=True, exist_ok=True)
    (plan.run_dir / "record.json").write_text(record.to_json())
    (plan.run_dir / "history.csv").write_text(HISTORY)
    np.savez(plan.run_dir / "test_predictions.npz", probabilities=np.full((2, 10), 0.1), labels=np.array([0, 1]))
    return record


def invocation_runs(runs_dir, data, *argv):
    """Every run one ``./run_all.sh`` invocation with ``argv`` trains, as run folders."""
    args = driver.parse_args([*argv, "--no-report"])
    tasks = driver.training_tasks(args, driver.chapters(ROOT / "notebooks", args.only))
    return [fake_run(runs_dir, t.experiment_object(), data, t.seed, t.settings.epochs, t.settings.batch_size,
                     t.settings.eval_every)
            for t in tasks]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def fake_executed(out: Path, stem: str, parameters: dict, token: str, figures=(), runs=None):
    """An executed notebook and its finished chapter's marker (the runs it showed, by digest)."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {stem} title")]
    nb.metadata["papermill"] = {"parameters": {**parameters, "run_token": token}, "end_time": "2026-11-28T10:00:00"}
    for folder in ("notebooks", "results", "figures"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out / "notebooks" / f"{stem}.ipynb")
    for name in figures:
        (out / "figures" / name).write_bytes(b"\x89PNG\r\n\x1a\n")
    marker = {"run_token": token, "figures": list(figures), "runs_in": str(out / "runs"),
              "runs": {Path(r.run_dir).name: r.digest() for r in runs or []}}
    name = "summary.json" if stem == "05_summary" else f"chapter_{stem[:2]}.json"
    (out / "results" / name).write_text(json.dumps(marker))


def refusal(argv, capsys) -> str:
    with pytest.raises(SystemExit) as caught:
        driver.parse_args(argv)
    assert caught.value.code == 2
    return capsys.readouterr().err


# --- 1. a report folder keeps what no report wrote -----------------------------------------

def test_a_report_folder_holding_a_readers_files_is_refused_and_left_as_it_was(tmp_path, capsys):
    # On 4eb9886 build_report emptied figures/ and removed results.csv of any --report folder.
    out, mine = tmp_path / "out", tmp_path / "mine"
    fake_executed(out, "01_a", {"epochs": 2}, "now", ["01_exp01_history.png"])
    (mine / "figures").mkdir(parents=True)
    (mine / "figures" / "holiday.png").write_bytes(b"my photo")
    (mine / "results.csv").write_text("my,numbers\n")
    before = snapshot(mine)
    err = refusal(["--quick", "--out", str(out), "--report", str(mine)], capsys)
    assert f"--report {mine}: holds files no report of this project wrote (figures/holiday.png, results.csv)" in err
    assert "choose an empty or new folder" in err
    with pytest.raises(ReportFolderError, match="figures/holiday.png"):
        build_report(out, mine)
    assert snapshot(mine) == before


@pytest.mark.parametrize("report, message", [
    (".", "holds the output folder"), ("..", "holds the output folder"),
    ("figures", "inside the output folder's figures/"), ("results/report", "inside the output folder's results/"),
])
def test_a_report_folder_that_overlaps_the_output_folder_is_refused(report, message, tmp_path, capsys):
    # On 4eb9886 `--out X --report X` emptied X/figures after the chapters had written them.
    out = tmp_path / "x"
    err = refusal(["--quick", "--only", "01", "--out", str(out), "--report", str(out / report)], capsys)
    assert f"--report {(out / report).resolve()}: {message}" in err
    assert driver.parse_args(["--quick", "--out", str(out), "--report", str(out / "report")]).report == out / "report"


def test_a_report_replaces_and_removes_only_what_reports_wrote(tmp_path):
    out, report = tmp_path / "out", tmp_path / "report"
    report.mkdir()
    (report / "README.md").write_text("what goes here")  # the committed report/README.md
    profile = {"run_token": "now", "parameters": {"01_a": {"epochs": 2}, "02_b": {"epochs": 2}}}
    fake_executed(out, "01_a", {"epochs": 2}, "now", ["01_exp01_history.png"])
    fake_executed(out, "02_b", {"epochs": 2}, "now", ["02_exp04_history.png"])
    build_report(out, report, profile)
    manifest = json.loads((report / MANIFEST).read_text())["files"]
    assert manifest == ["figures/01_exp01_history.png", "figures/02_exp04_history.png", "index.html"]
    fake_executed(out, "02_b", {"epochs": 3}, "old", ["02_exp04_history.png"])  # now from other settings
    build_report(out, report, profile)  # the folder holds only the last report's files: accepted
    assert sorted(snapshot(report)) == [MANIFEST, "README.md", "figures/01_exp01_history.png", "index.html"]
    assert json.loads((report / MANIFEST).read_text())["files"] == ["figures/01_exp01_history.png", "index.html"]


# --- 2. a reference is read-only to a render ---------------------------------------------------

def test_a_render_may_not_write_into_its_reference_folder(tmp_path, capsys):
    # On 4eb9886 `--reference R --out R` overwrote R/profile.json with the render's own.
    reference = tmp_path / "ref"
    (reference / "runs").mkdir(parents=True)
    (reference / "profile.json").write_text('{"device": "the GPU that made it"}')
    read_only = f"the reference folder {reference}, which is read-only"
    for argv, flag in ((["--out", str(reference)], "--out"), (["--out", str(reference / "render")], "--out"),
                       (["--out", str(tmp_path / "o"), "--report", str(reference)], "--report"),
                       (["--out", str(tmp_path / "o"), "--report", str(reference / "report")], "--report"),
                       (["--out", str(tmp_path / "o"), "--report", str(tmp_path)], "--report")):
        err = refusal(["--reference", str(reference), *argv], capsys)
        assert f"{flag} " in err and read_only in err, err
    (tmp_path / "o" / "runs").mkdir(parents=True)
    err = refusal(["--reference", str(tmp_path / "o" / "runs"), "--out", str(tmp_path / "o")], capsys)
    assert "inside the output folder's runs/" in err
    args = driver.parse_args(["--reference", str(reference), "--out", str(tmp_path / "render"),
                              "--report", str(tmp_path / "report")])
    assert args.reference == reference
    assert (reference / "profile.json").read_text() == '{"device": "the GPU that made it"}'


# --- 3. one reference, one invocation's settings -------------------------------------------

def test_experiments_at_different_epochs_in_one_reference_are_refused_by_name(tmp_path, data):
    # On 4eb9886 experiment 1 at 1 epoch and experiment 2 at 6 were compared as "a real increase".
    fake_run(tmp_path / "ref" / "runs", 1, data, epochs=1)
    fake_run(tmp_path / "ref" / "runs", 2, data, epochs=6)
    with pytest.raises(ReferenceFolderError) as caught:
        load_reference(tmp_path / "ref")
    message = str(caught.value)
    assert ("runs made with different epochs: 1 (experiment 1 seed 0), 6 (experiment 2 seed 0); one --epochs "
            "applies to every run of the study's recipe") in message


@pytest.mark.parametrize("argv", [["--quick"], ["--data", "sample"], ["--data", "sample", "--epochs", "4",
                                                                      "--batch-size", "64", "--eval-every", "2"]])
def test_a_reference_made_by_one_invocation_is_accepted(argv, tmp_path, data):
    made = invocation_runs(tmp_path / "ref" / "runs", data, *argv)
    assert len({r.params["epochs"] for r in made}) > 1 or len({r.params["batch_size"] for r in made}) > 1
    assert len(load_reference(tmp_path / "ref").records) == len(made)


@pytest.mark.parametrize("first, second, setting", [
    (["--quick", "--only", "01", "--epochs", "1"], ["--quick", "--only", "02", "--epochs", "6"], "epochs"),
    (["--data", "sample", "--only", "01"], ["--data", "sample", "--only", "02", "--epochs", "6"], "epochs"),
    (["--quick", "--only", "01"], ["--quick", "--only", "02", "--batch-size", "64"], "batch_size"),
    (["--data", "sample", "--only", "06"], ["--data", "sample", "--only", "01", "--batch-size", "64"], "batch_size"),
])
def test_a_reference_made_by_two_invocations_with_other_settings_is_refused(first, second, setting, tmp_path, data):
    invocation_runs(tmp_path / "ref" / "runs", data, *first)
    invocation_runs(tmp_path / "ref" / "runs", data, *second)
    with pytest.raises(ReferenceFolderError, match=f"runs made with different {setting}: .*experiment"):
        load_reference(tmp_path / "ref")


def test_a_reference_mixing_evaluation_intervals_is_refused(tmp_path, data):
    fake_run(tmp_path / "ref" / "runs", 1, data, epochs=2)
    fake_run(tmp_path / "ref" / "runs", 2, data, epochs=2, eval_every=2)
    with pytest.raises(ReferenceFolderError, match=r"different intervals \(eval_every\): 1 \(experiment 1 seed 0\), "
                                             r"2 \(experiment 2 seed 0\)"):
        load_reference(tmp_path / "ref")


# --- 4. a run counts once -----------------------------------------------------------------------

def test_a_run_held_twice_in_a_reference_counts_once(tmp_path, data):
    # On 4eb9886 a copied run folder counted as a second seed ("2 seeds", "noise ±0.00").
    runs = tmp_path / "ref" / "runs"
    first = Path(fake_run(runs, 2, data, epochs=1).run_dir)
    fake_run(runs, 2, data, epochs=1, seed=1)
    shutil.copytree(first, runs / "copy-of-exp02")
    shutil.copytree(first, first / "runs" / first.name)  # nested
    reference = load_reference(tmp_path / "ref")
    assert [r.seed for r in reference.of(2)] == [0, 1]
    assert reference.of(2)[0].run_dir == f"runs/{first.name}"  # the shallowest copy is kept
    assert "2 duplicate run folder(s) counted once" in reference.describe()


# --- 5. an earlier chapter on other data is left out ------------------------------------------

def test_an_earlier_chapter_on_data_replaced_at_the_same_path_is_left_out(tmp_path, data, other_data):
    # On 4eb9886 chapter 1 from before X.npz was replaced stayed in the report beside the new data.
    out = tmp_path / "out"
    old = fake_run(out / "runs", 2, data, epochs=1)
    fake_executed(out, "01_a", {"data_source": "X.npz"}, "before", runs=[old])
    profile = {"run_token": "now", "parameters": {"01_a": {"data_source": "X.npz"}},
               "data_fingerprint": data_fingerprint(other_data)}
    status = chapter_status(out / "notebooks" / "01_a.ipynb", out, profile)
    assert not status.included
    assert status.note == (f"left out: made with other data: data id {data_fingerprint(data)} "
                           f"(now {data_fingerprint(other_data)})")
    profile["data_fingerprint"] = data_fingerprint(data)
    same = chapter_status(out / "notebooks" / "01_a.ipynb", out, profile)
    assert same.included and "earlier invocation with the same settings" in same.note


def test_the_profile_records_this_invocations_data_id(tmp_path):
    args = driver.parse_args(["--quick", "--only", "01", "--out", str(tmp_path / "out"), "--no-report"])
    profile = driver.write_profile(args, driver.chapters(ROOT / "notebooks", args.only))
    assert profile["data_fingerprint"] == data_fingerprint(load_cifar10("sample", subset=500))
    assert json.loads((tmp_path / "out" / "profile.json").read_text()) == profile


# --- 6. references: export, damaged records, copies, output folders, the empty one --------------

def test_an_export_that_would_mix_a_reference_writes_nothing(tmp_path, data):
    # On 4eb9886 export wrote into the reference first and checked after, leaving it mixed.
    fake_run(tmp_path / "out1" / "runs", 2, data, epochs=1)
    (tmp_path / "out1" / "profile.json").write_text('{"device": "first"}')
    reference = tmp_path / "ref"
    assert export_reference(tmp_path / "out1", reference) == 1
    (reference / "README.md").write_text("about this reference")
    before = snapshot(reference)
    fake_run(tmp_path / "out2" / "runs", 2, data, epochs=6, seed=1)
    with pytest.raises(ReferenceFolderError, match="runs made with different epochs: 1 .*, 6 "):
        export_reference(tmp_path / "out2", reference)
    assert snapshot(reference) == before and len(load_reference(reference).records) == 1
    fake_run(tmp_path / "out3" / "runs", 2, data, epochs=1, seed=1)
    (tmp_path / "out3" / "profile.json").write_text('{"device": "third"}')
    assert export_reference(tmp_path / "out3", reference) == 1
    assert [r.seed for r in load_reference(reference).of(2)] == [0, 1]
    assert (reference / "README.md").read_text() == "about this reference"
    assert json.loads((reference / "profile.json").read_text()) == {"device": "third"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out1", "out2", "out3", "ref"]  # no temporary folders


@pytest.mark.parametrize("damage, message", [
    (lambda d: d["params"].pop("data_fingerprint"), "params has no data_fingerprint"),
    (lambda d: d.update(params=[1, 2]), "params is a list, not a mapping"),
    (lambda d: d.update(experiment=99), "experiment 99 is not in this course"),
])
def test_a_record_missing_what_the_checks_read_is_named_not_a_raw_error(damage, message, tmp_path, data):
    # On 4eb9886: a raw KeyError ('data_fingerprint') or AttributeError (params a list).
    good = fake_run(tmp_path / "out" / "runs", 2, data, epochs=1)
    bad = Path(fake_run(tmp_path / "out" / "runs", 2, data, epochs=1, seed=1).run_dir) / "record.json"
    record = json.loads(bad.read_text())
    damage(record)
    bad.write_text(json.dumps(record))
    with pytest.warns(UserWarning, match=f"{bad}: damaged run record: {message}"):
        reference = load_reference(tmp_path / "out")
    assert [r.seed for r in reference.records] == [good.seed]
    damaged = f"damaged records, not exported: {bad}: damaged run record: {message}"
    with pytest.raises(ReferenceFolderError, match=damaged):
        export_reference(tmp_path / "out", tmp_path / "ref")
    assert not (tmp_path / "ref").exists()


def test_one_truncated_reference_record_is_named_and_the_rest_still_read(tmp_path, data):
    # On 4eb9886 one truncated record made load_reference, and so every chapter, fail.
    runs = tmp_path / "ref" / "runs"
    for number in (1, 2, 3):
        fake_run(runs, number, data, epochs=1)
    truncated = next(runs.glob("exp02-*/record.json"))
    truncated.write_text(truncated.read_text()[:40])
    with pytest.warns(UserWarning, match="damaged run record"):
        reference = load_reference(tmp_path / "ref")
    assert sorted(r.experiment for r in reference.records) == [1, 3]
    assert len(reference.problems) == 1 and str(truncated) in reference.problems[0]
    assert f"1 damaged record(s) left out: {truncated}" in reference.describe()


def test_a_reference_copied_by_hand_reads_its_own_files(tmp_path, data):
    # On 4eb9886 a record's absolute run_dir sent the summary to the output folder's predictions.
    made = fake_run(tmp_path / "out" / "runs", 2, data, epochs=1)
    shutil.copytree(tmp_path / "out", tmp_path / "ref")
    copied = tmp_path / "ref" / "runs" / Path(made.run_dir).name
    np.savez(copied / "test_predictions.npz", probabilities=np.full((3, 10), 0.1), labels=np.array([7, 8, 9]))
    (record,) = load_reference(tmp_path / "ref").records
    assert record.run_dir == f"runs/{copied.name}"
    assert load_predictions(record, tmp_path / "ref" / record.run_dir)["labels"].tolist() == [7, 8, 9]
    from cifar_utils.report import changed_runs

    marker = {"runs_in": str(tmp_path / "ref" / "runs"), "runs": {copied.name: record.digest()}}
    assert changed_runs(marker) == []  # a chapter that showed it is not taken for retrained


def test_an_output_folder_used_as_a_reference_leaves_its_exercises_out(tmp_path, data, other_data):
    # On 4eb9886 exercises/ runs were read too: "experiment 2 ran with more than one setting".
    fake_run(tmp_path / "out" / "runs", 2, data, epochs=1)
    fake_run(tmp_path / "out" / "exercises", 2, other_data, epochs=3, batch_size=128)
    reference = load_reference(tmp_path / "out")
    assert [(r.experiment, r.params["epochs"]) for r in reference.records] == [(2, 1)]


@pytest.mark.parametrize("destination, message", [
    (".", "the reference cannot be the output folder it is exported from"),
    ("runs", "inside the runs folder"), ("runs/reference", "inside the runs folder"),
    ("..", "holds the output folder"),
])
def test_an_export_into_what_it_reads_is_refused(destination, message, tmp_path, data):
    # On 4eb9886 export_reference(out, out) raised SameFileError and out/runs nested duplicates.
    out = tmp_path / "out"
    fake_run(out / "runs", 2, data, epochs=1)
    before = snapshot(tmp_path)
    with pytest.raises(ReferenceFolderError, match=message):
        export_reference(out, out / destination)
    assert snapshot(tmp_path) == before


def test_an_empty_reference_says_it_holds_no_runs(tmp_path):
    # On 4eb9886 the shipped empty reference rendered under "the numbers, curves and verdicts of one full run".
    empty = tmp_path / "reference"
    (empty / "runs").mkdir(parents=True)
    shutil.copy(ROOT / "results" / "reference" / "profile.json", empty / "profile.json")
    args = driver.parse_args(["--reference", str(empty), "--out", str(tmp_path / "render"), "--no-report"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # holds nothing damaged either
        profile = driver.write_profile(args, driver.chapters(ROOT / "notebooks", []))
    assert profile["reference_runs"] == 0 and profile["data_fingerprint"] is None
    banner = merged_notebook([], profile).cells[0].source
    assert f"The reference folder {empty} holds no runs" in banner
    assert "one full run" not in banner
    assert "holds no runs yet" in load_reference(empty).describe()
    quick = merged_notebook([], {**profile, "reference_runs": 3, "reference_profile": "quick"}).cells[0].source
    assert "(3 runs of a --quick run, a smoke test of the pipeline: not the study's numbers)" in quick
    assert "one full run" not in quick
    made = {"epochs": 30, "seeds": [0], "device": "CPU (x86_64, 2 cores)", "cpu": "AMD EPYC",
            "backends": ["tensorflow"],
            "pieces": [{"commit": "aaa", "started": "2026-12-01 22:20 UTC"},
                       {"commit": "bbb", "started": "2026-12-02"}],
            "progress": "2 of its profile's 46 runs; not yet in it: chapter 02 (0 of 4)"}
    cpu = merged_notebook([], {**profile, "reference_runs": 2, "reference_profile": "cpu",
                               "reference_made": made}).cells[0].source
    assert "(2 runs of the CPU profile: 30 of the study's 300 epochs on the full data" in cpu
    assert "in 2 piece(s), commits aaa, bbb, 2026-12-01 22:20 UTC to 2026-12-02" in cpu
    assert "trained at low priority beside other work, so its seconds per epoch are not benchmarks" in cpu
    assert "It holds 2 of its profile's 46 runs; not yet in it: chapter 02 (0 of 4)." in cpu


# --- 7. each invocation's report reads its own profile -----------------------------------------

def test_a_report_reads_its_own_invocations_profile_not_the_shared_file(tmp_path):
    # On 4eb9886 invocation B rewrote profile.json, and A's report left out A's own chapter.
    out, report = tmp_path / "out", tmp_path / "report"
    fake_executed(out, "01_a", {"eval_every": 1}, "token-a", ["01_exp01_history.png"])
    mine = {"run_token": "token-a", "profile": "quick", "parameters": {"01_a": {"eval_every": 1}}}
    theirs = {"run_token": "token-b", "profile": "quick", "parameters": {"01_a": {"eval_every": 2}}}
    (out / "profile.json").write_text(json.dumps(theirs))
    args = argparse.Namespace(out=out, report=report)
    assert driver.write_report(args, mine)
    html = (report / "index.html").read_text()
    assert "01_a title" in html and "ran in this invocation" in html and "Not in this report" not in html
    assert (report / "figures" / "01_exp01_history.png").exists()


# --- backends: a run reused or read under another backend is named as what made it ----------

def test_the_banner_names_the_runs_backend_when_this_invocation_uses_another(tmp_path):
    # On fe5285c, KERAS_BACKEND=jax reused tensorflow runs under a banner saying "Keras backend jax".
    from cifar_utils.report import run_backends

    results = tmp_path / "results"
    results.mkdir()
    (results / "results.csv").write_text("experiment,backend\n1,tensorflow\n2,jax; tensorflow\n3,\n")
    assert run_backends(tmp_path) == ["jax", "tensorflow"]
    profile = {"profile": "cpu", "backend": "jax", "device": "CPU", "data": "x.npz", "run_backends": ["tensorflow"]}
    banner = merged_notebook([], profile).cells[0].source
    assert "Keras backend jax for this invocation (the runs shown were trained with tensorflow)" in banner
    same = merged_notebook([], {**profile, "run_backends": ["jax"]}).cells[0].source
    assert "Keras backend jax, on CPU" in same
    assert run_backends(tmp_path / "nowhere") == []


# --- symlinked run folders ----------------------------------------------------------------

def test_a_symlinked_run_folder_is_read_and_a_link_cycle_ends(tmp_path, data):
    # On fe5285c Path.glob("**") skipped symlinked folders: a linked run was silently left out.
    from cifar_utils.runs.record import scan_records

    elsewhere = tmp_path / "elsewhere" / "runs"
    fake_run(elsewhere, 2, data, epochs=1)
    reference = tmp_path / "reference"
    fake_run(reference / "runs", 1, data, epochs=1)
    (run,) = list(elsewhere.iterdir())
    (reference / "runs" / run.name).symlink_to(run, target_is_directory=True)
    (reference / "runs" / "loop").symlink_to(reference / "runs", target_is_directory=True)
    loaded = load_reference(reference)
    assert sorted(r.experiment for r in loaded.records) == [1, 2]
    assert sorted(r.experiment for r in scan_records(reference / "runs")[0]) == [1, 2]


def test_an_export_keeps_the_pieces_an_earlier_session_trained(tmp_path, data):
    # A reference is trained over sessions on fresh machines: each output folder's profile
    # knows only its own piece, and an export once replaced the reference's list with it.
    settings = {"profile": "cpu", "epochs": 1, "seeds": [0], "data_fingerprint": "abc"}
    first = {**settings, "pieces": [{"started": "2026-12-01 22:20 UTC", "commit": "aaa", "chapters": ["01"]}]}
    second = {**settings, "pieces": [{"started": "2026-12-02 05:23 UTC", "commit": "bbb", "chapters": ["04"]}]}
    fake_run(tmp_path / "out1" / "runs", 2, data, epochs=1)
    (tmp_path / "out1" / "profile.json").write_text(json.dumps(first))
    fake_run(tmp_path / "out2" / "runs", 2, data, epochs=1, seed=1)
    (tmp_path / "out2" / "profile.json").write_text(json.dumps(second))
    reference = tmp_path / "ref"
    export_reference(tmp_path / "out1", reference)
    export_reference(tmp_path / "out2", reference)
    profile = json.loads((reference / "profile.json").read_text())
    assert [p["commit"] for p in profile["pieces"]] == ["aaa", "bbb"]
    assert export_reference(tmp_path / "out2", reference) == 1  # again: no piece twice
    assert [p["commit"] for p in json.loads((reference / "profile.json").read_text())["pieces"]] == ["aaa", "bbb"]
    other = {**second, "epochs": 2}  # a profile of other runs is not merged with this one's pieces
    assert merged_profile(first, other) is other
