"""Every loader format on small generated fixtures, every bad input, the cache, subsets."""

import errno
import hashlib
import io
import os
import pickle
import re
import shutil
import struct
import tarfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import REAL_SOURCE, make_arrays, png_bytes, python_batches, tree_entries, write_tar, write_tree, write_zip
from PIL import Image

import cifar_utils.data as data_module
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


def _no_decoding(blob, origin):
    raise AssertionError(f"decoded {origin}: the cache was not used")


@pytest.mark.parametrize("fmt", ["zip", "tree"])
def test_cache_is_used_and_invalidated(tmp_path, arrays, monkeypatch, fmt):
    write = WRITERS[fmt]
    path = write(tmp_path, arrays)
    load_cifar10(path)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    with monkeypatch.context() as patched:
        patched.setattr(data_module, "decode_image", _no_decoding)
        assert_same(load_cifar10(path), arrays)  # nothing decoded: it came from the cache
    other = make_arrays(seed=1)
    write(tmp_path, other)
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


# --- pixel values: only what is unambiguous, by value range ---------------------------

def _save_images(tmp_path, arrays, x_train, x_test=None):
    _, y_train, x_test_default, y_test = arrays
    path = tmp_path / "images.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test_default if x_test is None else x_test,
             y_test=y_test)
    return path


@pytest.mark.parametrize("encode", [
    pytest.param(lambda x: x / 255.0, id="float64 [0, 1]"),
    pytest.param(lambda x: (x / 255.0).astype(np.float32), id="float32 [0, 1]"),
    pytest.param(lambda x: (x / 255.0).astype(np.float16), id="float16 [0, 1]"),
    pytest.param(lambda x: np.clip(x - 0.4, 0, None), id="non-integral 0-255"),
    pytest.param(lambda x: x.astype(np.float32), id="float32 0-255"),
    pytest.param(lambda x: x.astype(np.int64), id="int64 0-255"),
])
def test_float_and_wide_integer_images_are_read_by_value_range(tmp_path, arrays, encode):
    path = _save_images(tmp_path, arrays, encode(arrays[0]), encode(arrays[2]))
    assert_same(load_cifar10(path), arrays)  # divided by 255 once, not twice
    assert_same(load_cifar10(path, normalize=False), arrays, normalize=False)


@pytest.mark.parametrize("poison, message", [
    (np.nan, "1 NaN and 0 infinite"),
    (np.inf, "0 NaN and 1 infinite"),
    (-np.inf, "0 NaN and 1 infinite"),
    (-0.5, r"values in \[-0.5, .*must be 0-255 \(floats: \[0, 1\] if the max is <= 1"),
    (255.5, r"values in \[.*, 255.5\]; pixel values must be 0-255"),
])
@pytest.mark.parametrize("split", ["train", "test"])
def test_bad_float_pixels_are_refused_naming_file_and_split(tmp_path, arrays, poison, message, split):
    index = 0 if split == "train" else 2
    images = [arrays[0] / 255.0, arrays[2] / 255.0]
    images[index // 2][0, 5, 5, 1] = poison
    path = _save_images(tmp_path, arrays, *images)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no NumPy cast warning on the way to the error
        with pytest.raises(CifarDataError, match=rf"images\.npz: x_{split} holds {message}"):
            load_cifar10(path)


@pytest.mark.parametrize("images, message", [
    pytest.param(lambda x: x.astype(np.int64) - 1, r"holds values in \[-1, 254\]; pixel values must be 0-255$",
                 id="int64 below 0"),
    pytest.param(lambda x: x.astype(bool), "has dtype bool; expected uint8", id="bool"),
    pytest.param(lambda x: x.astype(np.complex64), "has dtype complex64", id="complex"),
    pytest.param(lambda x: x.astype(str), "has dtype <U3", id="str"),
])
def test_non_pixel_dtypes_are_refused(tmp_path, arrays, images, message):
    with pytest.raises(CifarDataError, match=rf"images\.npz: x_train {message}"):
        load_cifar10(_save_images(tmp_path, arrays, images(arrays[0])))


def test_all_zero_or_one_floats_are_read_as_unit_range_with_a_warning(tmp_path, arrays):
    binary = (arrays[0] > 127).astype(np.float32)  # could be 0-255 values that are nearly black
    with pytest.warns(UserWarning, match="x_train: float pixels are all 0 or 1; read as \\[0, 1\\]"):
        data = load_cifar10(_save_images(tmp_path, arrays, binary), normalize=False)
    assert set(np.unique(data[0][0])) == {0.0, 255.0}


def test_non_integer_labels_are_a_clear_error(tmp_path, arrays):
    path = _npz(tmp_path, x_train=arrays[0], y_train=arrays[1].astype(str), x_test=arrays[2], y_test=arrays[3])
    with pytest.raises(CifarDataError, match=r"y_train labels must be integers 0-9, found dtype <U"):
        load_cifar10(path)


# --- a cache that cannot be written costs a warning, never the load ---------------------

def _cache_warnings(caught):
    return [w for w in caught if "not caching" in str(w.message)]


def _load_recording(path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_cifar10(path)
    return data, _cache_warnings(caught)


@pytest.mark.parametrize("code", [errno.EROFS, errno.ENOSPC])
def test_unwritable_cache_loads_without_caching(tmp_path, arrays, monkeypatch, code):
    def failing_savez(stream, **_):
        stream.write(b"half an npz")  # the .partial file exists when the write fails
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(np, "savez", failing_savez)
    data, caught = _load_recording(write_zip(tmp_path / "c.zip", arrays))
    assert_same(data, arrays)
    assert len(caught) == 1
    assert str(tmp_path / "cache") in str(caught[0].message) and os.strerror(code) in str(caught[0].message)
    assert list((tmp_path / "cache").iterdir()) == []  # no .partial, no .npz


def test_cache_folder_that_cannot_be_created(tmp_path, arrays, monkeypatch):
    (tmp_path / "a_file").write_text("not a folder")
    monkeypatch.setenv("CIFAR_UTILS_CACHE", str(tmp_path / "a_file" / "cache"))
    data, caught = _load_recording(write_tree(tmp_path / "tree", arrays))
    assert_same(data, arrays)
    assert len(caught) == 1 and "a_file" in str(caught[0].message)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders; the EROFS test covers this")
def test_read_only_cache_folder(tmp_path, arrays):
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o555)
    try:
        data, caught = _load_recording(write_zip(tmp_path / "c.zip", arrays))
        assert_same(data, arrays)
        assert len(caught) == 1 and str(cache) in str(caught[0].message)
        assert list(cache.iterdir()) == []
    finally:
        cache.chmod(0o755)


# --- broken entries in folders and zips: named, not raw OSErrors ------------------------

def _deny(monkeypatch, target, method):
    """Make one file or folder unreadable: chmod for a real check (skipped as root, where it
    does not bite), or a patched Path method raising what the kernel would."""
    if method == "chmod":
        if os.geteuid() == 0:
            pytest.skip("root reads chmod 000 files; the patched variant covers this")
        target.chmod(0)
        return
    name = "iterdir" if target.is_dir() else "read_bytes"
    original = getattr(Path, name)

    def denied(self, *args, **kwargs):
        if self == target:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, name, denied)


def test_dangling_symlink_in_tree_is_named(tmp_path, arrays):
    root = write_tree(tmp_path / "tree", arrays)
    (root / "train" / "cat" / "zz.png").symlink_to(tmp_path / "gone.png")
    with pytest.raises(CifarDataError, match=r"train/cat/zz\.png: dangling symlink \(points to .*gone\.png\)"):
        load_cifar10(root)


def test_symlink_loop_in_tree_is_named(tmp_path, arrays):
    root = write_tree(tmp_path / "tree", arrays)
    (root / "test" / "dog" / "a.png").symlink_to("b.png")
    (root / "test" / "dog" / "b.png").symlink_to("a.png")
    with pytest.raises(CifarDataError, match=r"test/dog/a\.png: symlink loop"):
        load_cifar10(root)


@pytest.mark.parametrize("method", ["patched", "chmod"])
def test_unreadable_image_file_is_named(tmp_path, arrays, monkeypatch, method):
    root = write_tree(tmp_path / "tree", arrays)
    target = root / "train" / "cat" / "00010.png"
    _deny(monkeypatch, target, method)
    try:
        with pytest.raises(CifarDataError, match=r"train/cat/00010\.png: permission denied"):
            load_cifar10(root)
    finally:
        target.chmod(0o644)


@pytest.mark.parametrize("method", ["patched", "chmod"])
def test_unreadable_class_folder_is_named_not_skipped(tmp_path, arrays, monkeypatch, method):
    root = write_tree(tmp_path / "tree", arrays)
    target = root / "train" / "cat"
    _deny(monkeypatch, target, method)
    try:
        with pytest.raises(CifarDataError, match=r"train/cat: cannot list folder \(permission denied\)"):
            load_cifar10(root)
    finally:
        target.chmod(0o755)


def test_hidden_broken_entries_are_still_skipped(tmp_path, arrays):
    root = write_tree(tmp_path / "tree", arrays)
    (root / "train" / "cat" / ".~lock.png").symlink_to(tmp_path / "gone")
    (root / "train" / ".ipynb_checkpoints").symlink_to(root / "train" / ".ipynb_checkpoints")  # a loop
    (root / "test" / "dog" / ".x").symlink_to(".y")
    (root / "test" / "dog" / ".y").symlink_to(".x")
    assert_same(load_cifar10(root), arrays)


def test_dangling_source_symlink_is_named(tmp_path):
    (tmp_path / "link.npz").symlink_to(tmp_path / "moved.npz")
    with pytest.raises(CifarDataError, match=r"link\.npz: dangling symlink"):
        load_cifar10(tmp_path / "link.npz")


def test_unreadable_source_path_is_named(tmp_path, monkeypatch):
    target = tmp_path / "locked" / "c.npz"
    original = Path.stat

    def denied(self, *args, **kwargs):
        if self == target:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "stat", denied)
    with pytest.raises(CifarDataError, match=r"locked/c\.npz: permission denied"):
        load_cifar10(target)


def _corrupt_member(path, name):
    """Overwrite the first byte of a member's deflate stream with an invalid block type."""
    with zipfile.ZipFile(path) as archive:
        offset = archive.getinfo(name).header_offset
    raw = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", raw[offset + 26:offset + 30])  # the local header's own
    raw[offset + 30 + name_len + extra_len] = 0xFF
    path.write_bytes(bytes(raw))
    return path


def test_unreadable_zip_member_is_named(tmp_path, arrays):
    path = tmp_path / "c.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for relpath, blob in tree_entries(arrays):
            archive.writestr(relpath, blob)
    _corrupt_member(path, "train/cat/00009.png")
    with pytest.raises(CifarDataError, match=r"c\.zip:train/cat/00009\.png: cannot read zip member \(error"):
        load_cifar10(path)


def test_corrupt_compressed_npz_is_a_clear_error(tmp_path, arrays):
    path = tmp_path / "c.npz"
    np.savez_compressed(path, x_train=arrays[0], y_train=arrays[1], x_test=arrays[2], y_test=arrays[3])
    _corrupt_member(path, "x_train.npy")
    with pytest.raises(CifarDataError, match=r"c\.npz: not a readable \.npz"):
        load_cifar10(path)


# --- official batches: each batch checked on its own -----------------------------------

def _shifted_batches(arrays):
    """Batch 2 seven labels short and batch 3 seven over: the totals still match."""
    files = python_batches(arrays)
    two, three = (pickle.loads(files[n]) for n in ("data_batch_2", "data_batch_3"))
    two[b"labels"], three[b"labels"] = two[b"labels"][:-7], three[b"labels"] + [0] * 7
    files["data_batch_2"], files["data_batch_3"] = pickle.dumps(two), pickle.dumps(three)
    return files


def _tar_of(path, files, folder="cifar-10-batches-py"):
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in files:
            info = tarfile.TarInfo(f"{folder}/{name}" if folder else name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path


@pytest.mark.parametrize("packed", [True, False])
def test_label_count_is_checked_per_batch(tmp_path, packed):
    arrays = make_arrays(per_class_train=5)  # 10 images per train batch
    files = _shifted_batches(arrays)
    if packed:
        source = _tar_of(tmp_path / "cifar-10-python.tar.gz", files.items())
        where = r"cifar-10-python\.tar\.gz:cifar-10-batches-py/data_batch_2"
    else:
        source = tmp_path / "cifar-10-batches-py"
        source.mkdir()
        for name, blob in files.items():
            (source / name).write_bytes(blob)
        where = r"cifar-10-batches-py/data_batch_2"
    with pytest.raises(CifarDataError, match=rf"{where}: 3 labels for 10 images"):
        load_cifar10(source)


@pytest.mark.parametrize("data, message", [
    (np.zeros((6, 3000), np.uint8), r"data has shape \(6, 3000\), expected \(N, 3072\)"),
    (np.zeros(6 * 3072, np.uint8), r"data has shape \(18432,\)"),
    (b"\0" * 6 * 3072, r"data has shape \(\)"),
])
def test_batch_rows_must_be_3072_wide(tmp_path, arrays, data, message):
    files = python_batches(arrays)
    files["test_batch"] = pickle.dumps({b"data": data, b"labels": [0] * 6})
    with pytest.raises(CifarDataError, match=rf"tar\.gz:cifar-10-batches-py/test_batch: {message}"):
        load_cifar10(_tar_of(tmp_path / "c.tar.gz", files.items()))


def test_batch_pixels_out_of_range_are_refused_not_wrapped(tmp_path, arrays):
    files = python_batches(arrays)
    batch = pickle.loads(files["data_batch_1"])
    batch[b"data"] = batch[b"data"].astype(np.int64) + 100  # 255 + 100 would wrap to 99 as uint8
    files["data_batch_1"] = pickle.dumps(batch)
    with pytest.raises(CifarDataError, match=r"x_train holds values in \[.*\]; pixel values must be 0-255"):
        load_cifar10(_tar_of(tmp_path / "c.tar.gz", files.items()))


def test_duplicate_batch_in_tar_is_refused(tmp_path, arrays):
    files = list(python_batches(arrays).items())
    path = _tar_of(tmp_path / "c.tar.gz", [*files, ("data_batch_1", files[1][1])])
    with pytest.raises(CifarDataError, match=r"c\.tar\.gz:cifar-10-batches-py/data_batch_1: a second data_batch_1"):
        load_cifar10(path)


def test_only_the_official_batch_names_are_read(tmp_path, arrays):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name, blob in python_batches(arrays).items():
        (folder / name).write_bytes(blob)
    (folder / "data_batch_1.bak").write_bytes(b"not a pickle")  # an editor's or a user's leftover
    assert_same(load_cifar10(folder), arrays)


# --- one dataset per source: a second copy is refused, never loaded beside the first ----

def _zip_of(path, entries):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns on a repeated name; writing one is the point
        with zipfile.ZipFile(path, "w") as archive:
            for relpath, blob in entries:
                archive.writestr(relpath, blob)
    return path


def _under(prefix, entries, splits=("train", "test")):
    return [(f"{prefix}{relpath}", blob) for relpath, blob in entries if relpath.split("/")[0] in splits]


@pytest.mark.parametrize("layout, roots", [
    pytest.param(lambda e: [*e, *_under("cifar10/", e)], r"one at 'cifar10/' and one at the top level",
                 id="top+nested"),
    pytest.param(lambda e: [*_under("a/", e), *_under("b/", e)], r"one at 'a/' and one at 'b/'", id="a+b"),
    pytest.param(lambda e: [*_under("a/", e, ["train"]), *_under("b/", e, ["test"])], r"one at 'a/' and one at 'b/'",
                 id="train in a, test in b"),
    pytest.param(lambda e: [*_under("x/", e), *_under("x/train/", e)], r"one at 'x/' and one at 'x/train/'",
                 id="a tree inside a split"),
])
def test_zip_with_two_image_trees_is_refused(tmp_path, arrays, layout, roots):
    path = _zip_of(tmp_path / "twice.zip", layout(list(tree_entries(arrays))))
    with pytest.raises(CifarDataError, match=rf"twice\.zip: two copies of the dataset, {roots}"):
        load_cifar10(path)


def test_zip_with_a_repeated_member_is_refused(tmp_path, arrays):
    entries = list(tree_entries(arrays))
    path = _zip_of(tmp_path / "c.zip", [*entries, entries[4]])  # zipfile.read() would return the last one twice
    repeated = r"train/automobile/00004\.png"
    with pytest.raises(CifarDataError, match=rf"c\.zip:{repeated}: a second {repeated}$"):
        load_cifar10(path)


def test_tar_with_batches_under_two_folders_is_refused(tmp_path, arrays):
    files = python_batches(arrays)
    train = [(f"a/{n}", b) for n, b in files.items() if n != "test_batch"]
    path = _tar_of(tmp_path / "c.tar.gz", [*train, ("b/test_batch", files["test_batch"])], folder="")
    with pytest.raises(CifarDataError, match=r"c\.tar\.gz: two copies of the dataset, one at 'a/' and one at 'b/'"):
        load_cifar10(path)


@pytest.mark.parametrize("batches_at", ["cifar-10-batches-py", "."])
def test_folder_with_both_batches_and_an_image_tree_is_refused(tmp_path, arrays, batches_at):
    root = write_tree(tmp_path / "both", arrays)
    (root / batches_at).mkdir(exist_ok=True)
    for name, blob in python_batches(arrays).items():
        (root / batches_at / name).write_bytes(blob)
    with pytest.raises(CifarDataError, match=r"both: holds two copies of CIFAR-10 \(.* and train/\)"):
        load_cifar10(root)


# --- every split holds all ten classes, and nothing else ----------------------------------

def _drop(arrays, split, classes):
    """``arrays`` with no image of ``classes`` in ``split``."""
    x_train, y_train, x_test, y_test = arrays
    labels = [CLASS_NAMES.index(c) for c in classes]
    if split == "train":
        keep = ~np.isin(y_train, labels)
        return x_train[keep], y_train[keep], x_test, y_test
    keep = ~np.isin(y_test, labels)
    return x_train, y_train, x_test[keep], y_test[keep]


def _npz_of(path, arrays):
    np.savez(path, **dict(zip(("x_train", "y_train", "x_test", "y_test"), arrays, strict=True)))
    return path


WRITERS = {"zip": lambda tmp, a: write_zip(tmp / "c.zip", a), "tree": lambda tmp, a: write_tree(tmp / "tree", a),
           "npz": lambda tmp, a: _npz_of(tmp / "c.npz", a), "tar": lambda tmp, a: write_tar(tmp / "c.tar.gz", a)}


@pytest.mark.parametrize("missing", [["cat"], ["airplane", "truck"]])
@pytest.mark.parametrize("split", ["train", "test"])
@pytest.mark.parametrize("fmt", WRITERS)
def test_a_split_missing_a_class_is_refused(tmp_path, arrays, fmt, split, missing):
    source = WRITERS[fmt](tmp_path, _drop(arrays, split, missing))
    names = ", ".join(missing)
    with pytest.raises(CifarDataError, match=rf"{re.escape(source.name)}: the {split} split has no images of {names};"):
        load_cifar10(source)


def _zip_with_folder(path, arrays, folder):
    """A zip as archivers write it, with an entry for an (empty) folder."""
    write_zip(path, arrays)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(zipfile.ZipInfo(f"{folder}/"), b"")
    return path


def _tree_with_folder(root, arrays, folder):
    write_tree(root, arrays)
    (root / folder).mkdir()
    return root


@pytest.mark.parametrize("folder, message", [
    ("train/cat", r"the train split has no images of cat;"),
    ("test/kitten", r"unknown class folder test/'kitten'"),
])
@pytest.mark.parametrize("fmt", ["zip", "tree"])
def test_empty_class_folders_are_checked_too(tmp_path, arrays, fmt, folder, message):
    arrays = _drop(arrays, "train", ["cat"]) if folder == "train/cat" else arrays
    source = (_zip_with_folder(tmp_path / "c.zip", arrays, folder) if fmt == "zip"
              else _tree_with_folder(tmp_path / "tree", arrays, folder))
    with pytest.raises(CifarDataError, match=rf"{source.name}: {message}"):
        load_cifar10(source)


# --- the cache is keyed on content: size and mtime survive cp -p and rsync -t ------------

def _bmp_entries(arrays):
    """(relative path, BMP bytes): BMP is uncompressed, so every image file has the same size."""
    x_train, y_train, x_test, y_test = arrays
    for split, xs, ys in (("train", x_train, y_train), ("test", x_test, y_test)):
        for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
            buffer = io.BytesIO()
            Image.fromarray(x).save(buffer, format="BMP")
            yield f"{split}/{CLASS_NAMES[y]}/{i:05d}.bmp", buffer.getvalue()


def _copy_keeping_mtime(source, target):
    """``cp -p source target``: target gets new bytes and keeps its own old mtime."""
    stamp = target.stat()
    os.utime(source, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    shutil.copy2(source, target)
    assert target.stat().st_size == stamp.st_size and target.stat().st_mtime_ns == stamp.st_mtime_ns


def test_zip_replaced_keeping_size_and_mtime_is_decoded_again(tmp_path, arrays):
    path, new = _zip_of(tmp_path / "c.zip", _bmp_entries(arrays)), make_arrays(seed=1)
    assert_same(load_cifar10(path), arrays)
    _copy_keeping_mtime(_zip_of(tmp_path / "new.zip", _bmp_entries(new)), path)
    assert_same(load_cifar10(path), new)


def test_tree_files_rewritten_keeping_size_and_mtime_are_decoded_again(tmp_path, arrays):
    root, new = tmp_path / "tree", make_arrays(seed=1)
    for relpath, blob in _bmp_entries(arrays):
        (root / relpath).parent.mkdir(parents=True, exist_ok=True)
        (root / relpath).write_bytes(blob)
    assert_same(load_cifar10(root), arrays)
    for relpath, blob in _bmp_entries(new):  # as rsync -t leaves them
        _copy_keeping_mtime(_write(tmp_path / "new.bmp", blob), root / relpath)
    assert_same(load_cifar10(root), new)


def test_cache_entry_named_by_size_and_mtime_is_never_read(tmp_path, arrays):
    """Caches written before content keys were named by a hash of size and mtime; such an
    entry must not be taken for this file's arrays, whatever it holds."""
    path = write_zip(tmp_path / "c.zip", arrays)
    stamp = path.stat()
    source_key = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    old_key = hashlib.sha1(f"{stamp.st_size}-{stamp.st_mtime_ns}".encode()).hexdigest()[:12]
    (tmp_path / "cache").mkdir()
    old = _npz_of(tmp_path / "cache" / f"{source_key}-{old_key}.npz", make_arrays(seed=1))
    assert_same(load_cifar10(path), arrays)
    assert not old.exists()  # replaced by the entry for this content


def test_zip_rewritten_while_decoding_does_not_poison_the_cache(tmp_path, arrays, monkeypatch):
    """The arrays cached are those of the bytes keyed, even when the file changes mid-load."""
    path, new = _zip_of(tmp_path / "c.zip", _bmp_entries(arrays)), make_arrays(seed=1)
    replacement = _zip_of(tmp_path / "new.zip", _bmp_entries(new))
    decode, calls = data_module.decode_image, []

    def rewriting(blob, origin):
        if not calls:
            _copy_keeping_mtime(replacement, path)  # in place, while the zip is being read
        calls.append(origin)
        return decode(blob, origin)

    monkeypatch.setattr(data_module, "decode_image", rewriting)
    assert_same(load_cifar10(path), arrays)
    assert_same(load_cifar10(path), new)


def test_npz_with_a_repeated_array_is_refused(tmp_path, arrays):
    def npy(array):
        buffer = io.BytesIO()
        np.save(buffer, array)
        return buffer.getvalue()

    names = ("x_train", "y_train", "x_test", "y_test")
    entries = [(f"{name}.npy", npy(array)) for name, array in zip(names, arrays, strict=True)]
    path = _zip_of(tmp_path / "c.npz", [*entries, ("x_train.npy", npy(make_arrays(seed=1)[0]))])
    with pytest.raises(CifarDataError, match=r"c\.npz: a second x_train$"):  # np.load would keep the last one
        load_cifar10(path)
