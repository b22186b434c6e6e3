"""Shared fixtures: small CIFAR-shaped datasets written in every supported format.

Test tiers: a test is marked ``@pytest.mark.slow`` (a whole module with ``pytestmark``)
when it trains a model for more than a few steps, executes a notebook, ``./run_all.sh`` or
the pipeline, starts worker processes (the pool's, fake ones included) or a Dask cluster,
or takes more than 2 s on a 2-core machine with its share of a module fixture (a test that
reads an expensive module fixture is slow with it). The rest, ``pytest -m "not slow"``,
runs in under 3 minutes on 2 cores; CI runs everything.
"""

import io
import os
import pickle
import tarfile
import zipfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest
from PIL import Image

from cifar_utils.data import CLASS_NAMES

# Captured before the autouse fixture below hides it from each test.
REAL_SOURCE = os.environ.get("CIFAR10_SOURCE")


def make_arrays(per_class_train=3, per_class_test=1, seed=0):
    """Random images with every class present, labels in class order."""
    rng = np.random.default_rng(seed)
    y_train = np.repeat(np.arange(10), per_class_train)
    y_test = np.repeat(np.arange(10), per_class_test)
    x_train = rng.integers(0, 256, (len(y_train), 32, 32, 3), dtype=np.uint8)
    x_test = rng.integers(0, 256, (len(y_test), 32, 32, 3), dtype=np.uint8)
    return x_train, y_train, x_test, y_test


def png_bytes(image: np.ndarray, mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).convert(mode).save(buffer, format="PNG")
    return buffer.getvalue()


def tree_entries(arrays):
    """(relative path, PNG bytes) for a class-folder layout (PNG is lossless, so exact)."""
    x_train, y_train, x_test, y_test = arrays
    for split, xs, ys in (("train", x_train, y_train), ("test", x_test, y_test)):
        for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
            yield f"{split}/{CLASS_NAMES[y]}/{i:05d}.png", png_bytes(x)


def write_tree(root, arrays):
    for relpath, blob in tree_entries(arrays):
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob)
    return root


def write_zip(path, arrays, extra=()):
    with zipfile.ZipFile(path, "w") as archive:
        for relpath, blob in [*tree_entries(arrays), *extra]:
            archive.writestr(relpath, blob)
    return path


def python_batches(arrays):
    """The official cifar-10-batches-py layout: 5 train batches and a test batch."""
    x_train, y_train, x_test, y_test = arrays

    def batch(x, y):
        rows = x.transpose(0, 3, 1, 2).reshape(len(x), -1)
        return pickle.dumps({b"data": rows, b"labels": [int(v) for v in y]})

    parts = np.array_split(np.arange(len(x_train)), 5)
    files = {f"data_batch_{i + 1}": batch(x_train[p], y_train[p]) for i, p in enumerate(parts)}
    files["test_batch"] = batch(x_test, y_test)
    return files


def write_tar(path, arrays):
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in python_batches(arrays).items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path


@pytest.fixture
def arrays():
    return make_arrays()


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Each test gets its own decode cache and no inherited CIFAR10_SOURCE."""
    monkeypatch.setenv("CIFAR_UTILS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CIFAR10_SOURCE", raising=False)
