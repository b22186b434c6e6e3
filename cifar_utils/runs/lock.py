"""One process owns a run folder; another waits for it, then finds the run finished.

``flock`` is released by the kernel when its owner dies, however it dies, so a killed run
never stays locked. The lock file says who holds it (pid, host, run, since when), for the
waiting message. A stopped or hung owner keeps its lock, so a waiter gives up once nothing
in the folder has changed for the wait time: an owner that trains writes its history every
epoch, so a long run is waited for and a dead one is not.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from ..errors import RunError, RunLockTimeout
from . import progress
from .folder import LOCK_FILE

# No change in a held run folder for this long means its owner is stopped or hung: 5x the
# longest stretch without a history row in the cost table (costs.py: experiment 21, 193.5 s
# an epoch and 310.7 s after its last epoch), as CPUs differ by up to 5x.
LOCK_WAIT_SECONDS = 1800.0
LOCK_NOTE_SECONDS = 300.0  # a waiter says it still waits this often (a sign of life to the pool)
LOCK_WAIT_ENV = "CIFAR_UTILS_LOCK_WAIT"


@contextmanager
def run_lock(run_dir: Path, label: str, wait: float | None = None) -> Iterator[None]:
    """Own ``run_dir`` for the block, waiting for its owner if another process holds it:
    until nothing in the folder changed for ``wait`` seconds (default ``lock_wait_seconds``),
    then ``RunLockTimeout``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not _try_lock(fd):
            _wait_for_lock(fd, run_dir, label, lock_wait_seconds() if wait is None else wait)
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} ({label}) since {stamp}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def lock_wait_seconds() -> float:
    """How long a waiter lets a held run folder stay unchanged: ``$CIFAR_UTILS_LOCK_WAIT``
    (``./run_all.sh --stall-timeout`` sets it for its workers and notebooks) or the default."""
    text = os.environ.get(LOCK_WAIT_ENV, "").strip()
    if not text:
        return LOCK_WAIT_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0:
        raise RunError(f"${LOCK_WAIT_ENV}={text!r}: give a number of seconds above 0")
    return seconds


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _folder_state(run_dir: Path) -> list[tuple]:
    """Name, size and modification time of each file: what changes while an owner trains."""
    state = []
    for path in run_dir.iterdir():
        try:
            info = path.stat()
        except OSError:  # removed between listing and looking
            continue
        state.append((path.name, info.st_size, info.st_mtime_ns))
    return sorted(state)


def _wait_for_lock(fd: int, run_dir: Path, label: str, wait: float) -> None:
    """Wait for the owner of ``run_dir``; give up when the folder stayed unchanged for
    ``wait`` seconds, measured on this machine's clock (another machine's may differ)."""
    owner = os.pread(fd, 300, 0).decode(errors="replace").strip() or "another process"
    progress.say(label, f"waiting for {run_dir}: {owner} is training it (giving up if nothing there changes for "
                        f"{progress.clock(wait)})")
    seen, changed = _folder_state(run_dir), time.monotonic()
    noted = changed
    while not _try_lock(fd):
        time.sleep(min(1.0, wait / 10))
        now, state = time.monotonic(), _folder_state(run_dir)
        if state != seen:
            seen, changed = state, now
        elif now - changed >= wait:
            raise RunLockTimeout(
                f"{run_dir}: gave up waiting for {owner}: nothing in the run folder changed for "
                f"{progress.clock(wait)} (a stopped or hung process?). End that process, or let it finish, and run "
                "again: the run resumes from its last checkpoint")
        if now - noted >= min(LOCK_NOTE_SECONDS, wait / 3):
            noted = now
            since = progress.clock(now - changed)
            progress.say(label, f"still waiting for {run_dir}: {owner}; last change {since} ago")
