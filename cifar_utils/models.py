"""One builder that turns an experiment's ``ArchSpec`` into a Keras model."""

from __future__ import annotations

from dataclasses import replace

import keras
from keras import layers

from . import backend
from .augment import Augment
from .experiments import STUDY_LEARNING_RATE, ArchSpec, Experiment, get_experiment

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


def build_model(experiment: int | str | Experiment | ArchSpec, augment: bool | None = None,
                seed: int | None = None) -> keras.Sequential:
    """The experiment's network, uncompiled (see ``compile_model``).

    ``augment`` defaults to the experiment's own setting; the ``Augment`` layer sits first
    in the model so it runs on the accelerator and only during training.
    """
    if isinstance(experiment, ArchSpec):
        spec, name, default_augment = experiment, "custom", False
    else:
        exp = get_experiment(experiment)
        spec, name, default_augment = exp.spec, exp.key, exp.augment
    stack: list[keras.layers.Layer] = [keras.Input(shape=INPUT_SHAPE)]
    if default_augment if augment is None else augment:
        stack.append(Augment(seed=seed))
    for num_convs, filters in spec.blocks:
        stack += _block(spec, num_convs, filters)
    stack.append(layers.Flatten())
    if spec.dense_units:
        stack += _activated(layers.Dense, spec, spec.dense_units)
        if spec.dropout:
            stack.append(layers.Dropout(spec.dropout))
    stack.append(layers.Dense(NUM_CLASSES, activation="softmax"))
    return keras.Sequential(stack, name=name)


def compile_model(model: keras.Model, learning_rate: float = STUDY_LEARNING_RATE,
                  jit_compile: bool | str = "auto", steps_per_execution: int = 1) -> keras.Model:
    """The study's recipe: Adam, categorical cross-entropy, accuracy.

    For several training steps per call, take ``steps_per_execution`` from
    ``backend.prepare_steps`` (``run_experiment`` does): on JAX it fuses the steps itself.
    """
    jit_compile = backend.usable_jit_compile(jit_compile)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
                  loss="categorical_crossentropy", metrics=["accuracy"],
                  jit_compile=jit_compile, steps_per_execution=steps_per_execution)
    return model
