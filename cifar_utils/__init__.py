"""cifar_utils: data, the study's 17 experiments, training and plots for the CIFAR-10 course.

The chapter notebooks import only this package; see README.md for the tour.
"""

from .augment import Augment
from .data import CLASS_NAMES, CifarData, CifarDataError, load_cifar10
from .experiments import CHAPTERS, EXPERIMENTS, ArchSpec, Experiment, chapter_experiments, get_experiment
from .models import build_model, compile_model
from .plots import plot_history, plot_study_comparison, plot_test_accuracy_curves, save_figure
from .results import results_table
from .speed import DeviceBatches, Speed
from .training import RunRecord, load_records, run_experiment

__version__ = "0.1.0"

__all__ = [
    "Augment", "CLASS_NAMES", "CifarData", "CifarDataError", "load_cifar10",
    "CHAPTERS", "EXPERIMENTS", "ArchSpec", "Experiment", "chapter_experiments", "get_experiment",
    "build_model", "compile_model", "RunRecord", "load_records", "run_experiment",
    "plot_history", "plot_study_comparison", "plot_test_accuracy_curves", "save_figure", "results_table",
    "Speed", "DeviceBatches",
]
