"""Training batches: the order is a function of (seed, epoch), on and off the device."""

import h5py
import keras
import numpy as np
import pytest

from cifar_utils import EpochBatches, EpochDraws, epoch_order, get_experiment, load_cifar10, run_experiment
from cifar_utils.batches import DeviceTestBatches, fit_data


def _rows(batch):
    return keras.ops.convert_to_numpy(batch[1])[:, 0].astype(int).tolist()


def test_an_epochs_batches_are_its_seeded_order_cut_in_pieces():
    x = np.arange(10 * 2, dtype="float32").reshape(10, 2)
    y = np.arange(10, dtype="float32")[:, None]
    batches = EpochBatches(x, y, batch_size=4, seed=3)
    assert len(batches) == 3
    first = [_rows(batches[i]) for i in range(3)]
    assert [len(b) for b in first] == [4, 4, 2] and sum(first, []) == epoch_order(3, 0, 10).tolist()
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(batches[0][0]), x[first[0]])
    batches.epoch = 1
    second = [_rows(batches[i]) for i in range(3)]
    assert sum(second, []) == epoch_order(3, 1, 10).tolist() and sorted(sum(second, [])) == list(range(10))
    assert second != first and epoch_order(4, 0, 10).tolist() != epoch_order(3, 0, 10).tolist()
    on_device = EpochBatches(x, y, batch_size=4, seed=3, on_device=True)
    on_device.epoch = 1
    assert [_rows(on_device[i]) for i in range(3)] == second
    with pytest.raises(IndexError, match="batch 3"):
        batches[3]


def test_bad_batches_are_named():
    x, y = np.zeros((10, 2), "float32"), np.zeros((9, 1), "float32")
    with pytest.raises(ValueError, match="10 images but 9 labels"):
        EpochBatches(x, y, batch_size=4, seed=0)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        EpochBatches(x, x, batch_size=0, seed=0)
    test = DeviceTestBatches(x, x, batch_size=4)
    assert len(test) == 3 and keras.ops.convert_to_numpy(test[2][0]).shape == (2, 2)
    with pytest.raises(IndexError, match="batch 3"):
        test[3]


class Logged(EpochBatches):
    """Records (epoch, batch) of every batch handed over."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.asked: list[tuple[int, int]] = []

    def __getitem__(self, index):
        self.asked.append((self.epoch, index))
        return super().__getitem__(index)


@pytest.mark.slow
@pytest.mark.parametrize("steps_per_execution", [1, 3])
def test_fit_takes_each_epochs_batches_in_that_epochs_order(steps_per_execution):
    """Compiled as runs are (no eager mode), with prefetching: no batch of an epoch is cut
    before ``EpochDraws`` has told the batches that epoch, and none is taken twice."""
    n, batch, epochs = 70, 16, 3
    x = np.arange(n, dtype="float32")[:, None]
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse", steps_per_execution=steps_per_execution)
    feed = fit_data((x, x), (x[:8], x[:8]), batch, seed=5)
    feed["x"] = logged = Logged(x, x, batch, seed=5)
    model.fit(**feed, epochs=epochs, initial_epoch=1, verbose=0, callbacks=[EpochDraws(5, logged)])
    peeks = [asked for asked in logged.asked if asked[0] == 0]  # Keras reads two batches for their shapes
    assert peeks == logged.asked[:len(peeks)] and len(peeks) <= 2
    handed = logged.asked[len(peeks):]
    assert handed == [(epoch, i) for epoch in (1, 2) for i in range(len(logged))]


@pytest.mark.slow
def test_a_run_resumed_mid_way_ends_in_the_same_model_as_an_uninterrupted_one(tmp_path):
    from tests.test_training import Crash

    tiny = load_cifar10("sample", subset=200)
    exp = get_experiment(16)  # dropout, batch norm and augmentation: every random draw there is
    kwargs = dict(epochs=4, batch_size=64, data=tiny, checkpoint_seconds=0)
    whole = run_experiment(exp, out_dir=tmp_path / "whole", **kwargs)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(exp, out_dir=tmp_path / "cut", callbacks=[Crash(at_epoch=2)], **kwargs)
    resumed = run_experiment(exp, out_dir=tmp_path / "cut", **kwargs)
    assert resumed.history["loss"] == whole.history["loss"]
    assert resumed.test_acc == whole.test_acc
    files = [h5py.File(f"{r.run_dir}/model.weights.h5") for r in (whole, resumed)]
    names = []
    files[0].visit(lambda name: names.append(name) if isinstance(files[0][name], h5py.Dataset) else None)
    assert len(names) > 10
    for name in names:
        np.testing.assert_array_equal(np.array(files[0][name]), np.array(files[1][name]), err_msg=name)
