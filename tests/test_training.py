"""run_experiment: real learning, records, reuse, resume after a crash, divergence."""

import json

import keras
import numpy as np
import pandas as pd
import pytest

from cifar_utils import load_cifar10, load_records, run_experiment
from cifar_utils.runs.identity import as_model_input
from cifar_utils.runs.predictions import load_predictions
from cifar_utils.runs.record import RunRecord
from tests.callbacks import Crash


@pytest.fixture(scope="module")
def sample():
    return load_cifar10("sample")


@pytest.fixture(scope="module")
def tiny(sample):
    return load_cifar10("sample", subset=200)


@pytest.mark.slow
def test_dropout_model_learns_on_real_images(sample, tmp_path):
    # 3 epochs at batch 512 are 12 steps on 2,000 images: the dropout model is still at
    # 12-18 %. 12 epochs at batch 32 (750 steps, ~15 s on 2 CPU cores) reach 33-38 %.
    record = run_experiment(7, epochs=12, batch_size=32, data=sample, out_dir=tmp_path)
    assert record.status == "completed"
    assert record.test_acc > 25.0, record.history["val_accuracy"]
    assert record.history["loss"][-1] < record.history["loss"][0]


@pytest.mark.slow
def test_record_is_complete_and_consistent(tiny, tmp_path):
    record = run_experiment(2, epochs=3, batch_size=64, data=tiny, out_dir=tmp_path)
    run_dir = tmp_path / f"exp02-seed0-{record.run_dir.rsplit('-', 1)[1]}"
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock", "history.csv", "model.weights.h5", "params.json",
                                                         "record.json", "test_predictions.npz"]
    history = pd.read_csv(run_dir / "history.csv")
    assert history["epoch"].tolist() == [0, 1, 2]
    assert record.epochs_completed == 3 and record.param_count == 24522
    assert record.test_acc == pytest.approx(100 * history["val_accuracy"].iloc[-1])
    assert record.best_test_acc == pytest.approx(100 * history["val_accuracy"].max())
    assert record.best_epoch == int(history["val_accuracy"].idxmax()) + 1
    assert record.wall_seconds == pytest.approx(history["epoch_seconds"].sum())
    assert record.images_per_second == pytest.approx(200 / record.seconds_per_epoch)
    assert record.backend == keras.backend.backend() and record.device and record.versions["keras"]
    assert record.params["epochs"] == 3 and record.params["batch_size"] == 64 and record.params["seed"] == 0
    assert record.params["recipe"]["optimizer"] == "adam" and record.evaluated_on == "test"
    assert record.data_source.startswith("bundled sample")
    assert RunRecord.from_file(run_dir / "record.json") == record
    assert load_records(tmp_path) == [record]
    # the kept predictions are the final model's: they give the recorded test accuracy
    stored = load_predictions(record)
    assert stored["probabilities"].shape == (40, 10) and stored["labels"].tolist() == tiny[1][1].argmax(1).tolist()
    accuracy = 100 * np.mean(stored["probabilities"].astype("float32").argmax(1) == stored["labels"])
    assert accuracy == pytest.approx(record.test_acc, abs=0.01)
    wrong = stored["mistake_indices"]
    assert len(wrong) == min(24, round(40 * (1 - record.test_acc / 100)))
    np.testing.assert_array_equal(stored["mistake_images"], np.round(tiny[1][0][wrong] * 255).astype("uint8"))


@pytest.mark.slow
def test_finished_run_is_reused_unless_forced(tiny, tmp_path, capsys):
    first = run_experiment(2, epochs=2, batch_size=64, data=tiny, out_dir=tmp_path)
    again = run_experiment(2, epochs=2, batch_size=64, data=tiny, out_dir=tmp_path)
    assert again == first and "reusing" in capsys.readouterr().out
    other = run_experiment(2, epochs=2, batch_size=32, data=tiny, out_dir=tmp_path)
    assert other.run_dir != first.run_dir
    forced = run_experiment(2, epochs=2, batch_size=64, data=tiny, out_dir=tmp_path, force=True)
    assert forced.run_dir == first.run_dir and forced.wall_seconds != first.wall_seconds


@pytest.mark.slow
def test_seeds_run_repeats(tiny, tmp_path):
    records = run_experiment(2, epochs=1, batch_size=64, data=tiny, out_dir=tmp_path, seeds=[0, 1])
    assert [r.seed for r in records] == [0, 1]
    assert records[0].run_dir != records[1].run_dir
    assert records[0].history["loss"] != records[1].history["loss"]


@pytest.mark.slow
def test_interrupted_run_resumes_without_duplicated_or_missing_epochs(tiny, tmp_path, capsys):
    kwargs = dict(epochs=5, batch_size=64, data=tiny, out_dir=tmp_path, checkpoint_seconds=0)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(9, callbacks=[Crash(at_epoch=3)], **kwargs)
    (run_dir,) = tmp_path.iterdir()
    assert not (run_dir / "record.json").exists()  # unfinished runs never look finished
    assert load_records(tmp_path) == []
    assert sorted(p.name for p in run_dir.glob("checkpoint-*")) == ["checkpoint-e0002.weights.h5",
                                                                    "checkpoint-e0003.weights.h5"]
    # As if the process died after writing epoch 4's history row but before its checkpoint.
    history = run_dir / "history.csv"
    rows = history.read_text().splitlines()
    history.write_text("\n".join([*rows, rows[-1].replace("2,", "3,", 1)]) + "\n")

    record = run_experiment(9, **kwargs)
    assert "resuming after epoch 3" in capsys.readouterr().out
    assert pd.read_csv(history)["epoch"].tolist() == [0, 1, 2, 3, 4]
    assert record.epochs_completed == 5 and record.status == "completed"
    assert not list(run_dir.glob("checkpoint-*"))
    # The resumed model continued from the checkpoint, so it is not back at chance loss.
    assert record.history["loss"][3] < record.history["loss"][0]


@pytest.mark.slow
def test_nan_loss_ends_the_run_as_diverged(tiny, tmp_path):
    (x_train, y_train), test = tiny
    poisoned = y_train.copy()
    poisoned[:, 0] = np.nan  # every batch's loss is NaN, as after an exploding update
    record = run_experiment(2, epochs=4, batch_size=64, data=((x_train, poisoned), test), out_dir=tmp_path)
    assert record.status == "diverged" and record.epochs_completed == 1
    assert json.loads((tmp_path / record.run_dir.split("/")[-1] / "record.json").read_text())["status"] \
        == "diverged"


def test_pixels_are_rescaled_to_what_the_experiment_expects(tiny):
    x = tiny[0][0]
    np.testing.assert_allclose(as_model_input(x, normalize=False), x * 255, rtol=1e-6)
    assert as_model_input(x, normalize=True) is x
    raw = x * 255
    np.testing.assert_allclose(as_model_input(raw, normalize=True), x, rtol=1e-6)
    assert as_model_input(raw, normalize=True, normalized=False).max() <= 1.0


def test_bad_arguments(tiny, tmp_path):
    with pytest.raises(ValueError, match="epochs"):
        run_experiment(2, epochs=0, data=tiny, out_dir=tmp_path)
    with pytest.raises(KeyError, match="unknown experiment"):
        run_experiment(99, data=tiny, out_dir=tmp_path)
