"""Reference results: exported from a run folder, refused when they mix settings, shown by
a chapter instead of training or next to its own runs."""

import json
import shutil
from pathlib import Path

import pytest

from cifar_utils import load_cifar10, run_experiment
from cifar_utils.chapter import Chapter
from cifar_utils.errors import ReferenceFolderError
from cifar_utils.runs.reference import export_reference, load_reference

# Every test reads `made`, which trains four runs and exports them.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A tiny "full run": experiments 1 and 2, seeds 0 and 1, exported as a reference."""
    base = tmp_path_factory.mktemp("made")
    data = load_cifar10("sample", subset=200)
    for number in (1, 2):
        run_experiment(number, epochs=2, batch_size=64, data=data, out_dir=base / "out" / "runs", seeds=[0, 1])
    (base / "out" / "profile.json").write_text(json.dumps({"device": "test device", "started": "2026-11-28 10:00"}))
    copied = export_reference(base / "out", base / "reference")
    return base, copied


def test_export_keeps_records_histories_and_predictions_only(made):
    base, copied = made
    assert copied == 4
    files = sorted(p.name for p in (base / "reference").rglob("*") if p.is_file())
    assert files == ["history.csv"] * 4 + ["profile.json"] + ["record.json"] * 4 + ["test_predictions.npz"] * 4
    reference = load_reference(base / "reference")
    assert [r.seed for r in reference.of(2)] == [0, 1] and reference.of(3) == []
    assert "4 runs" in reference.describe() and "test device" in reference.describe()
    assert all(r.run_dir.startswith("runs/") for r in reference.records)  # relative: the folder can move


def test_a_reference_that_mixes_settings_is_refused(made, tmp_path):
    base, _ = made
    mixed = tmp_path / "mixed"
    shutil.copytree(base / "reference", mixed)
    record = next(mixed.glob("runs/exp02-seed1-*/record.json"))
    data = json.loads(record.read_text())
    data["params"]["epochs"] = 3
    record.write_text(json.dumps(data))
    with pytest.raises(ReferenceFolderError, match="experiment 2 ran with more than one setting"):
        load_reference(mixed)
    data["params"]["data_fingerprint"] = "something else"
    record.write_text(json.dumps(data))
    with pytest.raises(ReferenceFolderError, match="runs on 2 different datasets"):
        load_reference(mixed)
    record.write_text("{")  # one damaged record is named and left out; the others still read
    with pytest.warns(UserWarning, match=f"{record}: damaged run record"):
        assert len(load_reference(mixed).records) == 3
    with pytest.raises(ReferenceFolderError, match="no such reference folder"):
        load_reference(tmp_path / "nowhere")


def test_a_chapter_renders_the_reference_without_training(made, tmp_path, capsys):
    base, _ = made
    chapter = Chapter(1, seeds=[0, 1], data_source="sample", out_dir=tmp_path, runs=str(base / "reference"))
    chapter.setup()
    records = chapter.run(2)
    assert [r.seed for r in records] == [0, 1] and not (tmp_path / "runs").exists()
    assert chapter.try_out([2]) == []  # exercises are for the reader to run
    out = capsys.readouterr().out
    assert "Nothing is trained in this chapter" in out and "Not run here" in out
    assert (tmp_path / "figures" / "01_exp02_history.png").exists()


def test_a_chapter_that_trains_shows_its_runs_next_to_the_reference(made, tmp_path, capsys):
    base, _ = made
    chapter = Chapter(1, epochs=1, batch_size=64, data_source="sample", subset=200, out_dir=tmp_path, runs="train",
                      reference_dir=base / "reference")
    records = chapter.run(2)
    assert len(records) == 1 and records[0].epochs_completed == 1
    out = capsys.readouterr().out
    assert "2. 4-layer model 2 (this run)" in out and "2. 4-layer model 2 (reference)" in out
    assert Path(records[0].run_dir).parent == tmp_path / "runs"


def test_runs_is_the_one_choice_between_reading_and_training(made, tmp_path, monkeypatch):
    """``runs``: "reference" reads the course's reference (from the notebooks' folder) and
    trains nothing; "train" trains beside it; "read" reads the chapter's own folder only; a
    path is a reference folder; a misspelt mode is refused by name."""
    from cifar_utils.course import DEFAULT_REFERENCE, runs_setting
    from cifar_utils.parameters import ParameterError

    base, _ = made
    notebooks = tmp_path / "course" / "notebooks"
    notebooks.mkdir(parents=True)
    monkeypatch.chdir(notebooks)
    with pytest.raises(ParameterError, match=r"runs='reference': no reference folder at \.\./results/reference"):
        runs_setting("reference")
    assert runs_setting("train") == (True, None) and runs_setting("read") == (False, None)
    shutil.copytree(base / "reference", notebooks.parent / "results" / "reference")
    assert runs_setting("reference") == (False, DEFAULT_REFERENCE)
    assert runs_setting("train") == (True, DEFAULT_REFERENCE) and runs_setting("read") == (False, None)
    assert runs_setting(str(base / "reference")) == (False, base / "reference")
    with pytest.raises(ParameterError, match="runs='refrence': not a mode"):
        runs_setting("refrence")
    chapter = Chapter(1, seeds=[0, 1], data_source="sample", out_dir=tmp_path / "out", runs="reference")
    assert chapter.from_reference and [r.seed for r in chapter.run(1)] == [0, 1]
    assert [r.seed for r in chapter.reuse(2)] == [0, 1] and not (tmp_path / "out" / "runs").exists()
