"""The study's 17 experiments as data: one registry, read by the builder, plots and report.

Each later experiment is written as a change to an earlier one (``dataclasses.replace``),
the way the slides present them, so the registry reads like the study's storyline.
Adding experiment 18 means appending one ``Experiment`` to ``EXPERIMENTS``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

# The study's shared recipe (every experiment): Adam(lr=1e-3), categorical
# cross-entropy, batch 512, 300 epochs, test set as validation data.
STUDY_EPOCHS = 300
STUDY_BATCH_SIZE = 512
STUDY_LEARNING_RATE = 1e-3

CHAPTERS = {
    1: "Four-layer CNN: raw vs normalised pixels",
    2: "Six- and seven-layer CNNs: depth and width",
    3: "Techniques: dropout, batch norm, weight initialisation",
    4: "VGG-like network and data augmentation",
}


@dataclass(frozen=True)
class ArchSpec:
    """A sequential CNN: blocks of ``num_convs`` 3x3 convs with ``filters`` channels.

    A block is conv(s) -> [BatchNorm] -> MaxPool(3, stride 2, same) -> [Dropout].
    The head is Flatten -> [Dense(dense_units) -> [BN] -> [Dropout]] -> Dense(10).
    """

    blocks: tuple[tuple[int, int], ...]  # (num_convs, filters), as in d2l's VGG arch
    dense_units: int | None = None
    dropout: float = 0.0
    batch_norm: bool = False
    bn_before_activation: bool = False  # conv -> BN -> ReLU instead of conv(ReLU) -> BN
    kernel_initializer: str = "glorot_uniform"  # convs only; dense layers keep Keras' default

    def __post_init__(self) -> None:
        if not self.blocks:
            raise ValueError("ArchSpec.blocks must hold at least one (num_convs, filters) block")
        for block in self.blocks:
            if len(block) != 2 or min(block) < 1:
                raise ValueError(f"ArchSpec block {block!r} must be (num_convs >= 1, filters >= 1)")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ArchSpec.dropout must be in [0, 1), got {self.dropout}")
        if self.bn_before_activation and not self.batch_norm:
            raise ValueError("bn_before_activation=True needs batch_norm=True")


@dataclass(frozen=True)
class StudyFigures:
    """What the study reported for one experiment (final epoch, accuracies in %)."""

    params: int
    train_loss: float
    test_loss: float
    train_acc: float
    test_acc: float
    seconds_per_epoch: float  # median, on the study's Colab GPU


@dataclass(frozen=True)
class Experiment:
    number: int
    name: str  # the slide's title
    chapter: int
    description: str
    spec: ArchSpec
    study: StudyFigures
    normalize: bool = True  # divide pixels by 255
    augment: bool = False  # random shift (+-10 %) and horizontal flip
    tags: tuple[str, ...] = field(default=())

    @property
    def key(self) -> str:
        """Stable short name used for folders and figure files, e.g. ``exp07``."""
        return f"exp{self.number:02d}"

    @property
    def label(self) -> str:
        return f"{self.number}. {self.name}"


_4LAYER = ArchSpec(blocks=((1, 32),) * 3)
_6LAYER_C = ArchSpec(blocks=((1, 32), (1, 64), (1, 64), (1, 64), (1, 128)))
_BASIC = replace(_6LAYER_C, dense_units=128)
_DROPOUT = replace(_BASIC, dropout=0.3)
_COMPLEX = replace(_DROPOUT, batch_norm=True)
_COMPLEX_HE = replace(_COMPLEX, kernel_initializer="he_uniform")
_VGG = replace(_COMPLEX_HE, blocks=tuple((2, f) for _, f in _COMPLEX_HE.blocks))

EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment(1, "4-layer model 1", 1, "3 conv blocks of 32 on raw 0-255 pixels",
               _4LAYER, StudyFigures(24_522, 0.3141, 2.1981, 88.74, 63.00, 3), normalize=False),
    Experiment(2, "4-layer model 2", 1, "Experiment 1 with pixels divided by 255",
               _4LAYER, StudyFigures(24_522, 0.2861, 1.1398, 90.10, 72.87, 3)),
    Experiment(3, "6-layer model 1", 2, "5 conv blocks of 32",
               ArchSpec(blocks=((1, 32),) * 5), StudyFigures(38_218, 0.1277, 2.1026, 95.41, 70.27, 3)),
    Experiment(4, "6-layer model 2", 2, "5 conv blocks, 16-32-64-128-256 filters",
               ArchSpec(blocks=((1, 16), (1, 32), (1, 64), (1, 128), (1, 256))),
               StudyFigures(395_178, 1.2390, 1.2527, 55.23, 54.60, 4)),
    Experiment(5, "6-layer model 3", 2, "5 conv blocks, 32-64-64-64-128 filters",
               _6LAYER_C, StudyFigures(168_394, 0.0000, 5.9658, 100.00, 74.77, 4)),
    Experiment(6, "7-layer model 1 (basic)", 2, "Experiment 5 plus Dense(128, relu)",
               _BASIC, StudyFigures(184_906, 0.0000, 5.3863, 100.00, 75.02, 4)),
    Experiment(7, "Dropout model 1", 3, "Basic model plus Dropout(0.3) after every pool and the dense",
               _DROPOUT, StudyFigures(184_906, 0.5596, 0.5568, 80.65, 80.67, 5), tags=("dropout",)),
    Experiment(8, "Complex model 1", 3, "Dropout model plus batch norm after each conv and the dense",
               _COMPLEX, StudyFigures(186_826, 0.4222, 0.5087, 85.29, 82.98, 6),
               tags=("dropout", "batch_norm")),
    Experiment(9, "Complex model 2", 3, "Complex model 1 with he_uniform conv initialisation",
               _COMPLEX_HE, StudyFigures(186_826, 0.4196, 0.5005, 85.26, 83.75, 7),
               tags=("dropout", "batch_norm", "he_init")),
    Experiment(10, "BN before activation", 3, "Complex model 2 with conv -> BN -> ReLU",
               replace(_COMPLEX_HE, bn_before_activation=True),
               StudyFigures(186_826, 0.5041, 0.5736, 82.56, 81.07, 6),
               tags=("dropout", "batch_norm", "he_init")),
    Experiment(11, "BatchNorm model 1", 3, "Basic model plus batch norm only",
               replace(_BASIC, batch_norm=True), StudyFigures(186_826, 0.0012, 1.4304, 100.00, 77.27, 5),
               tags=("batch_norm",)),
    Experiment(12, "WeightInit model 1", 3, "Basic model with he_uniform only",
               replace(_BASIC, kernel_initializer="he_uniform"),
               StudyFigures(184_906, 0.0000, 6.1982, 100.00, 72.94, 4), tags=("he_init",)),
    Experiment(13, "Dropout + he_uniform", 3, "Dropout model with he_uniform conv initialisation",
               replace(_DROPOUT, kernel_initializer="he_uniform"),
               StudyFigures(184_906, 0.5690, 0.5723, 80.50, 80.36, 4), tags=("dropout", "he_init")),
    Experiment(14, "Dropout + he_normal", 3, "Dropout model with he_normal conv initialisation",
               replace(_DROPOUT, kernel_initializer="he_normal"),
               StudyFigures(184_906, 0.5792, 0.5742, 80.19, 80.41, 5), tags=("dropout", "he_init")),
    Experiment(15, "VGG-like model", 4, "Complex model 2 with two convs per block",
               _VGG, StudyFigures(454_442, 0.0927, 0.6348, 96.84, 85.87, 11),
               tags=("dropout", "batch_norm", "he_init", "vgg")),
    Experiment(16, "Data augmentation", 4, "Complex model 2 trained with shift/flip augmentation",
               _COMPLEX_HE, StudyFigures(186_826, 0.5577, 0.5521, 80.66, 81.40, 30), augment=True,
               tags=("dropout", "batch_norm", "he_init", "augment")),
    Experiment(17, "VGG-like + augmentation", 4, "VGG-like model trained with shift/flip augmentation",
               _VGG, StudyFigures(454_442, 0.2426, 0.3480, 91.51, 89.02, 34), augment=True,
               tags=("dropout", "batch_norm", "he_init", "vgg", "augment")),
)

_BY_NUMBER = {e.number: e for e in EXPERIMENTS}
assert len(_BY_NUMBER) == len(EXPERIMENTS), "experiment numbers must be unique"


def get_experiment(experiment: int | str | Experiment) -> Experiment:
    """Look an experiment up by number (7), key ('exp07') or pass one through."""
    if isinstance(experiment, Experiment):
        return experiment
    number = experiment
    if isinstance(experiment, str):
        text = experiment.lower().removeprefix("exp")
        if not text.isdigit():
            raise KeyError(f"unknown experiment {experiment!r}: use a number 1-{len(EXPERIMENTS)} or 'expNN'")
        number = int(text)
    try:
        return _BY_NUMBER[number]
    except KeyError:
        known = ", ".join(str(n) for n in _BY_NUMBER)
        raise KeyError(f"unknown experiment {experiment!r}; known: {known}") from None


def chapter_experiments(chapter: int) -> list[Experiment]:
    """The experiments a chapter notebook covers, in the study's order."""
    found = [e for e in EXPERIMENTS if e.chapter == chapter]
    if not found:
        raise KeyError(f"no experiments in chapter {chapter}; chapters: {sorted(CHAPTERS)}")
    return found
