"""One builder that turns an experiment's spec into a Keras model, and one compile step
that turns its recipe into an optimizer and a loss.

Every network ends in logits (``Dense(10)`` without a softmax) and the loss is told so
(``from_logits=True``). The study's slides end with ``Dense(10, activation="softmax")``;
TensorFlow then quietly computes the cross-entropy from the logits behind the softmax,
while JAX and PyTorch compute it from probabilities clipped at 1e-7, which caps the loss
and kills its gradient for confidently wrong images. On raw 0-255 pixels (experiment 1)
that difference decides whether the network learns at all, so the course writes down
what TensorFlow did: the same mathematics on every backend. Predictions apply the softmax.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace

import keras
from keras import layers

from . import backend
from .augment import Augment, Translate
from .custom import KerasSpec
from .experiments import STUDY_RECIPE, AirbenchSpec, ArchSpec, DenseSpec, Experiment, Recipe, Spec, get_experiment
from .fastnet import PartialIdentity, PatchWhitening, ScaledBias
from .recipes import make_loss, make_optimizer

INPUT_SHAPE = (32, 32, 3)
NUM_CLASSES = 10


def _activated(layer_cls, spec: ArchSpec, units: int, **kwargs) -> list[keras.layers.Layer]:
    """A conv or dense layer with its BN placed where the spec says."""
    if spec.bn_before_activation:
        return [layer_cls(units, **kwargs), layers.BatchNormalization(), layers.ReLU()]
    stack = [layer_cls(units, activation="relu", **kwargs)]
    return stack + [layers.BatchNormalization()] if spec.batch_norm else stack


def _block(spec: ArchSpec, num_convs: int, filters: int) -> list[keras.layers.Layer]:
    """conv(s) -> [BN] -> pool -> [dropout]; with two convs, BN follows the last one only."""
    stack = []
    for i in range(num_convs):
        conv_spec = spec if i == num_convs - 1 else replace(spec, batch_norm=False, bn_before_activation=False)
        stack += _activated(layers.Conv2D, conv_spec, filters, kernel_size=3, padding="same",
                            kernel_initializer=spec.kernel_initializer)
    stack.append(layers.MaxPooling2D(pool_size=3, strides=2, padding="same"))
    if spec.dropout:
        stack.append(layers.Dropout(spec.dropout))
    return stack


def _cnn(spec: ArchSpec) -> list[keras.layers.Layer]:
    """The study's sequential CNNs."""
    stack = [layer for num_convs, filters in spec.blocks for layer in _block(spec, num_convs, filters)]
    stack.append(layers.Flatten())
    if spec.dense_units:
        stack += _activated(layers.Dense, spec, spec.dense_units)
        if spec.dropout:
            stack.append(layers.Dropout(spec.dropout))
    return stack + [layers.Dense(NUM_CLASSES)]


def _dense(spec: DenseSpec) -> list[keras.layers.Layer]:
    """A plain perceptron: every pixel connects to every hidden unit, nothing is shared."""
    stack: list[keras.layers.Layer] = [layers.Flatten()]
    for units in spec.hidden:
        stack.append(layers.Dense(units, activation="relu"))
        if spec.dropout:
            stack.append(layers.Dropout(spec.dropout))
    return stack + [layers.Dense(NUM_CLASSES)]


def _fast_group(width: int, bn_momentum: float) -> list[keras.layers.Layer]:
    """conv -> pool -> BN -> GELU -> conv -> BN -> GELU; BN without scale, fast statistics,
    and a bias that learns 64x faster than the convs (``ScaledBias``)."""
    def conv():
        return layers.Conv2D(width, 3, padding="same", use_bias=False, kernel_initializer=PartialIdentity())

    def norm():
        return [layers.BatchNormalization(momentum=bn_momentum, epsilon=1e-12, center=False, scale=False),
                ScaledBias()]

    return [conv(), layers.MaxPooling2D(2), *norm(), layers.Activation("gelu"),
            conv(), *norm(), layers.Activation("gelu")]


def _airbench(spec: AirbenchSpec) -> list[keras.layers.Layer]:
    """airbench94's shape: whitening, three groups (32 -> 15 -> 7 -> 3 pixels), a 3x3 max
    pool to one pixel, a bias-free linear layer and its logits scaled down."""
    stack = [PatchWhitening(spec.whitening_patch), layers.Activation("gelu")]
    for width in spec.widths:
        stack += _fast_group(width, spec.bn_momentum)
    head = layers.Dense(NUM_CLASSES, use_bias=False,  # PyTorch's default Linear init, as airbench's
                        kernel_initializer=keras.initializers.VarianceScaling(1 / 3, "fan_in", "uniform"))
    return stack + [layers.MaxPooling2D(3), layers.Flatten(), head, layers.Rescaling(spec.logit_scale)]


_BUILDERS = {ArchSpec: _cnn, DenseSpec: _dense, AirbenchSpec: _airbench,
             KerasSpec: KerasSpec.build_layers}  # a reader's own model (``custom``)


def augmentation_layer(recipe: Recipe, seed: int | None = None) -> keras.layers.Layer | None:
    """The recipe's augmentation as the model's first layer (it runs only in training)."""
    if recipe.augment == "shift_flip":
        return Augment(seed=seed)
    if recipe.augment == "translate_flip":
        return Translate(recipe.translate, seed=seed)
    return None


def build_model(experiment: int | str | Experiment | Spec, augment: bool | None = None,
                seed: int | None = None, precision: str = "float32") -> keras.Sequential:
    """The experiment's network, uncompiled (see ``compile_model``).

    ``augment`` defaults to the experiment's own setting; the augmentation layer sits first
    in the model so it runs on the accelerator and only during training. A bare spec
    with ``augment=True`` gets the study's shift/flip augmentation. ``precision``: the
    Keras dtype policy of every layer (``speed.PRECISIONS``); a mixed policy keeps the
    weights in float32 and ends in a float32 cast of the logits, so the softmax and the
    loss are computed in float32 (Keras' mixed-precision guide).
    """
    if isinstance(experiment, tuple(_BUILDERS)):
        spec, name = experiment, "custom"
        recipe = replace(STUDY_RECIPE, augment="shift_flip" if augment else "none")
    else:
        exp = get_experiment(experiment)
        spec, name, recipe = exp.spec, exp.key, exp.recipe
        if augment and recipe.augment == "none":
            recipe = replace(recipe, augment="shift_flip")
    stack: list[keras.layers.Layer] = [keras.Input(shape=INPUT_SHAPE)]
    with dtype_policy(precision):
        augmentation = augmentation_layer(recipe, seed) if augment is not False else None
        stack += ([augmentation] if augmentation is not None else []) + _BUILDERS[type(spec)](spec)
    if precision != "float32":
        stack.append(layers.Activation("linear", dtype="float32", name="logits_float32"))
    return keras.Sequential(stack, name=name)


@contextmanager
def dtype_policy(name: str):
    """Build layers under the Keras dtype policy ``name``, then restore the global one."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def prepare_model(model: keras.Model, x_train) -> None:
    """Data-dependent set-up before training: layers with an ``adapt`` step (the
    airbench-style network's whitening) learn their statistics from the training images."""
    for layer in model.layers:
        if isinstance(layer, PatchWhitening):
            layer.adapt(x_train)


def compile_model(model: keras.Model, recipe: Recipe = STUDY_RECIPE, steps_per_epoch: int = 1, epochs: int = 1,
                  jit_compile: bool | str = "auto", steps_per_execution: int = 1) -> keras.Model:
    """The recipe's optimizer (with its schedule over ``epochs`` x ``steps_per_epoch``
    steps), its loss and accuracy. The study's recipe: Adam(1e-3), cross-entropy.

    For several training steps per call, take ``steps_per_execution`` from
    ``backend.prepare_steps`` (``run_experiment`` does): on JAX it fuses the steps itself.
    """
    jit_compile = backend.usable_jit_compile(jit_compile)
    model.compile(optimizer=make_optimizer(recipe, steps_per_epoch, epochs), loss=make_loss(recipe),
                  metrics=["accuracy"], jit_compile=jit_compile, steps_per_execution=steps_per_execution)
    return model
