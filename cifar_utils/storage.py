"""Files written whole or not at all, and a full disk named as such.

Every file the package writes for later (a run's record and history, predictions, the data
cache, figures, the report's manifest, benchmark tables) goes through ``replacing``: a temp
file beside the target, renamed over it once complete, so a reader or a resumed run never
sees half a file, and a temp file left by a killed process is never taken for the real one.
A full disk raises ``RunStorageError`` naming the folder and the space needed, with the
temp file removed, instead of a raw ``OSError 28`` from deep inside h5py or NumPy.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from .errors import RunStorageError

Content = str | bytes | Callable[[BinaryIO], object]  # text (UTF-8), bytes, or what writes a binary stream


def is_disk_full(error: OSError) -> bool:
    """An ``OSError`` that means no space (h5py and TensorFlow word errno 28 their own way)."""
    return error.errno in (errno.ENOSPC, errno.EDQUOT) or "No space left" in str(error) or "errno = 28" in str(error)


def storage_error(folder: Path, what: str, needed: float, error: OSError | None = None) -> RunStorageError:
    """The one message for a full disk: where, what, how much is needed and free."""
    free = shutil.disk_usage(folder).free if folder.exists() else 0
    cause = f" ({error})" if error else ""
    return RunStorageError(f"{folder}: not enough disk space to write {what}: about {needed / 1e6:.1f} MB needed, "
                           f"{free / 1e6:.1f} MB free{cause}. Free some space and run again: finished runs are "
                           "untouched, and an unfinished run resumes from its last checkpoint.")


def ensure_space(folder: Path, needed: float, what: str) -> None:
    """Refuse before writing rather than fail halfway (h5py can crash on a full disk)."""
    if shutil.disk_usage(folder).free < needed:
        raise storage_error(folder, what, needed)


def temp_path(path: Path) -> Path:
    """Where ``replacing`` writes ``path`` first: hidden, and marked by this process."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def is_temp(name: str) -> bool:
    """A file name ``temp_path`` gives (a leftover, if no process is writing it)."""
    return name.startswith(".") and name.endswith(".tmp")


@contextmanager
def replacing(path: str | os.PathLike, needed: float | None = None, temp: Path | None = None) -> Iterator[Path]:
    """Yield a temp path to write ``path`` through; it replaces ``path`` when the block ends
    normally and is removed when it does not. ``needed`` (bytes) is what a full disk's
    message names (default: what was written); ``temp`` serves a writer that insists on
    the target's suffix (Keras' ``.weights.h5``)."""
    path = Path(path)
    tmp = temp or temp_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as error:
        written = tmp.stat().st_size if tmp.exists() else 0
        tmp.unlink(missing_ok=True)
        if isinstance(error, OSError) and is_disk_full(error):
            raise storage_error(path.parent, path.name, written if needed is None else needed, error) from None
        raise


def write_atomic(path: str | os.PathLike, content: Content) -> None:
    """Write ``content`` to ``path`` through ``replacing``: text (as UTF-8), bytes, or a
    function given the open binary stream (``np.savez``, ``fig.savefig``)."""
    data = content.encode() if isinstance(content, str) else content
    with replacing(path, len(data) if isinstance(data, bytes) else None) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            with open(tmp, "wb") as stream:
                content(stream)
