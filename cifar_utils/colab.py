"""The notebooks' set-up cell, written once, and the check it ends with.

Every chapter's first code cell is ``SETUP_CELL``: ``scripts/sync_setup_cell.py`` writes it,
with Colab's GPU metadata (``NOTEBOOK_METADATA``), into the six notebooks, and
``tests/test_colab.py`` checks they still hold it. So a change is made here, once.

In Colab the cell clones the course and installs it with a plain ``pip install``. An editable
install (``-e``) registers the package through a ``.pth`` file, which Python reads only at
start-up, so the kernel that ran the cell could not import the package before a restart.
``--no-deps`` leaves Colab's own Keras, TensorFlow, NumPy, ... as they are (no pin of ours
fights Colab's upgrades); ``check_environment`` names any requirement still missing.

This module imports only the standard library at its top: the set-up cell imports it before
Keras, and the package face has ``quiet.quiet_keras_start`` check the first import of Keras
with ``check_keras_version``.
"""

from __future__ import annotations

import importlib.metadata
import re

REPOSITORY = "https://github.com/cifar10-course/cifar10-simple-cnns"  # the one clone address; a fork changes it here
MIN_KERAS = (3, 5)  # pyproject.toml's lower bound (a test checks they agree)
GPU_HOWTO = "Runtime → Change runtime type → T4 GPU (or another GPU) → Save, then Runtime → Run all"

SETUP_CELL = f"""\
# Set-up. In Google Colab: fetch the course (the package and its reference results) and install it,
# so that this kernel imports it at once (no restart). Elsewhere, see the README's set-up.
# Then check Python, Keras 3, the backend and the GPU. (Written by scripts/sync_setup_cell.py.)
import os
import sys

if "google.colab" in sys.modules and not os.path.isdir("../cifar_utils"):  # not yet in the course's folder
    if not os.path.isdir("course"):
        !git clone -q --depth 1 {REPOSITORY} course
    !{{sys.executable}} -m pip install -q --no-deps ./course  # Colab has Keras and the rest: add only the course
    %cd course/notebooks

from cifar_utils.colab import check_environment

check_environment()"""

# Colab opens a notebook with this metadata on a GPU runtime (T4: the free one).
NOTEBOOK_METADATA = {"accelerator": "GPU", "colab": {"gpuType": "T4", "provenance": []}}


def _keras_version(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:2])


def require_keras_3() -> None:
    """Import Keras, refusing, with what to do, a Python whose Keras is not Keras 3: the package
    is written for Keras 3's API, and under Keras 2 it would fail later with an error that
    names neither."""
    try:
        import keras
    except ImportError as error:
        raise ImportError(f"cifar_utils needs Keras 3, and this Python has no Keras: "
                          f"%pip install 'keras>={_minimum()}' tensorflow") from error
    check_keras_version(keras.__version__)


def check_keras_version(version: str) -> None:
    """Refuse a Keras ``version`` that is not Keras 3 (``MIN_KERAS`` or newer), saying what to do."""
    found = _keras_version(version)
    if found[0] != 3 or found < MIN_KERAS:
        raise ImportError(f"cifar_utils needs Keras 3 ({_minimum()} or newer); this Python has Keras "
                          f"{version}. Install it with %pip install -U 'keras>={_minimum()}', then restart "
                          "the kernel (Colab: Runtime → Restart session) and run the notebook again from the top.")


def _minimum() -> str:
    return ".".join(map(str, MIN_KERAS))


def missing_requirements(distribution: str = "cifar-utils") -> list[str]:
    """The package's required distributions (extras aside) that are not installed.

    The set-up cell installs with ``--no-deps``, so Colab's stack is what the course runs on;
    this says what that stack lacks instead of letting pip replace parts of it. Empty when the
    package runs from a source folder without its metadata.
    """
    try:
        requires = importlib.metadata.requires(distribution) or []
    except importlib.metadata.PackageNotFoundError:
        return []
    missing = []
    for requirement in requires:
        if "extra ==" in requirement:
            continue
        name = re.match(r"[A-Za-z0-9._-]+", requirement).group(0)
        try:
            importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
    return missing


def environment_report() -> list[str]:
    """What this kernel runs on, one line each, with what to do when it cannot run the course well."""
    require_keras_3()  # the first import of Keras here, quietly (``quiet``): refused by name if not Keras 3
    from . import backend
    from .version import __version__

    found, name = backend.versions(), backend.backend_name()
    lines = [f"Python {found['python']}, Keras {found['keras']}, backend {name} {found[name]}, "
             f"cifar_utils {__version__}"]
    if backend.accelerators():
        lines.append(f"GPU: {backend.device_description()}")
    else:
        lines += [f"No GPU: this runtime has only a {backend.device_description()}. Reading the reference "
                  "(runs = \"reference\", the default) needs none; training a chapter's full-length runs here "
                  "takes hours.",
                  f"  To select a GPU in Colab: {GPU_HOWTO}."]
    missing = missing_requirements()
    if missing:
        lines.append(f"Not installed here, though cifar_utils lists them: {', '.join(missing)}. "
                     f"If a cell needs one: %pip install {' '.join(missing)}")
    return lines


def check_environment() -> None:
    """Print ``environment_report``: the set-up cell's last line, the first thing a learner reads."""
    print("\n".join(environment_report()))


DRIVE = "drive"  # the out_dir value that keeps a chapter's runs on Google Drive
DRIVE_MOUNT = "/content/drive"
DRIVE_FOLDER = "/content/drive/MyDrive/cifar10-course/output"


def output_folder(out_dir):
    """``out_dir`` as given, or, for ``"drive"``, a folder on Google Drive, mounted here and
    only when asked: a recycled Colab session loses ``/content`` with every run, and a
    chapter rerun on Drive resumes each run from its last checkpoint."""
    if str(out_dir) != DRIVE:
        return out_dir
    import sys

    if "google.colab" not in sys.modules:
        raise ValueError(f'out_dir="{DRIVE}" keeps runs on Google Drive and works in Google Colab only; '
                         "elsewhere give a folder")
    from google.colab import drive

    drive.mount(DRIVE_MOUNT)
    return DRIVE_FOLDER
