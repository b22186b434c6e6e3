"""CIFAR-10 from wherever it is: a download, the official archive, image folders, an npz,
or the small sample bundled with this package.

Every format ends in the same checks (shapes, dtype, label range, all ten classes in each
split), an archive or folder must hold exactly one copy of the dataset, and every problem
raises ``CifarDataError`` naming the file and what is wrong, so a notebook never trains on
a half-loaded (or doubled) dataset.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import pickle
import stat
import tarfile
import warnings
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from .errors import CifarDataError, RunStorageError
from .storage import write_atomic

CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck")
NUM_CLASSES = len(CLASS_NAMES)
IMAGE_SHAPE = (32, 32, 3)
SPLITS = ("train", "test")
SOURCE_ENV = "CIFAR10_SOURCE"
CACHE_ENV = "CIFAR_UTILS_CACHE"
SAMPLE_PATH = Path(__file__).with_name("sample") / "cifar10_sample.npz"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}
BATCH_NAMES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
BATCH_ROW = 3 * 32 * 32  # one image per row, channel-major (CHW)
_CHUNK = 4096  # images converted at a time: a float copy of all 50,000 would cost gigabytes

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # x_train, y_train, x_test, y_test


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
    ``y_train``, ``x_test``, ``y_test`` (images uint8 or integers 0-255, or floats: a max <= 1.0
    means [0, 1] images, a larger max means 0-255 values; NaN, inf and out-of-range are refused).
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
    found = _stat(path, missing_ok=True)
    if found is None:
        raise CifarDataError(f"{path}: no such file or folder (CIFAR-10 source; "
                             f"set {SOURCE_ENV} or pass source='sample')")
    name = path.name.lower()
    if stat.S_ISDIR(found.st_mode):
        reader = _read_folder(path, cache_dir)
    elif name.endswith((".tar.gz", ".tgz", ".tar")):
        reader = _read_python_tar(path)
    elif name.endswith(".zip"):
        reader = _read_zip(path, cache_dir)
    elif name.endswith(".npz"):
        reader = _read_npz(path)
    else:
        raise CifarDataError(f"{path}: unknown CIFAR-10 format (expected .tar.gz, .zip, .npz or a folder)")
    return reader, str(path)


def _read_folder(path: Path, cache_dir) -> Arrays:
    """The one CIFAR-10 copy in a folder: official batches (at the top or in
    cifar-10-batches-py/) or a train/ + test/ image tree. Two of them are two copies, refused
    as in an archive rather than one picked silently."""
    batches = path / "cifar-10-batches-py"
    layouts = {"data_batch_1": _stat(path / "data_batch_1", missing_ok=True) is not None,
               "cifar-10-batches-py/": _is_dir(batches), "train/": _is_dir(path / "train")}
    found = [layout for layout, present in layouts.items() if present]
    if not found:
        raise CifarDataError(f"{path}: folder holds neither cifar-10-batches-py nor train/ and test/")
    if len(found) > 1:
        listed = ", ".join(found[:-1]) + " and " + found[-1]
        raise CifarDataError(f"{path}: holds two copies of CIFAR-10 ({listed}); point at one of them")
    if found == ["train/"]:
        return _read_tree(path, cache_dir)
    return _read_python_batches(batches if found == ["cifar-10-batches-py/"] else path)


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
        labels = _int_labels(y, len(x), f"{origin}: y_{split}")
        _every_class(labels, f"{origin}: the {split} split")
        out += [_uint8_images(x, f"{origin}: x_{split}"), labels]
    return tuple(out)


def _every_class(labels: np.ndarray, where: str) -> None:
    """A split without some class would train or score a 9-class problem without a word."""
    missing = [name for name, count in zip(CLASS_NAMES, np.bincount(labels, minlength=NUM_CLASSES), strict=True)
               if count == 0]
    if missing:
        raise CifarDataError(f"{where} has no images of {', '.join(missing)}; CIFAR-10 needs all "
                             f"{NUM_CLASSES} classes ({', '.join(CLASS_NAMES)}) in train and in test")


def _int_labels(y: np.ndarray, count: int, where: str) -> np.ndarray:
    """Labels as int64 0-9, one per image; a (N, 1) column is accepted (keras' own shape)."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) != count:
        raise CifarDataError(f"{where} has shape {y.shape}, expected ({count},) labels")
    if not np.issubdtype(y.dtype, np.integer):
        raise CifarDataError(f"{where} labels must be integers 0-9, found dtype {y.dtype}")
    if y.min() < 0 or y.max() >= NUM_CLASSES:
        raise CifarDataError(f"{where} labels must be integers 0-9, found {y.dtype} in [{y.min()}, {y.max()}]")
    return y.astype(np.int64)


def _uint8_images(x: np.ndarray, where: str) -> np.ndarray:
    """Pixels as uint8 0-255, accepting only what is unambiguous, so nothing loads silently dark.

    Integers must lie in 0-255. Floats must be finite and in [0, 255]: a max <= 1.0 means
    [0, 1] images (scaled by 255), a larger max means 0-255 values; both are rounded. The rule
    is by value range, so 0-255 floats that never exceed 1 are read as [0, 1]: store those as uint8.
    """
    if x.dtype == np.uint8:
        return x
    is_float = np.issubdtype(x.dtype, np.floating)
    if not (is_float or np.issubdtype(x.dtype, np.integer)):
        raise CifarDataError(f"{where} has dtype {x.dtype}; expected uint8 (or integers 0-255, "
                             "or floats in [0, 1] or [0, 255])")
    low, high = x.min(), x.max()  # NaN and inf propagate into these, so no full-size mask is needed
    if is_float and not (np.isfinite(low) and np.isfinite(high)):
        nan, inf = int(np.isnan(x).sum()), int(np.isinf(x).sum())
        raise CifarDataError(f"{where} holds {nan} NaN and {inf} infinite pixel values")
    if low < 0 or high > 255:
        rule = " (floats: [0, 1] if the max is <= 1, else 0-255)" if is_float else ""
        raise CifarDataError(f"{where} holds values in [{low}, {high}]; pixel values must be 0-255{rule}")
    if not is_float:
        return x.astype(np.uint8)
    if high <= 1.0 and all(np.all((c == 0) | (c == 1)) for c in _chunks(x)):
        warnings.warn(f"{where}: float pixels are all 0 or 1; read as [0, 1] images (1 -> 255). "
                      "If they are 0-255 values, store them as uint8.", stacklevel=4)
    scale = 255 if high <= 1.0 else 1
    out = np.empty(x.shape, np.uint8)
    for start, chunk in zip(range(0, len(x), _CHUNK), _chunks(x), strict=True):
        out[start:start + len(chunk)] = np.rint(chunk.astype(np.promote_types(x.dtype, np.float32)) * scale)
    return out


def _chunks(x: np.ndarray) -> Iterator[np.ndarray]:
    return (x[start:start + _CHUNK] for start in range(0, len(x), _CHUNK))


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
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, zlib.error) as error:
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
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, EOFError) as error:
        raise CifarDataError(f"{origin}: cannot decode image ({error})") from error


def _read_npz(path: Path) -> Arrays:
    try:
        with np.load(path, allow_pickle=False) as npz:
            one_copy = _OneCopy(str(path))
            for name in npz.files:  # a repeated member: np.load would silently keep the last
                one_copy.add("", name, str(path))
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in npz.files]
            if missing:
                raise CifarDataError(f"{path}: npz lacks {', '.join(missing)} (has {', '.join(npz.files)})")
            arrays = [npz[k] for k in ("x_train", "y_train", "x_test", "y_test")]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, zlib.error) as error:
        if isinstance(error, CifarDataError):
            raise
        raise CifarDataError(f"{path}: not a readable .npz ({error})") from error
    return _checked(arrays, str(path))


def _batches_to_arrays(batches: dict[str, tuple[dict, str]], origin: str) -> Arrays:
    """The official python batches (name -> (pickled dict, where it came from)) to HWC arrays."""
    arrays = []
    for split in SPLITS:
        missing = [n for n in BATCH_NAMES[split] if n not in batches]
        if missing:
            raise CifarDataError(f"{origin}: missing {', '.join(missing)}")
        rows, labels = zip(*(_batch_rows(*batches[n]) for n in BATCH_NAMES[split]), strict=True)
        try:
            rows, labels = np.concatenate(rows), np.concatenate(labels)
        except (TypeError, ValueError) as error:  # batches whose dtypes do not mix
            raise CifarDataError(f"{origin}: {split} batches do not fit together ({error})") from error
        arrays += [rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels]
    return _checked(arrays, origin)


def _batch_rows(batch: dict, origin: str) -> tuple[np.ndarray, np.ndarray]:
    """One batch's (rows, labels), checked on its own: counts that only match in total would
    pass the final check while shifting every later label."""
    try:
        rows, labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"])
    except (KeyError, IndexError, TypeError, ValueError) as error:
        raise CifarDataError(f"{origin}: malformed batch file, needs b'data' and b'labels' ({error!r})") from error
    if rows.ndim != 2 or rows.shape[1] != BATCH_ROW:
        raise CifarDataError(f"{origin}: data has shape {rows.shape}, expected (N, {BATCH_ROW}) rows of CHW pixels")
    if labels.ndim != 1 or len(labels) != len(rows):
        count = len(labels) if labels.ndim == 1 else f"shape {labels.shape}"
        raise CifarDataError(f"{origin}: {count} labels for {len(rows)} images")
    return rows, labels


def _unpickle(stream, origin: str) -> dict:
    # The official archive is pickled; only open archives you trust.
    try:
        return pickle.load(stream, encoding="bytes")
    except Exception as error:  # truncated or corrupt pickles raise many types
        raise CifarDataError(f"{origin}: corrupt batch file ({type(error).__name__}: {error})") from error


def _read_python_batches(folder: Path) -> Arrays:
    batches = {}
    for name in (*BATCH_NAMES["train"], *BATCH_NAMES["test"]):
        file = folder / name
        if _stat(file, missing_ok=True) is None:
            continue  # reported with every other missing batch by _batches_to_arrays
        try:
            with open(file, "rb") as stream:
                batches[name] = _unpickle(stream, str(file)), str(file)
        except OSError as error:
            raise CifarDataError(f"{file}: {_why(error, file)}") from error
    return _batches_to_arrays(batches, str(folder))


def _read_python_tar(path: Path) -> Arrays:
    wanted = {*BATCH_NAMES["train"], *BATCH_NAMES["test"]}
    batches, one_copy = {}, _OneCopy(str(path))
    try:
        with tarfile.open(path) as tar:
            for member in tar:
                root, _, name = member.name.rpartition("/")
                if not (member.isfile() and name in wanted):
                    continue
                origin = f"{path}:{member.name}"
                one_copy.add(root + "/" if root else "", name, origin)
                batches[name] = _unpickle(tar.extractfile(member), origin), origin
    except (tarfile.TarError, EOFError, OSError) as error:
        raise CifarDataError(f"{path}: truncated or corrupt archive ({error})") from error
    return _batches_to_arrays(batches, str(path))


class _OneCopy:
    """One dataset per source, the rule every archive and folder reader shares: a second
    root folder, or a second file of one name, is a second copy. Loading both doubles the
    data, and which one is right is anyone's guess, so either is refused."""

    def __init__(self, origin: str):
        self.origin, self.root, self.first = origin, None, {}

    def add(self, root: str, name: str, where: str) -> None:
        """Record ``name`` found under ``root`` (``""`` or ``"folder/"``) at ``where``."""
        if self.root is None:
            self.root = root
        elif root != self.root:
            raise CifarDataError(f"{self.origin}: two copies of the dataset, one at {_place(self.root)} "
                                 f"and one at {_place(root)}; keep one")
        if name in self.first:
            first = "" if self.first[name] == where else f" (first at {self.first[name]})"
            raise CifarDataError(f"{where}: a second {name}{first}")
        self.first[name] = where


def _place(root: str) -> str:
    return repr(root) if root else "the top level"


def _hidden(name: str) -> bool:
    """Hidden files and folders (.DS_Store, .ipynb_checkpoints, __MACOSX) are not images."""
    return name.startswith((".", "__MACOSX"))


def _labelled(entries: Iterable[tuple[str, object]], origin: str) -> list[tuple[str, int, object]]:
    """(relative path, key) pairs to (split, label, key), for files under [root/]<split>/<class>/,
    all under one root (see ``_OneCopy``). A list, so a second copy is refused before decoding.
    Folders (paths ending in "/") are only checked: an empty class folder must be a known class too."""
    labelled, one_copy = [], _OneCopy(origin)
    for relpath, key in sorted(entries, key=lambda entry: entry[0]):
        parts = relpath.strip("/").split("/")
        if any(_hidden(p) for p in parts):
            continue
        if relpath.endswith("/"):
            if len(parts) >= 2 and parts[-2] in SPLITS:
                _class_label(parts[-2], parts[-1], origin)
        elif len(parts) >= 3 and parts[-3] in SPLITS:
            label = _class_label(parts[-3], parts[-2], origin)
            one_copy.add("".join(f"{p}/" for p in parts[:-3]), "/".join(parts[-3:]), f"{origin}:{relpath}")
            labelled.append((parts[-3], label, key))
    return labelled


def _class_label(split: str, class_name: str, origin: str) -> int:
    """The label a class folder's name means; labels come from names, so any other name is refused."""
    if class_name not in CLASS_NAMES:
        raise CifarDataError(f"{origin}: unknown class folder {split}/{class_name!r}; "
                             f"expected one of {', '.join(CLASS_NAMES)}")
    return CLASS_NAMES.index(class_name)


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


def _read_tree(root: Path, cache_dir) -> Arrays:
    """Each file is read once, for the cache key and for decoding, so the arrays cached under
    a key are those of the very bytes it was computed from."""
    files = [(split, label, (path.relative_to(root).as_posix(), _read_bytes(path)))
             for split, label, path in _tree_files(root)]
    key = _content_key(part for _, _, (name, blob) in files for part in (f"{name}\0{len(blob)}\0".encode(), blob))
    return _cached(root, key, lambda: _collect(files, str(root)), cache_dir)


def _tree_files(root: Path) -> list[tuple[str, int, Path]]:
    """(split, label, path) of every image file under root/<split>/<class>/. A broken entry
    (dangling symlink, symlink loop, no permission) raises instead of quietly vanishing."""
    files = []
    for split, label, path in _labelled(_tree_entries(root), str(root)):
        found = _stat(path)
        if stat.S_ISDIR(found.st_mode):
            continue  # sub-folders of a class folder were never read
        if not stat.S_ISREG(found.st_mode):
            raise CifarDataError(f"{path}: not a regular file")
        files.append((split, label, path))
    return files


def _tree_entries(root: Path) -> Iterator[tuple[str, Path]]:
    """(relative path, path) three levels down, listing each folder explicitly: glob() skips
    folders it cannot read, which would drop a whole class without a word."""
    for split in SPLITS:
        if not _is_dir(root / split):
            continue
        for class_dir in _listdir(root / split):
            if _hidden(class_dir.name) or not _is_dir(class_dir):
                continue
            yield f"{split}/{class_dir.name}/", class_dir  # checked by name even when empty
            for path in _listdir(class_dir):
                yield f"{split}/{class_dir.name}/{path.name}", path


def _read_zip(path: Path, cache_dir) -> Arrays:
    """The zip is read into memory once (the real one is 62 MB), for the cache key and for
    decoding, so a zip rewritten mid-load can neither mix two versions nor file one under the other's key."""
    blob = _read_bytes(path)
    return _cached(path, _content_key([blob]), lambda: _decode_zip(path, blob), cache_dir)


def _decode_zip(path: Path, blob: bytes) -> Arrays:
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as archive:
            names = [(n, n) for n in archive.namelist()]
            items = ((split, label, (name, _zip_member(archive, name, path)))
                     for split, label, name in _labelled(names, str(path)))
            return _collect(items, str(path))
    except (zipfile.BadZipFile, EOFError, OSError) as error:
        raise CifarDataError(f"{path}: truncated or corrupt zip ({error})") from error


def _zip_member(archive: zipfile.ZipFile, name: str, path: Path) -> bytes:
    try:
        return archive.read(name)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError) as error:
        # corrupt data, bad CRC, encrypted, or a compression method zipfile lacks
        raise CifarDataError(f"{path}:{name}: cannot read zip member ({type(error).__name__}: {error})") from error


# --- file-system probes that name the path and the problem -----------------------------

def _why(error: OSError, path: Path) -> str:
    """What an OSError on ``path`` means, in words a notebook user can act on."""
    if error.errno == errno.ELOOP:
        return "symlink loop"
    if error.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if error.errno == errno.ENOENT and os.path.islink(path):
        return f"dangling symlink (points to {os.readlink(path)})"
    return f"cannot read ({error.strerror or error})"


def _stat(path: Path, missing_ok: bool = False) -> os.stat_result | None:
    """``path.stat()``, or None when it is plainly absent and ``missing_ok``; any other failure
    (including a symlink to nowhere) is a CifarDataError naming the path."""
    try:
        return path.stat()
    except OSError as error:
        absent = error.errno in (errno.ENOENT, errno.ENOTDIR) and not os.path.islink(path)
        if absent and missing_ok:
            return None
        raise CifarDataError(f"{path}: {'no such file' if absent else _why(error, path)}") from error


def _is_dir(path: Path) -> bool:
    found = _stat(path, missing_ok=True)
    return found is not None and stat.S_ISDIR(found.st_mode)


def _listdir(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except OSError as error:
        raise CifarDataError(f"{folder}: cannot list folder ({_why(error, folder)})") from error


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise CifarDataError(f"{path}: {_why(error, path)}") from error


# --- cache for decoded image folders -------------------------------------------------

# Part of every cache key: bump it when the loader's checks change, so arrays cached under
# older checks are decoded and checked again instead of served.
_CACHE_RULES = b"cifar_utils cache v2\0"


def _content_key(parts: Iterable[bytes]) -> str:
    """SHA-256 of a source's bytes, not its size and mtime: ``cp -p`` and ``rsync -t`` give new
    content the old size and mtime, and no stat can tell. Hashing costs one read of the
    source, already needed to decode it and small beside decoding 60,000 images."""
    digest = hashlib.sha256(_CACHE_RULES)
    for part in parts:
        digest.update(part)
    return digest.hexdigest()


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "cifar_utils")


def _cached(path: Path, content_key: str, decode, cache_dir) -> Arrays:
    """Decode once; later loads read the npz. The entry is named by the full content digest,
    so a changed source gets a new cache file, and no entry of the older 12-digit size-and-mtime
    names can be taken for it. A cache that fails to load is removed and rebuilt rather than
    trusted, and one that cannot be written (read-only, disk full) only costs a warning."""
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    source_key = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    cache = cache_dir / f"{source_key}-{content_key}.npz"
    if os.path.exists(cache):
        try:
            return _read_npz(cache)
        except CifarDataError as error:
            warnings.warn(f"ignoring broken cache {cache}: {error}; decoding {path} again", stacklevel=3)
            _remove(cache)
    arrays = decode()
    try:
        _write_cache(cache, arrays)
    except (OSError, RunStorageError) as error:
        warnings.warn(f"not caching {path}: cannot write {cache} ({error}); "
                      f"it will be decoded again next time (set {CACHE_ENV} to a writable folder)", stacklevel=3)
        return arrays
    for stale in cache_dir.glob(f"{source_key}-*.npz"):
        if stale != cache:
            _remove(stale)
    return arrays


def _write_cache(cache: Path, arrays: Arrays) -> None:
    """Written whole or not at all (``storage``), so a half-written cache is never read."""
    cache.parent.mkdir(parents=True, exist_ok=True)
    named = dict(zip(("x_train", "y_train", "x_test", "y_test"), arrays, strict=True))
    write_atomic(cache, lambda stream: np.savez(stream, **named))


def _remove(path: Path) -> None:
    """Best-effort delete: a file that stays behind is harmless, failing the load over it is not."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


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


def stratified_share(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of ``fraction`` of each class (rounded per class), drawn with ``seed``:
    the same images every time for the same labels. ``labels``: integers or one-hot."""
    classes = labels.argmax(axis=1) if labels.ndim == 2 else np.asarray(labels)
    rng = np.random.default_rng(seed)
    held = []
    for cls in np.unique(classes):
        members = np.flatnonzero(classes == cls)
        held.append(rng.choice(members, size=int(round(fraction * len(members))), replace=False))
    return np.sort(np.concatenate(held))


def fingerprint(data) -> str:
    """A short content hash of a dataset, so run folders tell data sources apart."""
    (x_train, y_train), (x_test, y_test) = data
    digest = hashlib.sha1()
    for array in (x_train, y_train, x_test, y_test):
        array = np.ascontiguousarray(array)
        digest.update(f"{array.shape}{array.dtype}".encode())
        digest.update(np.ascontiguousarray(array.reshape(len(array), -1)[::97]).tobytes())
    return digest.hexdigest()[:10]
