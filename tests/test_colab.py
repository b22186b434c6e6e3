"""The set-up cell every chapter starts with (cifar_utils/colab.py), tried as a Colab learner meets it.

The kernel test builds a Colab-like Python: a fresh virtual environment that sees this
environment's installed stack (TensorFlow, Keras, ...) through a ``.pth`` line, but not
this package, since a path added by a ``.pth`` line is not a site directory, so the
editable install's own ``.pth`` finder is not read there, and ``google.colab`` importable
and imported at start, as in Colab. The cell's clone address points at a git repository
made from the working tree, so uncommitted changes are what is tested.
"""

import json
import os
import re
import subprocess
import sys
import sysconfig
import types
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from cifar_utils import backend, colab, quiet
from cifar_utils.colab import NOTEBOOK_METADATA, REPOSITORY, SETUP_CELL

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("0*.ipynb"))
STARTUP_NOISE = ("absl::InitializeLog", "cuInit", "oneDNN")  # TensorFlow's C++ start-up lines


def code_cells(path: Path) -> list[dict]:
    return [c for c in json.loads(path.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code"]


def test_every_chapter_starts_with_the_one_setup_cell_and_asks_colab_for_a_gpu():
    assert len(NOTEBOOKS) == 6
    for path in NOTEBOOKS:
        cell = code_cells(path)[0]
        assert "".join(cell["source"]) == SETUP_CELL, f"{path.name}: run python scripts/sync_setup_cell.py"
        assert cell["outputs"] == [] and cell["execution_count"] is None, path.name
        metadata = json.loads(path.read_text(encoding="utf-8"))["metadata"]
        assert metadata["accelerator"] == "GPU", path.name
        assert all(metadata["colab"].get(k) == v for k, v in NOTEBOOK_METADATA["colab"].items()), path.name


def test_the_setup_cell_installs_for_the_running_kernel_from_one_address():
    assert SETUP_CELL.count(REPOSITORY) == 1
    install = next(line for line in SETUP_CELL.splitlines() if "pip install" in line)
    assert " -e " not in install and "--no-deps" in install  # not editable; Colab's stack left as it is
    assert "%pip" not in SETUP_CELL  # IPython's %pip prints "you may need to restart the kernel"


def test_the_keras_lower_bound_is_pyprojects():
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    (bound,) = re.findall(r'"keras>=([\d.]+)', pyproject)
    assert tuple(int(p) for p in bound.split(".")) == colab.MIN_KERAS


def test_keras_2_is_refused_with_what_to_do(monkeypatch):
    monkeypatch.setitem(sys.modules, "keras", types.SimpleNamespace(__version__="2.15.0"))
    with pytest.raises(ImportError, match=r"needs Keras 3 .*Keras 2\.15\.0.*Restart session"):
        colab.require_keras_3()


def test_the_report_says_how_to_select_a_gpu(monkeypatch):
    monkeypatch.setattr(backend, "accelerators", lambda: [])
    text = "\n".join(colab.environment_report())
    assert f"Keras {backend.versions()['keras']}" in text and "No GPU" in text
    assert "Runtime → Change runtime type → T4 GPU" in text
    monkeypatch.setattr(backend, "accelerators", lambda: ["Tesla T4"])
    monkeypatch.setattr(backend, "device_description", lambda: "Tesla T4")
    text = "\n".join(colab.environment_report())
    assert "GPU: Tesla T4" in text and "Change runtime type" not in text


def test_missing_requirements_names_what_the_stack_lacks(monkeypatch):
    listed = ["keras<4,>=3.5", "surely-not-installed-xyz>=1", "dask[distributed]; extra == 'cluster'"]
    monkeypatch.setattr(colab.importlib.metadata, "requires", lambda name: listed)
    assert colab.missing_requirements() == ["surely-not-installed-xyz"]


START_LINES = [quiet.BANNER + "\n",
               "I0000 00:00:1796155426.238583   27578 port.cc:153] oneDNN custom operations are on.\n",
               "2025-09-17 14:44:05.157831: I external/local_xla/xla/tsl/cuda/cudart_stub.cc:32] Could not find\n",
               "W0000 00:00:1796155426.3   27578 x.cc:1] a warning\n",
               "E0000 00:00:1796155361.973162   27336 cuda_platform.cc:52] failed call to cuInit: INTERNAL\n"]


def test_the_start_up_lines_follow_tensorflows_log_level():
    assert [quiet.hidden(line, 3) for line in START_LINES] == [True] * 5
    assert [quiet.hidden(line, 2) for line in START_LINES] == [True, True, True, True, False]
    assert not any(quiet.hidden(line, 0) for line in START_LINES)
    assert not quiet.hidden("<string>:4: UserWarning: real\n", 3) and not quiet.hidden("Traceback ...\n", 3)


def test_tensorflow_start_keeps_every_other_line_in_order(capfd, monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    with quiet.tensorflow_start():
        for line in ["first\n", *START_LINES, "last\n"]:
            os.write(2, line.encode())
    assert capfd.readouterr().err == "first\n" + START_LINES[-1] + "last\n"


# --- the Colab-like kernel ----------------------------------------------------------------


def git(*args: str, cwd: Path) -> str:
    identity = ["-c", "user.name=test", "-c", "user.email=test@example.invalid", "-c", "commit.gpgsign=false",
                "-c", "init.defaultBranch=main"]
    return subprocess.run(["git", *identity, *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def working_tree_repository(target: Path) -> str:
    """A git repository of the working tree as it is (committed or not, ignored files left out),
    as a ``file://`` address: ``git clone --depth 1`` of a plain path warns that it ignores the depth."""
    listed = git("ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=ROOT).split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is left out
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).write_bytes(source.read_bytes())
    git("init", "-q", cwd=target)
    git("add", "-A", cwd=target)
    git("commit", "-q", "-m", "working tree", cwd=target)
    return target.as_uri()


def colab_like_python(venv: Path) -> Path:
    """A fresh venv that sees this environment's site-packages (not as a site directory) and a
    stub ``google.colab`` that IPython imports at start-up, as Colab's kernel does."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    stack = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site / "installed_stack.pth").write_text("\n".join(stack) + "\n")
    (site / "google" / "colab").mkdir(parents=True)  # no google/__init__.py: google is protobuf's namespace
    (site / "google" / "colab" / "__init__.py").write_text('"""A stand-in: Colab\'s module, imported."""\n')
    return python


def kernel_environment(tmp_path: Path, python: Path, monkeypatch) -> dict[str, str]:
    """A kernel spec for ``python`` and the kernel's environment: nothing of this session's
    TensorFlow log level or paths, so what the cell and the package set is what is tested."""
    spec = tmp_path / "jupyter" / "kernels" / "colab-like"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({"argv": [str(python), "-m", "ipykernel_launcher", "-f",
                                                           "{connection_file}"],
                                                  "display_name": "Colab-like", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    startup = tmp_path / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-colab.py").write_text("import google.colab  # noqa: F401\n")
    dropped = ("TF_CPP_MIN_LOG_LEVEL", "PYTHONPATH", "PYTHONHOME")  # and PYTEST_*: with PYTEST_CURRENT_TEST set,
    # ipykernel leaves file descriptor 2 alone, so C++ lines would miss the cell's outputs this test reads
    env = {k: v for k, v in os.environ.items() if k not in dropped and not k.startswith("PYTEST_")}
    env.update(PATH=f"{python.parent}{os.pathsep}{env.get('PATH', '')}", VIRTUAL_ENV=str(python.parent.parent),
               IPYTHONDIR=str(tmp_path / "ipython"))
    return env


def chapter_cells(path: Path, repository: str, site: Path) -> list:
    """The chapter's own cells (set-up with the local address, imports, parameters, set-up of the
    chapter) around small parameters and two checks, as one notebook for one kernel."""
    cells = code_cells(path)
    source = ["".join(c["source"]) for c in cells]
    parameters = next(i for i, c in enumerate(cells) if "parameters" in c["metadata"].get("tags", []))
    chapter = next(i for i in range(parameters, len(cells)) if "chapter.setup()" in source[i])
    new = nbformat.v4.new_code_cell
    return [new('import importlib.util, sys\nassert "google.colab" in sys.modules\n'
                'assert importlib.util.find_spec("cifar_utils") is None, "the package is there before the set-up"'),
            new(source[0].replace(REPOSITORY, repository)), new(source[1]), new(source[parameters]),
            new('data_source, subset, exercises = "sample", 200, False  # as papermill injects; runs: the default'),
            new(source[chapter]),
            new(f'import warnings, cifar_utils\nassert cifar_utils.__file__.startswith({str(site)!r}), '
                f'cifar_utils.__file__\nwarnings.warn("a real warning")')]


def stream_text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def shown_text(cell) -> str:
    """What ``show`` displayed (Markdown) in a cell."""
    return "".join(o.get("data", {}).get("text/markdown", "") for o in cell.outputs if o.output_type == "display_data")


@pytest.mark.slow
def test_a_chapter_runs_in_a_colab_like_kernel_without_a_restart(tmp_path, monkeypatch):
    """Chapter 1's cells; the other chapters' set-up cells are the same text (the first test), and
    their import cells run here too, in the same kernel. A kernel per chapter would add a venv, a
    clone, a pip build and a TensorFlow import each (about 12 s on 2 cores) for no new code."""
    stack = Path(sysconfig.get_paths()["purelib"])
    ours = sorted(p.name for p in stack.iterdir() if "cifar_utils" in p.name)  # the dev install, left alone?
    (tmp_path / "repo").mkdir()
    repository = working_tree_repository(tmp_path / "repo")
    python = colab_like_python(tmp_path / "venv")
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    env = kernel_environment(tmp_path, python, monkeypatch)  # without PYTHONPATH, which could name a checkout
    probe = subprocess.run([python, "-c", "import importlib.util; assert importlib.util.find_spec('keras'); "
                            "import cifar_utils"], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert "No module named 'cifar_utils'" in probe.stderr, probe.stderr[-2000:]  # sees Keras, not the package
    content = tmp_path / "content"  # Colab's working folder
    content.mkdir()
    nb = nbformat.v4.new_notebook(cells=chapter_cells(NOTEBOOKS[0], repository, site))
    nb.cells += [nbformat.v4.new_code_cell("".join(code_cells(path)[1]["source"])) for path in NOTEBOOKS[1:]]
    nb.cells.append(nbformat.v4.new_code_cell(nb.cells[1].source))  # run again: no second clone or install
    NotebookClient(nb, kernel_name="colab-like", timeout=600, startup_timeout=120,
                   resources={"metadata": {"path": str(content)}}).execute(env=env)
    setup = stream_text(nb.cells[1])
    print(setup)  # the first screen a Colab learner sees (pytest -rP shows it)
    assert (content / "course" / "notebooks").is_dir() and "Keras 3." in setup
    assert "GPU: " in setup or "Runtime → Change runtime type" in setup
    assert "restart" not in setup.lower()
    again = stream_text(nb.cells[-1])
    assert again.startswith("Python ") and setup.endswith(again), again
    everything = "".join(stream_text(c) for c in nb.cells)
    assert not [n for n in STARTUP_NOISE if n in everything], everything[-3000:]
    assert "UserWarning: a real warning" in everything  # Python warnings still show
    chapter = shown_text(nb.cells[5])  # the chapter's set-up, at the parameters' defaults: the reference
    print(chapter)
    assert "Nothing is trained in this chapter" in chapter and 'runs = "train"' in chapter, chapter
    assert not (content / "course" / "notebooks" / "output" / "runs").exists()
    assert sorted(p.name for p in stack.iterdir() if "cifar_utils" in p.name) == ours


def test_out_dir_drive_mounts_google_drive_only_when_asked(tmp_path, monkeypatch):
    # A recycled Colab session loses /content; "drive" keeps a chapter's runs on Drive.
    import types

    from cifar_utils.colab import DRIVE_FOLDER, DRIVE_MOUNT, output_folder

    assert output_folder("output") == "output" and output_folder(tmp_path) == tmp_path
    with pytest.raises(ValueError, match="works in Google Colab only"):
        output_folder("drive")
    mounted = []
    colab = types.ModuleType("google.colab")
    colab.drive = types.SimpleNamespace(mount=mounted.append)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    assert output_folder("drive") == DRIVE_FOLDER and mounted == [DRIVE_MOUNT]
