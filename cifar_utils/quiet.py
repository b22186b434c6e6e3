"""TensorFlow's C++ start-up lines, kept out of a chapter's outputs; real messages still shown.

TensorFlow's C++ logging reads ``TF_CPP_MIN_LOG_LEVEL`` (0 all, 1 no INFO, 2 no WARNING
either, 3 no ERROR either). On a machine without a GPU, "2" still prints ``E0000 ... failed
call to cuInit`` when the backend first looks for devices; "3" hides it. But the lines printed
while TensorFlow's libraries load ignore the variable (TensorFlow 2.19-2.21, checked with 2.21;
tensorflow/tensorflow#100442): absl's "All log messages before absl::InitializeLog()" banner,
``I0000 ... oneDNN custom operations are on``, ``I0000 ... Could not find cuda drivers``, each
twice. ``tensorflow_start`` applies the level to those lines itself. Python warnings and
exceptions are untouched; so is every line that is not a C++ log record of a hidden severity.

The package face imports no backend, so TensorFlow starts wherever Keras is first imported:
by the set-up cell's check, the first Keras-using name, a pool worker's first run.
``quiet_keras_start`` (the package face calls it) makes that first import, whichever module
makes it, run under ``tensorflow_start`` and then pass the face's version check.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator

LEVEL = "3"  # the package's default; a value the user set wins
BANNER = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
# absl's "I0000 00:00:1796155426.238583   27578 port.cc:153] ..." and TSL's older
# "2025-09-17 14:44:05.157831: I external/.../cudart_stub.cc:32] ...".
RECORD = re.compile(r"^(?:([IWEF])\d{4} [\d:.]+\s+\d+ |\d{4}-\d\d-\d\d [\d:.]+: ([IWEF]) )\S+:\d+\] ")
SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}


def hidden(line: str, level: int) -> bool:
    """Whether TensorFlow's own filter would have hidden this stderr line at ``level``."""
    if line.rstrip("\n") == BANNER:
        return level >= 1  # absl prints it before the first record: it goes when the records go
    match = RECORD.match(line)
    return bool(match) and SEVERITY[match.group(1) or match.group(2)] < level


def log_level() -> int:
    """The level in force, after setting the package's default where the user set none."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", LEVEL)
    try:
        return int(os.environ["TF_CPP_MIN_LOG_LEVEL"])
    except ValueError:
        return 0


@contextlib.contextmanager
def tensorflow_start() -> Iterator[None]:
    """Run the block (the first ``import keras``, which loads TensorFlow) with file descriptor 2
    in a temporary file, then write back to stderr every line the level keeps, in order.

    File-descriptor level, because the lines come from C++ (a Jupyter kernel forwards fd 2 to
    the cell's output). Where fd 2 cannot be redirected, the block runs as is.
    """
    level = log_level()
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as captured:
        sys.stderr.flush()
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode(errors="replace").splitlines(keepends=True)
                    if not hidden(line, level)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def quiet_keras_start(check: Callable[[str], None]) -> None:
    """Set the log level now (before anything can load TensorFlow), and run this process's
    first ``import keras`` under ``tensorflow_start``, then ``check`` its version (raising
    ``ImportError`` to refuse it)."""
    log_level()
    if "keras" in sys.modules:  # imported before the package: only the check is left
        check(sys.modules["keras"].__version__)
    elif not any(isinstance(finder, _FirstKeras) for finder in sys.meta_path):
        sys.meta_path.insert(0, _FirstKeras(check))


class _FirstKeras(importlib.abc.MetaPathFinder):
    """Finds ``keras`` as the other finders do, with a loader that imports it quietly."""

    def __init__(self, check: Callable[[str], None]):
        self.check = check

    def find_spec(self, name, path=None, target=None):
        if name != "keras":
            return None
        for finder in sys.meta_path:
            spec = None if finder is self else getattr(finder, "find_spec", lambda *_: None)(name, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _QuietLoader(spec.loader, self)
                return spec
        return None


class _QuietLoader(importlib.abc.Loader):
    """Runs Keras' own loader under ``tensorflow_start``, once, then steps aside."""

    def __init__(self, loader, finder: _FirstKeras):
        self.loader, self.finder = loader, finder

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self.finder)
        module.__loader__ = module.__spec__.loader = self.loader
        with tensorflow_start():
            self.loader.exec_module(module)
        self.finder.check(module.__version__)
