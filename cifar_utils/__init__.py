"""cifar_utils: data, the course's experiments (networks and recipes), training, figures
and verdicts for the CIFAR-10 course.

The chapter notebooks import this package; see README.md for the tour. The face is lazy
(PEP 562): ``import cifar_utils`` loads no backend, and each name below imports its module
when first used, so reading records, planning runs or driving a pool never loads Keras.
Where Keras is first imported, TensorFlow starts quietly and a Keras that is not Keras 3
is refused by name (``quiet.quiet_keras_start``).

Where a figure lives says what it is made from:

- from finished runs (records, histories, saved predictions): ``plots``, and for chapter
  6's factorial and sweeps ``beyond``, beside the analysis whose numbers they draw;
- before or without training the study's runs (seconds on a CPU, the same in every
  profile): ``illustrations`` for chapters 1-4's techniques, ``ingredients`` for chapter
  6's recipe ingredients. Each computes its numbers in one function and plots them in
  another, so a chapter's sentences and its figure share their numbers.
"""

from __future__ import annotations

import importlib

from .colab import check_keras_version
from .quiet import quiet_keras_start
from .version import __version__

# First, before anything can import Keras: TensorFlow's C++ start-up lines stay out of the
# outputs (TF_CPP_MIN_LOG_LEVEL, default 3; see quiet.py), and Keras 2 is refused by name.
quiet_keras_start(check=check_keras_version)

# name -> the module (under cifar_utils) it comes from
_EXPORTS = {
    **dict.fromkeys(["Augment", "Translate"], "augment"),
    **dict.fromkeys(["EpochBatches", "EpochDraws", "epoch_order"], "batches"),
    **dict.fromkeys(["CLASS_NAMES", "CifarData", "load_cifar10", "stratified_share"], "data"),
    **dict.fromkeys(["CifarUtilsError", "CifarDataError", "RunError", "RunStorageError"], "errors"),
    **dict.fromkeys(["CHAPTERS", "EXPERIMENTS", "STUDY_EXPERIMENTS", "STUDY_RECIPE", "AirbenchSpec", "ArchSpec",
                     "DenseSpec", "Experiment", "Recipe", "chapter_experiments", "get_experiment"], "experiments"),
    **dict.fromkeys(["build_model", "compile_model"], "models"),
    **dict.fromkeys(["plot_history", "plot_study_comparison", "plot_test_accuracy_curves", "save_figure"], "plots"),
    "results_table": "results",
    "Speed": "speed",
    **dict.fromkeys(["RunRecord", "load_records", "scan_records"], "runs.record"),
    **dict.fromkeys(["plan_run", "find_finished"], "runs.identity"),
    "validation_split": "runs.splits",
    "run_experiment": "runs.train",
    "load_reference": "runs.reference",
    **dict.fromkeys(["Chapter", "show"], "chapter"),
    "Summary": "summary",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    """Import the module that holds ``name``, on its first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        value = getattr(importlib.import_module(f".{module}", __name__), name)
    except ModuleNotFoundError as error:
        if error.name == "keras":  # say what to install, as the set-up cell's check does
            from .colab import require_keras_3

            require_keras_3()
        raise
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
