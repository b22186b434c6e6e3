"""Reading records, planning runs and driving a pool load no backend: each import below runs
in a fresh interpreter and must leave Keras, TensorFlow, JAX and PyTorch unloaded. And where
Keras is first imported, however, it is checked to be Keras 3."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ("keras", "tensorflow", "jax", "torch")
RUNS = ROOT / "cifar_utils" / "runs"
KERAS_MODULES = {"train", "callbacks"}  # the layer that trains
LIGHT_RUNS = sorted(f"cifar_utils.runs.{p.stem}" for p in RUNS.glob("*.py")
                    if p.stem not in KERAS_MODULES | {"__init__"})


def loaded_backends(code: str, **env: str) -> list[str]:
    probe = f"{code}\nimport sys\nprint(sorted(m for m in {BACKENDS!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env})
    assert done.returncode == 0, done.stderr[-2000:]
    return eval(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("code", [
    "import cifar_utils",
    "import cifar_utils.runs.pool",
    "import cifar_utils.runs.record",
    "import cifar_utils.runs.reference",
    "from cifar_utils import RunRecord, load_records",
    "import cifar_utils.run_all",  # it sets the GPU memory settings before any backend loads
    "import cifar_utils.run_args, cifar_utils.run_plan, cifar_utils.run_profile",  # checked before data loads
    "import " + ", ".join(LIGHT_RUNS),  # the whole runs layer below training
])
def test_no_backend_is_loaded(code):
    assert loaded_backends(code) == []


def test_a_keras_using_name_loads_keras_and_the_face_lists_what_it_gives():
    assert "keras" in loaded_backends("import cifar_utils\nassert 'build_model' in dir(cifar_utils)\n"
                                      "from cifar_utils import build_model, Chapter, show")


def test_a_keras_that_is_not_keras_3_is_refused_where_it_is_first_imported(tmp_path):
    (tmp_path / "keras").mkdir()
    (tmp_path / "keras" / "__init__.py").write_text('__version__ = "2.15.0"\n')
    probe = "import cifar_utils\ntry:\n    import cifar_utils.models\nexcept ImportError as error:\n    print(error)"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])})
    assert "cifar_utils needs Keras 3 (3.5 or newer); this Python has Keras 2.15.0" in done.stdout, done.stderr


def test_tensorflow_starts_quietly_wherever_keras_is_first_imported():
    # The face imports no backend, so TensorFlow starts in whichever module imports Keras
    # first: here the training code, as a pool worker imports it.
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-c", "import cifar_utils.runs.train"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**env, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "absl::InitializeLog" not in done.stderr and "I0000" not in done.stderr, done.stderr[-2000:]
