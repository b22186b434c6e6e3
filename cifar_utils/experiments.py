"""The study's 17 experiments, and the course's own, as data: one registry, read by the
builder, the training loop, the tables, the plots and the report.

An experiment is a network (``spec``), an input scale (``normalize``) and a training
recipe (``recipe``); the study's recipe is the default. Each later experiment is written
as a change to an earlier one (``dataclasses.replace``), the way the slides present them,
so the registry reads like the study's storyline. Adding experiment 22 means appending one
``Experiment`` to ``EXPERIMENTS``: its chapter plans, trains and shows it, and the summary
tables and plots it (in chapter 6 with the seeds its ``seeds_parameter`` names).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace

from .values import is_number, is_whole

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
    6: "Beyond the study: interactions, baselines, modern recipes",
}

OPTIMIZERS = ("adam", "sgd", "adamw")
SCHEDULES = ("constant", "cosine", "triangular")
AUGMENTATIONS = ("none", "shift_flip", "translate_flip")
TTA_KINDS = ("none", "flip", "flip_shift")
# What a field must be: (test, words, how a NumPy scalar becomes the Python one run
# parameters are written as).
_KINDS = {"number": (is_number, "a finite number", float), "whole": (is_whole, "a whole number", int),
          "flag": (lambda value: isinstance(value, bool), "True or False", bool)}


def _check_fields(owner: object, **kinds: str) -> None:
    """Refuse a field of the wrong type by name: ``dropout="0.5"`` failed inside a
    comparison and ``batch_size=2.5`` trained at 2. NumPy scalars become Python numbers."""
    for name, kind in kinds.items():
        test, words, cast = _KINDS[kind]
        value = getattr(owner, name)
        if not test(value):
            raise ValueError(f"{type(owner).__name__}.{name} must be {words}, got {value!r} ({type(value).__name__})")
        if type(value) not in (int, float, bool):
            object.__setattr__(owner, name, cast(value))


def _widths(owner: object, name: str, size: int | None = None) -> None:
    """A tuple (or list) of whole numbers >= 1, kept as a tuple; ``size``: how many."""
    value = getattr(owner, name)
    ok = isinstance(value, tuple | list) and len(value) >= 1 and all(is_whole(v) and v >= 1 for v in value)
    if not ok or (size is not None and len(value) != size):
        count = f"{size} " if size else ""
        raise ValueError(f"{type(owner).__name__}.{name} must hold {count}positive whole numbers, got {value!r}")
    object.__setattr__(owner, name, tuple(int(v) for v in value))


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
        blocks = self.blocks
        if not isinstance(blocks, tuple | list) or not blocks:
            raise ValueError(f"ArchSpec.blocks must hold at least one (num_convs, filters) block, got {blocks!r}")
        for block in blocks:
            if not isinstance(block, tuple | list) or len(block) != 2 or not all(is_whole(n) and n >= 1 for n in block):
                raise ValueError(f"ArchSpec block {block!r} must be (num_convs >= 1, filters >= 1)")
        object.__setattr__(self, "blocks", tuple((int(n), int(f)) for n, f in blocks))
        _check_fields(self, dropout="number", batch_norm="flag", bn_before_activation="flag")
        if self.dense_units is not None:
            _check_fields(self, dense_units="whole")
            if self.dense_units < 1:
                raise ValueError(f"ArchSpec.dense_units must be at least 1 (or None: no dense layer), "
                                 f"got {self.dense_units}")
        if not isinstance(self.kernel_initializer, str):
            raise ValueError(f"ArchSpec.kernel_initializer must be a Keras initializer name, "
                             f"got {self.kernel_initializer!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ArchSpec.dropout must be in [0, 1), got {self.dropout}")
        if self.bn_before_activation and not self.batch_norm:
            raise ValueError("bn_before_activation=True needs batch_norm=True")


@dataclass(frozen=True)
class DenseSpec:
    """A plain dense network (a multi-layer perceptron): Flatten -> Dense(relu)... -> Dense(10)."""

    hidden: tuple[int, ...]
    dropout: float = 0.0

    def __post_init__(self) -> None:
        _widths(self, "hidden")
        _check_fields(self, dropout="number")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"DenseSpec.dropout must be in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class AirbenchSpec:
    """A fast modern CNN after Keller Jordan's airbench94: a frozen patch-whitening conv
    computed from the data, then three groups of conv -> pool -> BN -> GELU -> conv -> BN ->
    GELU, identity-initialised convs, and a bias-free linear head with scaled-down logits."""

    widths: tuple[int, int, int] = (64, 256, 256)
    whitening_patch: int = 2
    # Keras convention: airbench's hyp says 0.6 and passes 1 - 0.6 to PyTorch, whose
    # momentum is the weight of the new batch; Keras' is the weight of the old average, 0.6.
    bn_momentum: float = 0.6
    logit_scale: float = 1 / 9

    def __post_init__(self) -> None:
        _widths(self, "widths", 3)
        _check_fields(self, whitening_patch="whole", bn_momentum="number", logit_scale="number")
        if self.whitening_patch not in (2, 3):
            raise ValueError(f"AirbenchSpec.whitening_patch must be 2 or 3, got {self.whitening_patch}")
        if not 0.0 <= self.bn_momentum < 1.0 or self.logit_scale <= 0:
            raise ValueError(f"AirbenchSpec needs bn_momentum in [0, 1) and logit_scale > 0, "
                             f"got {self.bn_momentum} and {self.logit_scale}")


Spec = ArchSpec | DenseSpec | AirbenchSpec


_RECIPE_NUMBERS = ("learning_rate", "momentum", "warmup", "final_lr_fraction", "weight_decay", "label_smoothing",
                   "ema", "validation")


@dataclass(frozen=True)
class Recipe:
    """How a network is trained. The defaults are the study's recipe.

    ``learning_rate`` is the peak rate of the schedule: ``cosine`` warms up linearly over
    the first ``warmup`` fraction of the steps, then decays to zero; ``triangular`` warms
    up the same way, then falls linearly to ``final_lr_fraction`` of the peak.
    ``weight_decay`` is decoupled (Keras' meaning: each step shrinks the weights by
    lr x wd), so PyTorch values do not transfer one to one. ``augment``: ``shift_flip`` is
    the study's ImageDataGenerator (sub-pixel shifts up to 10 %, nearest fill, flips);
    ``translate_flip`` shifts by whole pixels up to ``translate`` with reflect padding.
    ``ema``: momentum of an exponential moving average of the weights (0: off), used as
    the final model. ``tta``: test-time augmentation of the final evaluation.
    ``validation``: the fraction of training images held out (stratified, fixed seed) to
    choose on, 0.1 being CIFAR-10's usual 45,000 / 5,000; 0 is the study's way, the test set
    as validation data. Both sides of the split must keep at least one image of every
    class: ``runs.splits.validation_split`` refuses data too small for the fraction, naming
    the smallest subset that works. ``train_images``: train on a fixed, stratified share of
    that many of the (remaining) training images, the test set whole; 0: all of them.
    Chapter 6's small setting, which makes three seeds per factorial cell affordable on a CPU.
    """

    optimizer: str = "adam"
    learning_rate: float = STUDY_LEARNING_RATE
    momentum: float = 0.0
    nesterov: bool = False
    schedule: str = "constant"
    warmup: float = 0.0
    final_lr_fraction: float = 0.0
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    augment: str = "none"
    translate: int = 0
    ema: float = 0.0
    tta: str = "none"
    epochs: int = STUDY_EPOCHS
    batch_size: int = STUDY_BATCH_SIZE
    validation: float = 0.0
    train_images: int = 0

    def __post_init__(self) -> None:
        _check_fields(self, **dict.fromkeys(_RECIPE_NUMBERS, "number"), translate="whole", epochs="whole",
                      batch_size="whole", train_images="whole", nesterov="flag")
        for name, allowed in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES), ("augment", AUGMENTATIONS),
                              ("tta", TTA_KINDS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"Recipe.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.learning_rate <= 0 or self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"Recipe needs learning_rate > 0, epochs >= 1 and batch_size >= 1; "
                             f"got {self.learning_rate}, {self.epochs}, {self.batch_size}")
        for name in ("momentum", "warmup", "final_lr_fraction", "label_smoothing", "ema", "validation"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"Recipe.{name} must be in [0, 1), got {getattr(self, name)}")
        if self.train_images < 0:
            raise ValueError(f"Recipe.train_images must be 0 (all) or a number of images, got {self.train_images}")
        if self.weight_decay < 0 or self.translate < 0:
            raise ValueError(f"Recipe needs weight_decay >= 0 and translate >= 0; "
                             f"got {self.weight_decay}, {self.translate}")
        if self.augment == "translate_flip" and self.translate < 1:
            raise ValueError("Recipe.augment='translate_flip' needs translate >= 1 (pixels)")

    def changes(self) -> dict:
        """The fields that differ from the study's recipe (what a table or caption should name)."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) != getattr(STUDY_RECIPE, f.name)}


STUDY_RECIPE = Recipe()


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
    spec: Spec
    study: StudyFigures | None  # None: the study did not run it (the course's own experiments)
    normalize: bool = True  # divide pixels by 255
    recipe: Recipe = STUDY_RECIPE
    tags: tuple[str, ...] = field(default=())
    variant: str = ""  # "" for a registry entry; e.g. "lr=0.003" for a sweep point made by ``vary``
    # Chapter 6's notebook parameter that lists its seeds there: "seeds" (the chapter's), or
    # a list of its own that each profile sets (``course.CHAPTER6_PROFILES``: "modern_seeds",
    # "fast_seeds"). Not part of a run's identity; chapters 1-4 give every experiment "seeds".
    seeds_parameter: str = "seeds"

    def __post_init__(self) -> None:
        if not isinstance(self.seeds_parameter, str) or not re.fullmatch(r"(\w+_)?seeds", self.seeds_parameter):
            raise ValueError(f"experiment {self.number}: seeds_parameter must name a seed list parameter "
                             f"('seeds', 'modern_seeds', ...), got {self.seeds_parameter!r}")

    @property
    def augment(self) -> bool:
        return self.recipe.augment != "none"

    @property
    def study_recipe(self) -> bool:
        """Trained with the study's recipe (its augmentation or none). A course profile's
        epochs and batch size shorten these runs; a recipe of its own (chapter 6's modern
        recipes, the sweeps) keeps its length and batch, which its schedule and learning
        rate were set for. On fewer training images (``train_images``) it is still the study's."""
        return self.recipe.augment in ("none", "shift_flip") and \
            replace(self.recipe, augment="none", train_images=0) == STUDY_RECIPE

    @property
    def study_sweep(self) -> bool:
        """The study's recipe with a length and a validation split of its own (chapter 6's
        dropout sweep): a profile's batch size applies, its epochs do not (the sweep's own)."""
        return not self.study_recipe and self.recipe.augment in ("none", "shift_flip") and \
            replace(self.recipe, augment="none", epochs=STUDY_EPOCHS, validation=0.0, train_images=0) == STUDY_RECIPE

    @property
    def key(self) -> str:
        """Stable short name used for folders and figure files, e.g. ``exp07`` or ``exp09-lr0.003``."""
        base = f"exp{self.number:02d}"
        return f"{base}-{_slug(self.variant)}" if self.variant else base

    @property
    def label(self) -> str:
        return f"{self.number}. {self.name}" + (f" [{self.variant}]" if self.variant else "")

    def vary(self, label: str | None = None, **changes) -> Experiment:
        """This experiment with some recipe or spec fields changed, as a named variant
        (a sweep point): its runs are kept apart from the registry entry's in every table.
        The label (default: the changes, each value written exactly) names the variant in
        tables, and its key names folders and figures: give distinct settings distinct
        labels (``distinct_variants`` refuses two that share one)."""
        if label is not None and not isinstance(label, str):
            raise ValueError(f"experiment {self.number}: vary's label must be a string, got {label!r}")
        recipe_keys = {f.name for f in fields(Recipe)}
        spec_keys = {f.name for f in fields(self.spec)}
        unknown = sorted(set(changes) - recipe_keys - spec_keys)
        if unknown:
            raise ValueError(f"experiment {self.number}: cannot vary {unknown}; "
                             f"recipe fields: {sorted(recipe_keys)}; spec fields: {sorted(spec_keys)}")
        try:
            recipe = replace(self.recipe, **{k: v for k, v in changes.items() if k in recipe_keys})
            spec = replace(self.spec, **{k: v for k, v in changes.items() if k in spec_keys and k not in recipe_keys})
        except ValueError as error:
            raise ValueError(f"experiment {self.number}: cannot vary {changes}: {error}") from None
        label = label or ", ".join(f"{k}={exact(v)}" for k, v in sorted(changes.items()))
        return replace(self, recipe=recipe, spec=spec, variant=label)


def exact(value) -> str:
    """A value as a label writes it: a float as short as ``:g`` where that reads back as the
    same number, else in full (``:g`` wrote 0.1 + 0.2 as 0.3, and 1e-3 and 1.0000001e-3 alike)."""
    if not isinstance(value, float):
        return str(value)
    short = f"{value:g}"
    return short if float(short) == value else repr(float(value))


def distinct_variants(experiments: Iterable[Experiment]) -> list[Experiment]:
    """The experiments, refused if two with different settings share a label or a key:
    tables group runs by label, figures and folders are named by key."""
    experiments = list(experiments)
    seen: dict[tuple[int, str], Experiment] = {}
    for exp in experiments:
        for name in (exp.label, exp.key):
            other = seen.setdefault((exp.number, name), exp)
            if other != exp:
                raise ValueError(f"experiment variants {other.label!r} and {exp.label!r} have different settings "
                                 f"but one name ({name!r}): give each its own label (vary's first argument)")
    return experiments


def _slug(text: str) -> str:
    """A label as a file name; "+" stays, so 1e+06 and 1e-06 are two names."""
    return re.sub(r"[^A-Za-z0-9.+]+", "-", text.replace("=", "")).strip("-")


_4LAYER = ArchSpec(blocks=((1, 32),) * 3)
_6LAYER_C = ArchSpec(blocks=((1, 32), (1, 64), (1, 64), (1, 64), (1, 128)))
_BASIC = replace(_6LAYER_C, dense_units=128)
_DROPOUT = replace(_BASIC, dropout=0.3)
_COMPLEX = replace(_DROPOUT, batch_norm=True)
_COMPLEX_HE = replace(_COMPLEX, kernel_initializer="he_uniform")
_VGG = replace(_COMPLEX_HE, blocks=tuple((2, f) for _, f in _COMPLEX_HE.blocks))
_STUDY_AUGMENT = replace(STUDY_RECIPE, augment="shift_flip")

# Experiment 17's network trained the way modern CIFAR-10 recipes train (Page's ResNet-9,
# the old Keras ResNet example): Nesterov SGD, warm-up then cosine decay, decoupled weight
# decay, label smoothing, +-4 px reflect translations and flips and flip test-time
# augmentation; 30 epochs instead of 300, chosen on a validation split. Weight decay is
# Page's 5e-4 in Keras terms: PyTorch's coupled decay goes through momentum 0.9 and shrinks
# the weights by lr x 5e-4 / (1 - 0.9) a step, which Keras' decoupled decay writes as 5e-3.
# The rate stays at 0.05 (batch 256), below Page's 0.4 at batch 512: this network has a
# conv and a dense head without a batch norm right behind them, and on CPU runs of 10
# epochs the higher rates trained no faster and left the batch norm statistics further
# from the weights. The weight EMA (0.99: about the last 100 steps) is Keras' optimizer
# EMA, swapped into the weights when fit ends. It averages the trainable weights only, so
# the batch norm statistics of the final model are re-estimated for the averaged weights,
# and a run too short for 0.99 gets a lower momentum (``final_model``); docs/benchmarks.md
# measures short runs with and without it.
MODERN_RECIPE = Recipe(optimizer="sgd", learning_rate=0.05, momentum=0.9, nesterov=True, schedule="cosine",
                       warmup=0.1, weight_decay=5e-3, label_smoothing=0.1, augment="translate_flip", translate=4,
                       ema=0.99, tta="flip", epochs=30, batch_size=256, validation=0.1)
# airbench94's recipe in Keras terms: a triangular learning rate, label smoothing 0.2,
# +-2 px translations and multi-view test-time augmentation. Its rate, 11.5 per 1024
# examples with Nesterov momentum 0.85 on a summed loss, is a PyTorch rate of
# 11.5 / (1024 x (1 + 1 / 0.15)) per image: 1.5 on Keras' mean loss at batch 1024. Its
# weight decay, 0.0153 per 1024 examples, enters the momentum buffer as
# 0.0153 / (1 + 1 / 0.15) a step, so it shrinks the weights by that / 0.15 = 0.0133 a step
# at the peak rate: Keras' decoupled decay writes it as 1.5 x 0.0089. Its lookahead has no
# Keras counterpart: the optimizer's EMA averages the trainable weights only, not the batch
# norm statistics, and on short CPU runs the EMA model was not better than the last
# weights, so it is off.
FAST_RECIPE = Recipe(optimizer="sgd", learning_rate=1.5, momentum=0.85, nesterov=True, schedule="triangular",
                     warmup=0.23, final_lr_fraction=0.07, weight_decay=0.0089, label_smoothing=0.2,
                     augment="translate_flip", translate=2, ema=0.0, tta="flip_shift", epochs=12,
                     batch_size=1024, validation=0.1)

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
               _COMPLEX_HE, StudyFigures(186_826, 0.5577, 0.5521, 80.66, 81.40, 30), recipe=_STUDY_AUGMENT,
               tags=("dropout", "batch_norm", "he_init", "augment")),
    Experiment(17, "VGG-like + augmentation", 4, "VGG-like model trained with shift/flip augmentation",
               _VGG, StudyFigures(454_442, 0.2426, 0.3480, 91.51, 89.02, 34), recipe=_STUDY_AUGMENT,
               tags=("dropout", "batch_norm", "he_init", "vgg", "augment")),
    # The course's own experiments (chapter 6); the study ran none of them.
    Experiment(18, "BatchNorm + he_uniform", 6, "Basic model with batch norm and he_uniform, no dropout: "
               "the missing cell of the dropout x batch norm x He init design",
               replace(_BASIC, batch_norm=True, kernel_initializer="he_uniform"), None,
               tags=("batch_norm", "he_init")),
    Experiment(19, "Dense network (DNN)", 6, "A plain two-hidden-layer perceptron under the study's recipe",
               DenseSpec(hidden=(512, 256)), None),
    Experiment(20, "VGG-like, modern recipe", 6, "Experiment 17's network unchanged, trained the modern way "
               "(Nesterov SGD, warm-up + cosine, weight decay, label smoothing, flip TTA) for 30 epochs",
               _VGG, None, recipe=MODERN_RECIPE, tags=("dropout", "batch_norm", "he_init", "vgg", "augment"),
               seeds_parameter="modern_seeds"),
    Experiment(21, "Airbench-style network", 6, "A fast modern network after airbench94: patch whitening, "
               "identity init, GELU, fast batch norm, triangular learning rate, multi-view TTA",
               AirbenchSpec(), None, recipe=FAST_RECIPE, tags=("batch_norm", "augment"), seeds_parameter="fast_seeds"),
)

STUDY_EXPERIMENTS: tuple[Experiment, ...] = tuple(e for e in EXPERIMENTS if e.study is not None)
_indexed: tuple[tuple[Experiment, ...], dict[int, Experiment]] | None = None


def _by_number() -> dict[int, Experiment]:
    """The registry by number, read from ``EXPERIMENTS`` as it is now (so a line a test
    adds to it is found), rebuilt only when the registry changed."""
    global _indexed
    if _indexed is None or _indexed[0] is not EXPERIMENTS:
        index = {e.number: e for e in EXPERIMENTS}
        if len(index) != len(EXPERIMENTS):
            raise ValueError("experiment numbers must be unique")
        _indexed = (EXPERIMENTS, index)
    return _indexed[1]


_by_number()  # refuses a registry with a number twice, at import


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
        return _by_number()[number]
    except KeyError:
        known = ", ".join(str(n) for n in _by_number())
        raise KeyError(f"unknown experiment {experiment!r}; known: {known}") from None


def chapter_experiments(chapter: int) -> list[Experiment]:
    """The experiments a chapter notebook covers, in the study's order."""
    found = [e for e in EXPERIMENTS if e.chapter == chapter]
    if not found:
        raise KeyError(f"no experiments in chapter {chapter}; chapters: {sorted(CHAPTERS)}")
    return found
