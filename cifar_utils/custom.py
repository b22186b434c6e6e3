"""A model the reader writes (a ``keras.Sequential``, or a function that returns one) as
an experiment: trained by ``run_experiment`` like any registry run, with the same record,
history and curves, and kept apart from the registry's runs.

What identifies it is its layers' configs (names and build state left out, so re-running
the cell that builds the same network finds the same run; a different layer, width or
rate is a different config, hence a different run folder). It trains from fresh weights
drawn under the run's seed: whatever weights the model object holds are not used, so a
layer that learns a state from the data (``Normalization.adapt``) must be given it as an
argument instead (``Normalization(mean=..., variance=...)``), which its config keeps.

Its record has experiment number ``CUSTOM_NUMBER`` (0, never a registry number, so no
chapter table, verdict or summary picks it up) and a ``variant`` naming the config's
digest; ``Chapter.try_out`` writes it under ``exercises/``, away from ``runs/``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np

from .experiments import Experiment

CUSTOM_NUMBER = 0  # no registry experiment has it
INPUT_SHAPE = (32, 32, 3)
NUM_CLASSES = 10


@dataclass(frozen=True)
class KerasSpec:
    """A reader's ``keras.Sequential`` as the JSON list of its layers' serialised configs."""

    layers: str

    def build_layers(self) -> list[keras.layers.Layer]:
        """Fresh, unbuilt layers from the configs (new weights when they are built)."""
        return [keras.saving.deserialize_keras_object(config) for config in json.loads(self.layers)]


def _json_default(value):
    """numpy values inside a config (a ``Normalization`` mean given as an array) as JSON."""
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} into a model config")


def _layer_config(layer: keras.layers.Layer) -> dict:
    """What defines a layer: its serialised config without its name and build state (a
    name is Keras' counter, e.g. ``conv2d_3``, which changes each time a cell runs)."""
    serialised = keras.saving.serialize_keras_object(layer)
    serialised.pop("build_config", None)
    serialised.pop("compile_config", None)
    serialised["config"] = {k: v for k, v in serialised["config"].items() if k != "name"}
    return serialised


def _model_of(model_or_builder: keras.Sequential | Callable[[], keras.Sequential]) -> keras.Sequential:
    model = model_or_builder if isinstance(model_or_builder, keras.Model) else model_or_builder()
    if not isinstance(model, keras.Sequential):
        raise TypeError(f"try_out trains a keras.Sequential (or a function returning one), got "
                        f"{type(model).__name__}")
    try:
        shape = tuple(model.input_shape[1:])
    except AttributeError:  # no Input given: it is built on CIFAR-10's shape
        shape = None
    if shape is not None and shape != INPUT_SHAPE:
        raise ValueError(f"model {model.name!r} takes inputs of shape {shape}; CIFAR-10 images are {INPUT_SHAPE}")
    return model


def _check_logits(spec: KerasSpec, label: str) -> None:
    """The course's loss takes logits (``models``): a softmax at the end would be applied twice."""
    model = keras.Sequential([keras.Input(INPUT_SHAPE), *spec.build_layers()])
    last = model.layers[-1]
    activation = getattr(last, "activation", None)
    if isinstance(last, keras.layers.Softmax) or activation is keras.activations.softmax:
        raise ValueError(f"{label}: end the model with Dense({NUM_CLASSES}) without an activation: the course's loss "
                         "takes logits (from_logits=True, see cifar_utils.models), so a softmax would be applied twice")
    shape = tuple(model.compute_output_shape((None, *INPUT_SHAPE))[1:])
    if shape != (NUM_CLASSES,):
        raise ValueError(f"{label}: the model's output has shape {shape}; it must give "
                         f"{NUM_CLASSES} logits per image")


def custom_experiment(model_or_builder: keras.Sequential | Callable[[], keras.Sequential],
                      label: str | None = None) -> Experiment:
    """The reader's model as an experiment of the study's recipe (pixels / 255), named
    ``label`` (default: the model's own name, unless it is Keras' ``sequential_N``)."""
    model = _model_of(model_or_builder)
    configs = [_layer_config(layer) for layer in model.layers]
    if not configs:
        raise ValueError(f"model {model.name!r} has no layers")
    for config in configs:
        if config["class_name"] == "Normalization" and config["config"].get("mean") is None:
            raise ValueError("give Normalization its statistics as arguments, Normalization(mean=..., variance=...) "
                             "from x_train: try_out rebuilds the model from its config, which keeps those but not "
                             "what adapt() learnt")
    text = json.dumps(configs, sort_keys=True, default=_json_default)
    digest = hashlib.sha1(text.encode()).hexdigest()[:8]
    name = label or ("your model" if model.name.startswith("sequential") else model.name)
    spec = KerasSpec(text)
    _check_logits(spec, name)
    return Experiment(CUSTOM_NUMBER, name, 0, "a model written in the notebook", spec, None,
                      variant=f"custom {digest}")


def is_custom(experiment_or_record) -> bool:
    """A reader's model (an ``Experiment`` or a ``RunRecord``), not a registry experiment."""
    return getattr(experiment_or_record, "experiment", getattr(experiment_or_record, "number", None)) == CUSTOM_NUMBER
