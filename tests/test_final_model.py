"""The final model measured as it is used: inference-mode training accuracy on fixed
images, batch-norm statistics re-estimated (no weight changed), an EMA that short runs
can use, and an EMA run resumed after its last checkpoint ending in the same model."""

from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from cifar_utils import build_model, get_experiment, load_cifar10, run_experiment
from cifar_utils.final_model import (
    EMA_FIRST_WEIGHT_SHARE,
    batch_norm_layers,
    ema_momentum,
    reestimate_batch_norm,
    restore_batch_norm,
)
from cifar_utils.runs.splits import TRAIN_EVAL_IMAGES, train_eval_indices
from tests.test_training import Crash


@pytest.fixture(scope="module")
def tiny():
    return load_cifar10("sample", subset=300)


def test_train_eval_images_are_a_fixed_stratified_draw():
    labels = np.repeat(np.arange(10), 5000)
    chosen = train_eval_indices(labels)
    assert len(chosen) == TRAIN_EVAL_IMAGES and np.bincount(labels[chosen]).tolist() == [200] * 10
    assert np.array_equal(chosen, train_eval_indices(np.eye(10)[labels]))  # one-hot gives the same draw
    assert np.array_equal(chosen, np.sort(chosen)) and len(set(chosen)) == len(chosen)
    assert train_eval_indices(labels[:1500]).tolist() == list(range(1500))  # fewer images: all of them


def test_batch_norm_statistics_are_those_of_the_inputs_at_inference_and_weights_stay():
    model = build_model(11, seed=0)
    images = np.random.default_rng(0).random((96, 32, 32, 3), dtype=np.float32)
    weights = [w.copy() for w in model.get_weights() if w is not None]
    trainable = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
    old = reestimate_batch_norm(model, images, batch_size=40)  # batches of 40, 40, 16
    first, last = batch_norm_layers(model)[0], batch_norm_layers(model)[-1]
    for layer in (first, last):  # the last one sees inputs normalised by the ones before
        inputs = keras.ops.convert_to_numpy(keras.Model(model.inputs[0], layer.input)(images, training=False))
        flat = inputs.reshape(-1, inputs.shape[-1]).astype("float64")
        np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.moving_mean), flat.mean(axis=0), rtol=1e-4,
                                   atol=1e-6)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.moving_variance), flat.var(axis=0), rtol=1e-3,
                                   atol=1e-6)
    for before, after in zip(trainable, model.trainable_variables, strict=True):
        np.testing.assert_array_equal(before, keras.ops.convert_to_numpy(after))
    restore_batch_norm(model, old)
    for before, after in zip(weights, model.get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)


def test_ema_momentum_is_lowered_only_for_runs_too_short_for_it():
    assert ema_momentum(0.99, 2640) == 0.99  # experiment 20's full run keeps its recipe
    short = ema_momentum(0.99, 45)
    assert short < 0.99 and short ** 44 == pytest.approx(EMA_FIRST_WEIGHT_SHARE)
    assert ema_momentum(0.0, 45) == 0.0


@pytest.mark.slow
def test_records_carry_the_final_models_own_figures(tiny, tmp_path):
    bn = run_experiment(11, epochs=2, batch_size=64, data=tiny, out_dir=tmp_path)
    assert bn.bn_statistics == "running" and 0 <= bn.bn_reestimated_test_acc <= 100
    assert bn.train_eval_images == 300  # all of its 300 training images (fewer than 2,000)
    assert bn.gap == pytest.approx(bn.train_eval_acc - bn.test_acc)
    plain = run_experiment(2, epochs=2, batch_size=64, data=tiny, out_dir=tmp_path)
    assert plain.bn_statistics == "" and np.isnan(plain.bn_reestimated_test_acc)
    assert 0 <= plain.train_eval_acc <= 100 and plain.train_eval_loss > 0


@pytest.mark.slow
def test_an_ema_run_resumed_after_its_last_checkpoint_ends_in_the_same_model(tiny, tmp_path):
    exp = get_experiment(9).vary("ema", ema=0.9)
    kwargs = dict(epochs=3, batch_size=64, data=tiny, checkpoint_seconds=0)
    whole = run_experiment(exp, out_dir=tmp_path / "whole", **kwargs)
    with pytest.raises(KeyboardInterrupt):  # killed after the final checkpoint, before fit's end
        run_experiment(exp, out_dir=tmp_path / "cut", callbacks=[Crash(at_epoch=3)], **kwargs)
    resumed = run_experiment(exp, out_dir=tmp_path / "cut", **kwargs)
    assert resumed.bn_statistics == whole.bn_statistics == "re-estimated"
    assert resumed.test_acc == whole.test_acc and resumed.train_eval_acc == whole.train_eval_acc
    timing = "epoch_seconds"
    assert {k: v for k, v in resumed.history.items() if k != timing} == \
        {k: v for k, v in whole.history.items() if k != timing}
    final = [h5py.File(Path(r.run_dir) / "model.weights.h5") for r in (whole, resumed)]
    arrays = [{name: np.array(item) for name, item in _datasets(f)} for f in final]
    assert arrays[0].keys() == arrays[1].keys() and len(arrays[0]) > 10
    for name, values in arrays[0].items():  # the EMA weights and re-estimated statistics, not the raw ones
        np.testing.assert_array_equal(values, arrays[1][name], err_msg=name)


def _datasets(group, prefix=""):
    for key, item in group.items():
        if isinstance(item, h5py.Dataset):
            yield f"{prefix}/{key}", item
        else:
            yield from _datasets(item, f"{prefix}/{key}")


@pytest.mark.slow
def test_the_final_phase_predicts_the_test_set_once_per_view_and_reuses_the_last_validation(
        tiny, tmp_path, monkeypatch):
    exp = get_experiment(11).vary("tta-val", tta="flip_shift", validation=0.1)
    sizes = []
    predict = keras.Model.predict

    def counted(self, x, *args, **kwargs):
        sizes.append(len(x))
        return predict(self, x, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "predict", counted)
    record = run_experiment(exp, epochs=2, batch_size=64, data=tiny, out_dir=tmp_path)
    test_size, train_size = record.params["test_size"], record.params["train_size"]
    views = 6  # flip_shift: the image, its mirror and two shifts of each
    # The recipe's views of the test set, the training images' views (the gap), and one
    # plain view with re-estimated statistics; the validation score is the last epoch's.
    assert sorted(sizes) == sorted([test_size] * (views + 1) + [train_size] * views)
    assert record.val_acc == pytest.approx(100 * record.history["val_accuracy"][-1])
    assert 0 <= record.single_view_test_acc <= 100 and 0 <= record.bn_reestimated_test_acc <= 100
    plain = run_experiment(2, epochs=2, batch_size=64, data=tiny, out_dir=tmp_path)
    assert plain.single_view_test_acc == plain.test_acc  # no test-time views: the same figure
