"""CIFAR-10 from wherever it is: a download, the official archive, image folders, an npz,
or the small sample bundled with this package.

Every format ends in the same checks (shapes, dtype, label range, non-empty splits), and
every problem raises ``CifarDataError`` naming the file and what is wrong, so a notebook
never trains on a half-loaded dataset.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
import warnings
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck")
NUM_CLASSES = len(CLASS_NAMES)
IMAGE_SHAPE = (32, 32, 3)
SPLITS = ("train", "test")
SOURCE_ENV = "CIFAR10_SOURCE"
CACHE_ENV = "CIFAR_UTILS_CACHE"
SAMPLE_PATH = Path(__file__).with_name("sample") / "cifar10_sample.npz"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # x_train, y_train, x_test, y_test


class CifarDataError(ValueError):
    """A CIFAR-10 source is missing, unreadable or not shaped like CIFAR-10."""


class CifarData(tuple):
    """``((x_train, y_train), (x_test, y_test))`` that also says where it came from."""

    def __new__(cls, train, test, *, source: str, normalized: bool):
        data = super().__new__(cls, (train, test))
        data.source = source
        data.normalized = normalized
        return data

    @property
    def class_names(self) -> tuple[str, ...]:
        return CLASS_NAMES

    def __reduce__(self):
        return (_rebuild, (self[0], self[1], self.source, self.normalized))


def _rebuild(train, test, source, normalized):
    return CifarData(train, test, source=source, normalized=normalized)


def load_cifar10(source: str | os.PathLike | None = None, normalize: bool = True,
                 subset: int | None = None, seed: int = 0,
                 cache_dir: str | os.PathLike | None = None) -> CifarData:
    """Load CIFAR-10 as float32 images and one-hot labels.

    ``source``: None (``$CIFAR10_SOURCE``, else ``keras.datasets`` download), ``"sample"``
    (bundled 2,000/500 JPEG subset), ``cifar-10-python.tar.gz`` or its extracted
    ``cifar-10-batches-py/``, a class-folder tree or ``.zip`` (``train/<class>/*``,
    ``test/<class>/*``; decoded once, then cached), or an ``.npz`` with ``x_train``,
    ``y_train``, ``x_test``, ``y_test``.
    ``normalize=False`` keeps 0-255 values (the study's experiment 1).
    ``subset=n`` keeps a stratified, seeded ``n`` train and ``n // 5`` test images.
    """
    arrays, description = read_source(source, cache_dir=cache_dir)
    if subset is not None:
        arrays = _stratified_subset(arrays, subset, seed)
        description += f" (subset {subset}, seed {seed})"
    x_train, y_train, x_test, y_test = arrays
    return CifarData(
        (to_model_input(x_train, normalize), one_hot(y_train)),
        (to_model_input(x_test, normalize), one_hot(y_test)),
        source=description, normalized=normalize)


def to_model_input(images: np.ndarray, normalize: bool) -> np.ndarray:
    """uint8 images to float32, divided by 255 when ``normalize``."""
    images = images.astype("float32")
    return images / 255.0 if normalize else images


def one_hot(labels: np.ndarray) -> np.ndarray:
    return np.eye(NUM_CLASSES, dtype="float32")[labels]


def read_source(source: str | os.PathLike | None,
                cache_dir: str | os.PathLike | None = None) -> tuple[Arrays, str]:
    """Raw uint8 images and integer labels from any supported source, checked."""
    if source is None:
        source = os.environ.get(SOURCE_ENV) or None
    if source is None:
        return _download(), "keras.datasets.cifar10"
    if str(source) == "sample":
        return read_jpeg_pack(SAMPLE_PATH), "bundled sample (JPEG q75)"
    path = Path(source).expanduser()
    if not path.exists():
        raise CifarDataError(f"{path}: no such file or folder (CIFAR-10 source; "
                             f"set {SOURCE_ENV} or pass source='sample')")
    name = path.name.lower()
    if path.is_dir():
        batches = path / "cifar-10-batches-py"
        if (path / "data_batch_1").exists() or batches.is_dir():
            reader = _read_python_batches(batches if batches.is_dir() else path)
        elif (path / "train").is_dir():
            reader = _cached(path, _tree_fingerprint(path), lambda: _read_tree(path), cache_dir)
        else:
            raise CifarDataError(f"{path}: folder holds neither cifar-10-batches-py nor train/ and test/")
    elif name.endswith((".tar.gz", ".tgz", ".tar")):
        reader = _read_python_tar(path)
    elif name.endswith(".zip"):
        reader = _cached(path, _file_fingerprint(path), lambda: _read_zip(path), cache_dir)
    elif name.endswith(".npz"):
        reader = _read_npz(path)
    else:
        raise CifarDataError(f"{path}: unknown CIFAR-10 format (expected .tar.gz, .zip, .npz or a folder)")
    return reader, str(path)


def _checked(arrays: Iterable, origin: str) -> Arrays:
    """Validate four arrays and return them as (uint8 images, int64 labels) x 2 splits."""
    x_train, y_train, x_test, y_test = arrays
    out = []
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        x, y = np.asarray(x), np.asarray(y)
        if x.ndim != 4 or x.shape[1:] != IMAGE_SHAPE:
            raise CifarDataError(f"{origin}: x_{split} has shape {x.shape}, expected (N, 32, 32, 3)")
        if len(x) == 0:
            raise CifarDataError(f"{origin}: the {split} split is empty")
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1 or len(y) != len(x):
            raise CifarDataError(f"{origin}: y_{split} has shape {y.shape}, expected ({len(x)},) labels")
        if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= NUM_CLASSES:
            raise CifarDataError(f"{origin}: y_{split} labels must be integers 0-9, "
                                 f"found {y.dtype} in [{y.min()}, {y.max()}]")
        if x.dtype != np.uint8:
            if not np.issubdtype(x.dtype, np.number) or x.min() < 0 or x.max() > 255:
                raise CifarDataError(f"{origin}: x_{split} must hold pixel values 0-255")
            x = x.astype(np.uint8)
        out += [x, y.astype(np.int64)]
    return tuple(out)


def _download() -> Arrays:
    import keras

    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
    except Exception as error:  # network errors come in many types; all mean the same here
        raise CifarDataError(
            f"keras.datasets.cifar10.load_data() failed ({type(error).__name__}: {error}). "
            f"Offline? Point {SOURCE_ENV} (or source=) at a local copy, or use source='sample'."
        ) from error
    return _checked((x_train, y_train, x_test, y_test), "keras.datasets.cifar10")


def read_jpeg_pack(path: Path) -> Arrays:
    """Decode a JPEG pack (one shared header, then each image's scan data)."""
    try:
        with np.load(path) as pack:
            header = pack["jpeg_header"].tobytes()
            arrays = []
            for split in SPLITS:
                scans, offsets = pack[f"{split}_scans"].tobytes(), pack[f"{split}_offsets"]
                blobs = (header + scans[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1))
                arrays += [_decode_all(blobs, f"{path}[{split}]"), pack[f"{split}_labels"]]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
        if isinstance(error, CifarDataError):
            raise
        raise CifarDataError(f"{path}: not a readable JPEG pack ({error})") from error
    return _checked(arrays, str(path))


def _decode_all(blobs: Iterable[bytes], origin: str) -> np.ndarray:
    images = [decode_image(blob, f"{origin}#{i}") for i, blob in enumerate(blobs)]
    return np.stack(images) if images else np.zeros((0, *IMAGE_SHAPE), np.uint8)


def decode_image(blob: bytes, origin: str) -> np.ndarray:
    """One encoded image to a (32, 32, 3) uint8 array, or a CifarDataError naming it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(blob)) as image:
            if image.size != IMAGE_SHAPE[:2] or image.mode != "RGB":
                raise CifarDataError(f"{origin}: image is {image.size[0]}x{image.size[1]} {image.mode}, "
                                     "expected 32x32 RGB")
            return np.asarray(image)
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise CifarDataError(f"{origin}: cannot decode image ({error})") from error


def _read_npz(path: Path) -> Arrays:
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in npz.files]
            if missing:
                raise CifarDataError(f"{path}: npz lacks {', '.join(missing)} (has {', '.join(npz.files)})")
            arrays = [npz[k] for k in ("x_train", "y_train", "x_test", "y_test")]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        if isinstance(error, CifarDataError):
            raise
        raise CifarDataError(f"{path}: not a readable .npz ({error})") from error
    return _checked(arrays, str(path))


def _batches_to_arrays(batches: dict[str, dict], origin: str) -> Arrays:
    """The official python batches (pickled dicts, CHW rows) to HWC arrays."""
    names = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
    arrays = []
    for split in SPLITS:
        missing = [n for n in names[split] if n not in batches]
        if missing:
            raise CifarDataError(f"{origin}: missing {', '.join(missing)}")
        try:
            data = np.concatenate([np.asarray(batches[n][b"data"], np.uint8) for n in names[split]])
            labels = np.concatenate([np.asarray(batches[n][b"labels"]) for n in names[split]])
            images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        except (KeyError, ValueError, TypeError) as error:
            raise CifarDataError(f"{origin}: malformed batch file ({error!r})") from error
        arrays += [images, labels]
    return _checked(arrays, origin)


def _unpickle(stream, origin: str) -> dict:
    # The official archive is pickled; only open archives you trust.
    try:
        return pickle.load(stream, encoding="bytes")
    except Exception as error:  # truncated or corrupt pickles raise many types
        raise CifarDataError(f"{origin}: corrupt batch file ({type(error).__name__}: {error})") from error


def _read_python_batches(folder: Path) -> Arrays:
    batches = {}
    for file in folder.iterdir():
        if file.name.startswith(("data_batch_", "test_batch")):
            with open(file, "rb") as stream:
                batches[file.name] = _unpickle(stream, str(file))
    return _batches_to_arrays(batches, str(folder))


def _read_python_tar(path: Path) -> Arrays:
    batches = {}
    try:
        with tarfile.open(path) as tar:
            for member in tar:
                name = member.name.rsplit("/", 1)[-1]
                if member.isfile() and name.startswith(("data_batch_", "test_batch")):
                    batches[name] = _unpickle(tar.extractfile(member), f"{path}:{member.name}")
    except (tarfile.TarError, EOFError, OSError) as error:
        raise CifarDataError(f"{path}: truncated or corrupt archive ({error})") from error
    return _batches_to_arrays(batches, str(path))


def _labelled(entries: Iterable[tuple[str, str]], origin: str) -> Iterator[tuple[str, int, str]]:
    """(relative path, key) pairs to (split, label, key), for files under <split>/<class>/."""
    for relpath, key in sorted(entries):
        parts = relpath.strip("/").split("/")
        if len(parts) < 3 or parts[-3] not in SPLITS or any(p.startswith((".", "__MACOSX")) for p in parts):
            continue  # hidden files and folders (.DS_Store, .ipynb_checkpoints, __MACOSX) are not images
        split, class_name = parts[-3], parts[-2]
        if class_name not in CLASS_NAMES:
            raise CifarDataError(f"{origin}: unknown class folder {split}/{class_name!r}; "
                                 f"expected one of {', '.join(CLASS_NAMES)}")
        yield split, CLASS_NAMES.index(class_name), key


def _collect(items: Iterable[tuple[str, int, bytes]], origin: str) -> Arrays:
    images: dict[str, list] = {s: [] for s in SPLITS}
    labels: dict[str, list] = {s: [] for s in SPLITS}
    for split, label, (name, blob) in items:
        images[split].append(decode_image(blob, f"{origin}/{name}"))
        labels[split].append(label)
    arrays = []
    for split in SPLITS:
        if not images[split]:
            raise CifarDataError(f"{origin}: no images under {split}/<class>/")
        arrays += [np.stack(images[split]), np.asarray(labels[split])]
    return _checked(arrays, origin)


def _read_tree(root: Path) -> Arrays:
    files = [(str(p.relative_to(root).as_posix()), p) for p in root.glob("*/*/*") if p.is_file()]
    items = ((split, label, (str(p.relative_to(root)), p.read_bytes()))
             for split, label, p in _labelled(files, str(root)))
    return _collect(items, str(root))


def _read_zip(path: Path) -> Arrays:
    try:
        with zipfile.ZipFile(path) as archive:
            names = [(n, n) for n in archive.namelist() if not n.endswith("/")]
            items = ((split, label, (name, archive.read(name)))
                     for split, label, name in _labelled(names, str(path)))
            return _collect(items, str(path))
    except (zipfile.BadZipFile, EOFError, OSError) as error:
        raise CifarDataError(f"{path}: truncated or corrupt zip ({error})") from error


# --- cache for decoded image folders -------------------------------------------------

def _file_fingerprint(path: Path) -> str:
    stat = path.stat()
    return f"{stat.st_size}-{stat.st_mtime_ns}"


def _tree_fingerprint(root: Path) -> str:
    digest = hashlib.sha1()
    for p in sorted(root.glob("*/*/*")):
        stat = p.stat()
        digest.update(f"{p.relative_to(root)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "cifar_utils")


def _cached(path: Path, fingerprint: str, decode, cache_dir) -> Arrays:
    """Decode once; later loads read the npz. A changed source gets a new cache file,
    and a cache that fails to load is removed and rebuilt rather than trusted."""
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    source_key = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    content_key = hashlib.sha1(fingerprint.encode()).hexdigest()[:12]
    cache = cache_dir / f"{source_key}-{content_key}.npz"
    if cache.exists():
        try:
            return _read_npz(cache)
        except CifarDataError as error:
            warnings.warn(f"ignoring broken cache {cache}: {error}; decoding {path} again", stacklevel=3)
            cache.unlink(missing_ok=True)
    arrays = decode()
    cache_dir.mkdir(parents=True, exist_ok=True)
    for stale in cache_dir.glob(f"{source_key}-*.npz"):
        stale.unlink(missing_ok=True)
    tmp = cache.with_name(cache.name + f".{os.getpid()}.partial")
    with open(tmp, "wb") as stream:
        np.savez(stream, **dict(zip(("x_train", "y_train", "x_test", "y_test"), arrays, strict=True)))
    os.replace(tmp, cache)
    return arrays


# --- subsets and identity -------------------------------------------------------------

def _stratified_subset(arrays: Arrays, subset: int, seed: int) -> Arrays:
    if not isinstance(subset, int) or subset < 2 * NUM_CLASSES:
        raise CifarDataError(f"subset={subset!r}: need an integer of at least {2 * NUM_CLASSES}")
    rng = np.random.default_rng(seed)
    x_train, y_train, x_test, y_test = arrays
    train = _stratified_indices(y_train, subset, rng, "train")
    test = _stratified_indices(y_test, subset // 5, rng, "test")
    return x_train[train], y_train[train], x_test[test], y_test[test]


def _stratified_indices(labels: np.ndarray, n: int, rng: np.random.Generator, split: str) -> np.ndarray:
    if n > len(labels):
        raise CifarDataError(f"subset asks for {n} {split} images but the source has {len(labels)}")
    classes = np.unique(labels)
    per_class = [n // len(classes) + (i < n % len(classes)) for i in range(len(classes))]
    picked = []
    for cls, count in zip(classes, per_class, strict=True):
        members = np.flatnonzero(labels == cls)
        if count > len(members):
            raise CifarDataError(f"subset asks for {count} {split} images of class "
                                 f"{CLASS_NAMES[cls]} but the source has {len(members)}")
        picked.append(rng.choice(members, size=count, replace=False))
    return rng.permutation(np.concatenate(picked))


def fingerprint(data) -> str:
    """A short content hash of a dataset, so run folders tell data sources apart."""
    (x_train, y_train), (x_test, y_test) = data
    digest = hashlib.sha1()
    for array in (x_train, y_train, x_test, y_test):
        array = np.ascontiguousarray(array)
        digest.update(f"{array.shape}{array.dtype}".encode())
        digest.update(np.ascontiguousarray(array.reshape(len(array), -1)[::97]).tobytes())
    return digest.hexdigest()[:10]
