"""The trail of the fake workers (``fake_pool_worker``, ``fake_cluster_work``), read by the
pool's and the cluster's hung-worker tests: each attempt at a run leaves a file
``attempt-<seed>-<number>`` in its runs folder, holding the pid that made it. Standard
library only: the fakes import it, and they import nothing of this package."""

import os
from pathlib import Path


def record_attempt(out_dir: str, seed: int) -> int:
    """Record this process's attempt at ``seed``; return its number, from 1."""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    number = len(list(folder.glob(f"attempt-{seed}-*"))) + 1
    (folder / f"attempt-{seed}-{number}").write_text(str(os.getpid()))
    return number


def attempts(out: Path, seed: int) -> list[int]:
    """The pids of the attempts at ``seed``, in order."""
    return [int(p.read_text()) for p in sorted(out.glob(f"attempt-{seed}-*"))]


def gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie counts: it runs nothing more)."""
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] == "Z"
    except OSError:
        return True
