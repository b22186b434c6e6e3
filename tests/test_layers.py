"""The runs layer stands below the course: nothing in ``cifar_utils/runs/`` imports a chapter,
the report or the driver, and only the modules that train import Keras at their top.

Read from the source (``ast``), every import counted, those inside functions too, so a
lazy import cannot hide an arrow that runs the wrong way."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNS = sorted((ROOT / "cifar_utils" / "runs").glob("*.py"))
# What the runs layer may use of the package beside itself: the registry, the model and
# its recipe, data, speed settings, storage and errors. Nothing of the course's prose.
BELOW = {"experiments", "models", "recipes", "data", "speed", "backend", "batches", "augment", "final_model", "folders",
         "costs", "quiet", "errors", "parameters", "storage", "values", "profiles", "custom", "fastnet", "version"}
COURSE = {"chapter", "summary", "course", "beyond", "claims", "plots", "report", "run_all", "run_args", "run_plan",
          "run_profile", "illustrations", "ingredients", "model_code", "recipe_code", "results", "noise", "colab"}
BACKENDS = {"keras", "tensorflow", "jax", "torch"}
KERAS_MODULES = {"train.py", "callbacks.py"}


def imported(path: Path, top_only: bool = False) -> set[str]:
    """What ``path`` imports: ``cifar_utils`` modules by their first name below the package
    (``runs`` for its own), others by their top-level name."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                found.add(node.module.split(".")[0])
            elif node.level == 1:  # runs' own modules
                found.add("runs")
            else:  # from ..x import y, or from .. import x
                found |= {node.module.split(".")[0]} if node.module else {alias.name for alias in node.names}
    return found


@pytest.mark.parametrize("path", RUNS, ids=[p.name for p in RUNS])
def test_runs_imports_nothing_of_the_course(path):
    package = imported(path) - {"runs"}
    ours = {name for name in package if (ROOT / "cifar_utils" / f"{name}.py").exists()}
    assert not ours & COURSE, f"{path.name} imports the course layer: {sorted(ours & COURSE)}"
    assert ours <= BELOW, f"{path.name} imports {sorted(ours - BELOW)}: not below the runs layer"


@pytest.mark.parametrize("path", RUNS, ids=[p.name for p in RUNS])
def test_only_the_training_modules_import_a_backend_at_their_top(path):
    backends = imported(path, top_only=True) & BACKENDS
    assert path.name in KERAS_MODULES or not backends, f"{path.name} imports {sorted(backends)} at its top"


def test_every_package_module_is_placed_on_one_side():
    modules = {p.stem for p in (ROOT / "cifar_utils").glob("*.py")} - {"__init__"}
    assert not BELOW & COURSE and modules - BELOW - COURSE == set(), "place each new module in BELOW or COURSE"
