"""Every loader format on small generated fixtures, every bad input, the cache, subsets."""

import time
import warnings
import zipfile

import numpy as np
import pytest
from conftest import REAL_SOURCE, make_arrays, png_bytes, python_batches, write_tar, write_tree, write_zip

from cifar_utils import CLASS_NAMES, CifarDataError, load_cifar10
from cifar_utils.data import read_source


def assert_same(data, arrays, normalize=True):
    x_train, y_train, x_test, y_test = arrays
    (a, b), (c, d) = data
    scale = 255.0 if normalize else 1.0
    np.testing.assert_allclose(a * scale, x_train, atol=1e-4)
    np.testing.assert_allclose(c * scale, x_test, atol=1e-4)
    np.testing.assert_array_equal(b.argmax(1), y_train)
    np.testing.assert_array_equal(d.argmax(1), y_test)
    assert b.shape == (len(y_train), 10) and b.sum(1).tolist() == [1.0] * len(y_train)


def test_npz_roundtrip_and_scaling(tmp_path, arrays):
    path = tmp_path / "c.npz"
    np.savez(path, x_train=arrays[0], y_train=arrays[1], x_test=arrays[2], y_test=arrays[3])
    data = load_cifar10(path)
    assert data[0][0].dtype == np.float32 and data[0][0].max() <= 1.0
    assert_same(data, arrays)
    raw = load_cifar10(path, normalize=False)
    assert raw[0][0].max() > 1.0 and not raw.normalized
    assert_same(raw, arrays, normalize=False)


def test_npz_accepts_column_labels(tmp_path, arrays):
    path = tmp_path / "c.npz"
    np.savez(path, x_train=arrays[0], y_train=arrays[1][:, None], x_test=arrays[2], y_test=arrays[3][:, None])
    assert_same(load_cifar10(path), arrays)


def test_official_tar_gz(tmp_path, arrays):
    assert_same(load_cifar10(write_tar(tmp_path / "cifar-10-python.tar.gz", arrays)), arrays)


@pytest.mark.parametrize("nested", [True, False])
def test_extracted_batches_folder(tmp_path, arrays, nested):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name, blob in python_batches(arrays).items():
        (folder / name).write_bytes(blob)
    assert_same(load_cifar10(tmp_path if nested else folder), arrays)


def test_class_folder_tree_and_zip(tmp_path, arrays):
    # Files come back sorted by name within the split: generated names keep class order.
    tree = load_cifar10(write_tree(tmp_path / "tree", arrays))
    clutter = [("README.txt", b"hi"), ("train/.DS_Store", b"x"), ("train/.ipynb_checkpoints/cat/a.png", b"x"),
               ("__MACOSX/train/cat/._00000.png", b"x")]
    zipped = load_cifar10(write_zip(tmp_path / "c.zip", arrays, extra=clutter))
    for data in (tree, zipped):
        assert_same(data, arrays)


def test_zip_cache_is_used_and_invalidated(tmp_path, arrays):
    path = write_zip(tmp_path / "c.zip", arrays)
    load_cifar10(path)
    caches = list((tmp_path / "cache").glob("*.npz"))
    assert len(caches) == 1
    # A source that no longer decodes proves the second load comes from the cache.
    stamp = path.stat()
    path.write_bytes(b"\0" * stamp.st_size)
    import os

    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert_same(load_cifar10(path), arrays)
    # Changing the source (new content, new mtime) invalidates the cache.
    other = make_arrays(seed=1)
    time.sleep(0.01)
    write_zip(path, other)
    assert_same(load_cifar10(path), other)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1  # the stale one is gone


def test_broken_cache_is_rebuilt_not_trusted(tmp_path, arrays):
    path = write_zip(tmp_path / "c.zip", arrays)
    load_cifar10(path)
    (cache,) = (tmp_path / "cache").glob("*.npz")
    cache.write_bytes(cache.read_bytes()[:1000])  # as if a decode was interrupted mid-write
    with pytest.warns(UserWarning, match="broken cache"):
        assert_same(load_cifar10(path), arrays)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_same(load_cifar10(path), arrays)  # the rebuilt cache is sound


def test_leftover_partial_cache_is_ignored(tmp_path, arrays):
    path = write_zip(tmp_path / "c.zip", arrays)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "deadbeef.npz.123.partial").write_bytes(b"half")
    assert_same(load_cifar10(path), arrays)


def test_bundled_sample_is_real_stratified_and_small():
    from cifar_utils.data import SAMPLE_PATH

    assert SAMPLE_PATH.stat().st_size <= 5e6
    (x_train, y_train), (x_test, y_test) = data = load_cifar10("sample")
    assert x_train.shape == (2000, 32, 32, 3) and x_test.shape == (500, 32, 32, 3)
    assert y_train.sum(0).tolist() == [200.0] * 10 and y_test.sum(0).tolist() == [50.0] * 10
    assert "sample" in data.source and data.class_names == CLASS_NAMES
    # Real photos, not noise: neighbouring pixels are strongly correlated.
    assert np.corrcoef(x_train[:, :, :-1].ravel(), x_train[:, :, 1:].ravel())[0, 1] > 0.8


def test_subset_is_stratified_and_seeded():
    a = load_cifar10("sample", subset=500, seed=3)
    b = load_cifar10("sample", subset=500, seed=3)
    c = load_cifar10("sample", subset=500, seed=4)
    assert a[0][0].shape[0] == 500 and a[1][0].shape[0] == 100
    assert a[0][1].sum(0).tolist() == [50.0] * 10 and a[1][1].sum(0).tolist() == [10.0] * 10
    np.testing.assert_array_equal(a[0][0], b[0][0])
    assert not np.array_equal(a[0][0], c[0][0])


def test_environment_variable_names_the_source(tmp_path, arrays, monkeypatch):
    path = tmp_path / "env.npz"
    np.savez(path, x_train=arrays[0], y_train=arrays[1], x_test=arrays[2], y_test=arrays[3])
    monkeypatch.setenv("CIFAR10_SOURCE", str(path))
    data = load_cifar10()
    assert data.source == str(path)
    assert_same(data, arrays)


def test_offline_download_gives_a_clear_error(monkeypatch):
    import keras

    def offline():
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(keras.datasets.cifar10, "load_data", offline)
    with pytest.raises(CifarDataError, match="CIFAR10_SOURCE.*sample"):
        load_cifar10()


# --- bad input: one error type, naming the file and the problem ------------------------

def _npz(tmp_path, **arrays):
    path = tmp_path / f"bad{len(list(tmp_path.glob('bad*.npz')))}.npz"
    np.savez(path, **arrays)
    return path


def _bad_cases(tmp_path, arrays):
    x_train, y_train, x_test, y_test = arrays
    good = dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    truncated_zip = tmp_path / "trunc.zip"
    truncated_zip.write_bytes(write_zip(tmp_path / "full.zip", arrays).read_bytes()[:3000])
    truncated_tar = tmp_path / "trunc.tar.gz"
    truncated_tar.write_bytes(write_tar(tmp_path / "full.tar.gz", arrays).read_bytes()[:5000])
    gray = x_train[0]
    yield "missing", tmp_path / "nope.npz", "no such file"
    yield "unknown format", _touch(tmp_path / "data.csv"), "unknown CIFAR-10 format"
    yield "no train folder", _mkdir(tmp_path / "empty_dir"), "neither"
    yield "npz missing array", _npz(tmp_path, **{k: v for k, v in good.items() if k != "y_test"}), "lacks y_test"
    yield "npz wrong shape", _npz(tmp_path, **{**good, "x_train": x_train[:, :16]}), r"shape \(30, 16, 32, 3\)"
    yield "labels out of range", _npz(tmp_path, **{**good, "y_train": y_train + 5}), "labels must be integers 0-9"
    yield "label count mismatch", _npz(tmp_path, **{**good, "y_test": y_test[:-1]}), "y_test has shape"
    yield "empty split", _npz(tmp_path, **{**good, "x_test": x_test[:0], "y_test": y_test[:0]}), "test split is empty"
    yield "not an npz", _write(tmp_path / "junk.npz", b"garbage"), "not a readable .npz"
    yield "truncated zip", truncated_zip, "corrupt zip"
    yield "truncated tar", truncated_tar, "corrupt"
    yield "unknown class", write_zip(tmp_path / "cls.zip", arrays, extra=[("train/kitten/1.png", png_bytes(gray))]), \
        "unknown class folder train/'kitten'"
    yield "not 32x32", write_zip(tmp_path / "big.zip", arrays, extra=[("train/cat/big.png", png_bytes(
        np.zeros((40, 32, 3), np.uint8)))]), "train/cat/big.png: image is 32x40 RGB"
    yield "not RGB", write_zip(tmp_path / "gray.zip", arrays, extra=[("test/dog/g.png", png_bytes(gray, "L"))]), \
        "test/dog/g.png: image is 32x32 L"
    yield "corrupt image", write_zip(tmp_path / "img.zip", arrays, extra=[("train/cat/x.jpg", b"\xff\xd8junk")]), \
        "train/cat/x.jpg: cannot decode"
    yield "no test images", _zip_only_train(tmp_path / "train_only.zip", arrays), "no images under test"
    yield "too small subset", None, "subset"


def _touch(path):
    path.write_text("a,b\n")
    return path


def _mkdir(path):
    path.mkdir()
    return path


def _write(path, blob):
    path.write_bytes(blob)
    return path


def _zip_only_train(path, arrays):
    write_zip(path, arrays)
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(path.with_suffix(".tmp"), "w") as dst:
        for name in src.namelist():
            if name.startswith("train/"):
                dst.writestr(name, src.read(name))
    path.with_suffix(".tmp").replace(path)
    return path


def test_bad_inputs_raise_one_clear_error(tmp_path, arrays):
    cases = list(_bad_cases(tmp_path, arrays))
    assert len(cases) == 17
    for label, path, message in cases:
        with pytest.raises(CifarDataError, match=message) as info:
            if path is None:
                load_cifar10("sample", subset=5)
            else:
                load_cifar10(path)
        if path is not None:
            assert str(path.name) in str(info.value), label


def test_bad_source_leaves_no_cache_behind(tmp_path, arrays):
    bad = write_zip(tmp_path / "c.zip", arrays, extra=[("train/cat/x.jpg", b"junk")])
    with pytest.raises(CifarDataError):
        load_cifar10(bad)
    assert not list((tmp_path / "cache").glob("*.npz"))


@pytest.mark.skipif(not REAL_SOURCE, reason="CIFAR10_SOURCE not set (CI sets it from ../shared/data)")
def test_real_cifar10_source():
    arrays, description = read_source(REAL_SOURCE)
    x_train, y_train, x_test, y_test = arrays
    assert x_train.shape == (50000, 32, 32, 3) and x_test.shape == (10000, 32, 32, 3)
    assert np.bincount(y_train).tolist() == [5000] * 10 and np.bincount(y_test).tolist() == [1000] * 10
    assert 115 < x_train.mean() < 126  # the README's 120.7
