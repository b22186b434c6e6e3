"""cifar_utils: data, the course's experiments (networks and recipes), training, figures
and verdicts for the CIFAR-10 course.

The chapter notebooks import this package; see README.md for the tour.
"""

from .colab import require_keras_3
from .quiet import tensorflow_start

# First, before anything imports Keras: TensorFlow's C++ start-up lines stay out of the outputs
# (TF_CPP_MIN_LOG_LEVEL, default 3; see quiet.py), and a Keras that is not Keras 3 is refused by name.
with tensorflow_start():
    require_keras_3()

from .augment import Augment, Translate
from .batches import EpochBatches, EpochDraws, epoch_order
from .data import CLASS_NAMES, CifarData, CifarDataError, load_cifar10
from .experiments import (
    CHAPTERS,
    EXPERIMENTS,
    STUDY_EXPERIMENTS,
    STUDY_RECIPE,
    AirbenchSpec,
    ArchSpec,
    DenseSpec,
    Experiment,
    Recipe,
    chapter_experiments,
    get_experiment,
)
from .models import build_model, compile_model
from .plots import plot_history, plot_study_comparison, plot_test_accuracy_curves, save_figure
from .results import results_table
from .speed import Speed
from .training import RunError, RunRecord, load_records, run_experiment

__version__ = "0.2.0"

__all__ = [
    "Augment", "Translate", "CLASS_NAMES", "CifarData", "CifarDataError", "load_cifar10",
    "CHAPTERS", "EXPERIMENTS", "STUDY_EXPERIMENTS", "STUDY_RECIPE", "AirbenchSpec", "ArchSpec", "DenseSpec",
    "Experiment", "Recipe", "chapter_experiments", "get_experiment", "build_model", "compile_model",
    "RunError", "RunRecord", "load_records", "run_experiment", "plot_history", "plot_study_comparison",
    "plot_test_accuracy_curves", "save_figure", "results_table", "Speed", "EpochBatches", "EpochDraws", "epoch_order",
]
