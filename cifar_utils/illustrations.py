"""Figures that explain a technique before (or without) training a study network.

Each figure is two functions: one computes the numbers (a DataFrame or a small named
tuple the chapter can print sentences from), one plots them and returns a ``Figure``.
Everything runs in seconds on a 2-core CPU, so the quick profile shows the same figures
as the full one, and uses the public ``keras`` API only (TensorFlow, JAX or PyTorch).
Where a study network is meant, it is the package's own ``build_model(experiment)``.

The functions that build a model seed Keras' global random state with
``keras.utils.set_random_seed(seed)`` first (as ``run_experiment`` does), so a seed gives
the same weights, batches and figure every time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import NamedTuple

import keras
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from keras import layers, ops
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .augment import Augment
from .data import CLASS_NAMES, stratified_share
from .experiments import STUDY_LEARNING_RATE, STUDY_RECIPE, get_experiment
from .final_model import batch_norm_layers, batch_norm_statistics, restore_batch_norm
from .models import build_model
from .recipes import make_loss

RAW_COLOR, SCALED_COLOR = "tab:red", "tab:blue"
NO_BN_COLOR, BN_COLOR = "tab:orange", "tab:green"
INITIALIZER_COLORS = {"glorot_uniform": "tab:red", "he_uniform": "tab:blue", "he_normal": "tab:green"}


# ---------------------------------------------------------------------------- helpers

def _class_indices(labels: np.ndarray) -> np.ndarray:
    """Integer labels from integer or one-hot (or probability) labels."""
    labels = np.asarray(labels)
    return labels.argmax(axis=-1) if labels.ndim > 1 else labels.astype(int)


def _unit_images(images: np.ndarray) -> np.ndarray:
    """float32 images in [0, 1] from uint8, 0-255 floats or [0, 1] floats."""
    images = np.asarray(images)
    if images.dtype == np.uint8 or float(images.max(initial=0.0)) > 1.0:
        images = images.astype("float32") / np.float32(255.0)
    return np.clip(images.astype("float32"), 0.0, 1.0)


def _input_scale(experiment) -> np.float32:
    """What [0, 1] images are multiplied by for this experiment: 255 for raw pixels (experiment 1)."""
    return np.float32(1.0 if get_experiment(experiment).normalize else 255.0)


def _seeded_model(experiment, seed: int) -> keras.Sequential:
    """``build_model`` with Keras' global random state seeded first: same seed, same weights."""
    keras.utils.set_random_seed(seed)
    return build_model(experiment)


def _trainable_model(experiment, seed: int, bn_momentum: float | None = None) -> keras.Sequential:
    """A seeded study network with the study's optimizer and loss, for a few ``train_on_batch`` steps.

    Built for speed, since tracing the step costs more than the steps: no XLA, no accuracy
    metric, and the optimizer's variables made up front (created inside TensorFlow's first
    traced step they cost a second trace). ``bn_momentum``: every batch-norm layer's momentum
    instead of Keras' 0.99 (set before the first step, which reads it).
    """
    model = _seeded_model(experiment, seed)
    if bn_momentum is not None:
        for layer in model.layers:
            if isinstance(layer, layers.BatchNormalization):
                layer.momentum = float(bn_momentum)
    model.compile(optimizer=keras.optimizers.Adam(STUDY_LEARNING_RATE), loss=make_loss(STUDY_RECIPE),
                  jit_compile=False)
    model.optimizer.build(model.trainable_variables)
    return model


def _named_layers(model: keras.Model) -> list[tuple[str, keras.layers.Layer]]:
    """The layers that hold weights, named conv1.., bn1.., dense1.. and ``output`` (the last Dense)."""
    dense = [layer for layer in model.layers if isinstance(layer, layers.Dense)]
    counts: dict[str, int] = {}
    named = []
    for layer in model.layers:
        if isinstance(layer, layers.Dense) and layer is dense[-1]:
            named.append(("output", layer))
            continue
        kind = {layers.Conv2D: "conv", layers.BatchNormalization: "bn", layers.Dense: "dense"}.get(type(layer))
        if kind:
            counts[kind] = counts.get(kind, 0) + 1
            named.append((f"{kind}{counts[kind]}", layer))
    return named


def _linear_part(layer: keras.layers.Layer, inputs):
    """A conv or dense layer's output before its activation (its pre-activation)."""
    if isinstance(layer, layers.Conv2D):
        out = ops.conv(inputs, layer.kernel, strides=layer.strides, padding=layer.padding,
                       data_format=layer.data_format, dilation_rate=layer.dilation_rate)
    else:
        out = ops.matmul(inputs, layer.kernel)
    return out + layer.bias if layer.use_bias else out


def _preactivations(model: keras.Model, images: np.ndarray, training: bool = False) -> dict[str, np.ndarray]:
    """Every conv and dense layer's pre-activation on ``images``, running the model layer by layer."""
    names = {id(layer): name for name, layer in _named_layers(model)}
    found = {}
    hidden = ops.convert_to_tensor(images)
    for layer in model.layers:
        if isinstance(layer, (layers.Conv2D, layers.Dense)):
            found[names[id(layer)]] = ops.convert_to_numpy(_linear_part(layer, hidden))
        hidden = layer(hidden, training=training)
    return found


def _hide_ticks(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


# ---------------------------------------------------------------------------- 1. class examples

def class_example_indices(labels: np.ndarray, per_class: int = 8, seed: int = 0) -> np.ndarray:
    """Which images ``plot_class_examples`` shows: (10, per_class) indices, -1 where a class has fewer."""
    labels = _class_indices(labels)
    rng = np.random.default_rng(seed)
    chosen = np.full((len(CLASS_NAMES), per_class), -1, dtype=int)
    for label in range(len(CLASS_NAMES)):
        members = np.flatnonzero(labels == label)
        picked = rng.choice(members, size=min(per_class, len(members)), replace=False)
        chosen[label, :len(picked)] = picked
    return chosen


def class_mosaic(images: np.ndarray, chosen: np.ndarray, gap: int = 2) -> np.ndarray:
    """The images at ``chosen`` (rows x columns of indices, -1 = blank) tiled into one white-gapped array."""
    height, width = np.shape(images)[1:3]
    rows, columns = chosen.shape
    picked = _unit_images(np.asarray(images)[chosen[chosen >= 0]])  # only these: the full set may be 50,000
    mosaic = np.ones((rows * (height + gap) - gap, columns * (width + gap) - gap, 3), dtype="float32")
    for (row, column), image in zip(np.argwhere(chosen >= 0), picked, strict=True):
        top, left = row * (height + gap), column * (width + gap)
        mosaic[top:top + height, left:left + width] = image
    return mosaic


def plot_class_examples(images: np.ndarray, labels: np.ndarray, per_class: int = 8, seed: int = 0) -> Figure:
    """A grid of random images, one row per class: what the network has to tell apart at 32x32."""
    chosen = class_example_indices(labels, per_class, seed)
    mosaic = class_mosaic(images, chosen)
    width = min(10.0, 0.9 * per_class + 1.4)
    fig, ax = plt.subplots(figsize=(width, (width - 1.4) * mosaic.shape[0] / mosaic.shape[1] + 0.6),
                           layout="constrained")
    ax.imshow(mosaic, interpolation="nearest")
    step = mosaic.shape[0] / len(CLASS_NAMES)
    ax.set_yticks((np.arange(len(CLASS_NAMES)) + 0.5) * step - 1, CLASS_NAMES)
    ax.set_xticks([])
    ax.tick_params(left=False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(f"CIFAR-10: {per_class} random images per class (32x32 pixels, seed {seed})")
    return fig


# ---------------------------------------------------------------------------- 2. input scale

class InputScaleEffect(NamedTuple):
    """``spread``: per layer, std of the pre-activation at initialisation for raw and /255 pixels
    and their ratio. ``loss``: training loss per Adam step (1-based) for raw and /255 pixels.
    ``backend``: the Keras backend that trained them."""

    spread: pd.DataFrame
    loss: pd.DataFrame
    backend: str = ""


def input_scale_effect(images: np.ndarray, labels: np.ndarray, steps: int = 20, batch_size: int = 64,
                       seed: int = 0, experiment: int = 1) -> InputScaleEffect:
    """Experiment 1 (raw 0-255 pixels) against experiment 2 (pixels / 255) from the same initial weights.

    The network is ``build_model(1)``; experiment 2 is the same network, so only the input
    scale differs. With zero biases, ReLU and max-pooling every layer is positively
    homogeneous, so at initialisation each pre-activation, the logits included, is exactly
    255 times larger on raw pixels: the softmax saturates and the first losses are huge.
    The loss columns are ``steps`` Adam(1e-3) steps (the study's optimizer) on the same batches,
    with the cross-entropy computed from the logits as the package trains it (see ``models``):
    raw pixels start near a loss of 75 and Adam brings it down to about 6 in 20 steps.
    """
    count = len(images)
    labels = keras.utils.to_categorical(_class_indices(labels), len(CLASS_NAMES))
    scales = {"raw": np.float32(255.0), "scaled": np.float32(1.0)}  # [0, 1] images times this
    model = _trainable_model(experiment, seed)
    rng = np.random.default_rng(seed)
    probe = _unit_images(np.asarray(images)[rng.choice(count, size=min(256, count), replace=False)])
    stds = {scale: {name: float(values.std()) for name, values in _preactivations(model, probe * factor).items()}
            for scale, factor in scales.items()}
    spread = pd.DataFrame(stds)
    spread["ratio"] = spread["raw"] / spread["scaled"]
    spread.index.name = "layer"

    weights = model.get_weights()
    optimizer_state = [ops.convert_to_numpy(v) for v in model.optimizer.variables]
    batches = [rng.choice(count, size=min(batch_size, count), replace=False) for _ in range(steps)]
    batches = [(_unit_images(np.asarray(images)[b]), labels[b]) for b in batches]
    losses = {}
    for scale, factor in scales.items():  # same start for both: weights and a fresh Adam state
        model.set_weights(weights)
        for variable, value in zip(model.optimizer.variables, optimizer_state, strict=True):
            variable.assign(value)
        losses[scale] = [float(model.train_on_batch(x * factor, y, return_dict=True)["loss"]) for x, y in batches]
    loss = pd.DataFrame(losses, index=pd.RangeIndex(1, steps + 1, name="step"))
    return InputScaleEffect(spread, loss, keras.backend.backend())


def plot_input_scale_effect(result: InputScaleEffect) -> Figure:
    """Left: pre-activation std per layer at initialisation (log scale). Right: the first training losses."""
    spread, loss, backend = result
    fig, (ax_std, ax_loss) = plt.subplots(1, 2, figsize=(10.5, 3.8), layout="constrained")
    x = np.arange(len(spread))
    ax_std.bar(x - 0.2, spread["raw"], width=0.4, color=RAW_COLOR, label="raw pixels 0-255 (exp 1)")
    ax_std.bar(x + 0.2, spread["scaled"], width=0.4, color=SCALED_COLOR, label="pixels / 255 (exp 2)")
    for position, (raw, ratio) in enumerate(zip(spread["raw"], spread["ratio"], strict=True)):
        ax_std.annotate(f"×{ratio:.0f}", (position - 0.2, raw), ha="center", va="bottom", fontsize=8)
    ax_std.set_xticks(x, spread.index)
    ax_std.set_yscale("log")
    ax_std.set(xlabel="layer (pre-activation)", ylabel="std at initialisation (log scale)",
               title="Same weights, two input scales")
    ax_std.margins(y=0.15)
    ax_loss.plot(loss.index, loss["raw"], color=RAW_COLOR, marker="o", markersize=3, label="raw pixels 0-255")
    ax_loss.plot(loss.index, loss["scaled"], color=SCALED_COLOR, marker="o", markersize=3, label="pixels / 255")
    ax_loss.axhline(math.log(10), color="grey", linestyle="--", linewidth=1, label="ln 10: a uniform guess")
    ax_loss.set_yscale("log")
    ax_loss.set(xlabel="Adam step (lr 1e-3)", ylabel="training loss (log scale)",
                title=f"First training steps from the same start ({backend or 'Keras'})")
    ax_loss.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (ax_std, ax_loss):
        ax.grid(alpha=0.3, which="both" if ax is ax_loss else "major")
        ax.legend(fontsize=8)
    fig.suptitle("Input scale at initialisation: experiment 1 (raw pixels) vs 2 (pixels / 255), same network")
    return fig


# ---------------------------------------------------------------------------- 3. parameter counts

_KIND_ORDER = {"conv": 0, "bn": 1, "dense": 2, "output": 3}


def _layer_order(name: str) -> tuple[int, int]:
    kind = name.rstrip("0123456789")
    return _KIND_ORDER[kind], int(name[len(kind):] or 0)


def parameter_counts(experiments: Sequence[int] = (3, 4, 5, 6)) -> pd.DataFrame:
    """Parameters per layer (rows conv1.., bn1.., dense1.., output) per experiment (columns), 0 where absent.

    Counted from the built Keras models (batch-norm statistics included, as ``count_params``
    and the study's table count them), so the chapter can say where the parameters live.
    """
    columns = {}
    for number in experiments:
        model = build_model(number)
        columns[get_experiment(number).number] = {name: layer.count_params() for name, layer in _named_layers(model)}
    frame = pd.DataFrame(columns).fillna(0).astype(int)
    frame = frame.loc[sorted(frame.index, key=_layer_order)]
    frame.index.name, frame.columns.name = "layer", "experiment"
    return frame


def _layer_colors(names: Sequence[str]) -> dict[str, tuple]:
    """Convs in blues (darker deeper), batch norm in greys, hidden dense in orange, output in red."""
    colors = {}
    for kind, cmap in (("conv", "Blues"), ("bn", "Greys"), ("dense", "Oranges"), ("output", "Reds")):
        mine = [n for n in names if n.rstrip("0123456789") == kind]
        shades = plt.get_cmap(cmap)(np.linspace(0.35, 0.9, max(len(mine), 1)))
        colors.update(zip(mine, shades, strict=False))
    return colors


def plot_parameter_counts(frame: pd.DataFrame) -> Figure:
    """One stacked bar per experiment, one segment per layer: which layers hold the parameters."""
    colors = _layer_colors(list(frame.index))
    numbers = list(frame.columns)
    y = np.arange(len(numbers))[::-1]
    fig, ax = plt.subplots(figsize=(10, 0.7 * len(numbers) + 2.2), layout="constrained")
    left = np.zeros(len(numbers))
    for name, counts in frame.iterrows():
        values = counts.to_numpy(dtype=float)
        ax.barh(y, values, left=left, color=colors[name], edgecolor="white", linewidth=0.5, label=name)
        left += values
    totals = frame.sum()
    for position, number in zip(y, numbers, strict=True):
        largest = frame.index[frame[number] == frame[number].max()]
        share = 100 * frame[number].max() / totals[number]
        each = " each" if len(largest) > 1 else ""
        ax.annotate(f" {totals[number]:,} (largest: {', '.join(largest)}, {share:.0f} %{each})",
                    (totals[number], position), va="center", fontsize=8)
    ax.set_yticks(y, [get_experiment(n).label for n in numbers])
    ax.set(xlabel="parameters", title="Where the parameters live: per-layer counts, stacked")
    ax.set_xlim(0, totals.max() * 1.45)
    ax.xaxis.set_major_formatter(lambda value, _: f"{value:,.0f}")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(ncol=min(len(frame), 8), fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18))
    return fig


# ---------------------------------------------------------------------------- 4. dropout

_LAYER_WORDS = {layers.BatchNormalization: "batch norm", layers.ReLU: "ReLU", layers.MaxPooling2D: "max-pool",
                Augment: ""}  # Augment: identity outside training


def _describe(layer: keras.layers.Layer) -> str:
    """A layer in a few words for a caption: "conv (ReLU)", "batch norm", "max-pool"."""
    if isinstance(layer, layers.Conv2D):
        activation = layer.get_config().get("activation")
        return "conv" if activation in (None, "linear") else f"conv ({'ReLU' if activation == 'relu' else activation})"
    return _LAYER_WORDS.get(type(layer), type(layer).__name__)

class DropoutExample(NamedTuple):
    """The first Dropout layer's input for one image, its keep-mask, and the rescaled output.

    Arrays are (height, width, channels); ``channels`` are the ones a figure shows (most
    active first); ``dropped_fraction`` is over all units of the map.
    """

    image: np.ndarray
    activation: np.ndarray
    mask: np.ndarray
    output: np.ndarray
    rate: float
    channels: np.ndarray
    dropped_fraction: float
    experiment: int
    path: str  # the layers before the Dropout, e.g. "conv (ReLU) → max-pool"


def dropout_example(image: np.ndarray, rate: float = 0.3, seed: int = 0, experiment: int = 7,
                    channels: int = 2) -> DropoutExample:
    """What ``Dropout(rate)`` does to a real activation map in a study network (at initialisation).

    The map is what the model's first Dropout layer receives (conv1 -> ReLU -> max-pool in
    experiment 7). The mask comes from ``keras.random.dropout``, which keeps each unit with
    probability 1 - rate and scales survivors by 1 / (1 - rate), so the expected sum is unchanged.
    """
    if not 0.0 < rate < 1.0:
        raise ValueError(f"dropout rate must be in (0, 1), got {rate}")
    model = _seeded_model(experiment, seed)
    unit = _unit_images(image)[None]
    hidden = ops.convert_to_tensor(unit * _input_scale(experiment))
    path = []
    for layer in model.layers:
        if isinstance(layer, layers.Dropout):
            break
        hidden = layer(hidden, training=False)
        path.append(_describe(layer))
    else:
        raise ValueError(f"experiment {experiment} has no Dropout layer")
    path = [word for word in path if word]
    activation = ops.convert_to_numpy(hidden)[0]
    mask = ops.convert_to_numpy(keras.random.dropout(ops.ones_like(hidden), rate, seed=seed))[0] != 0
    output = np.where(mask, activation / np.float32(1.0 - rate), 0.0).astype("float32")
    shown = np.argsort(-activation.mean(axis=(0, 1)), kind="stable")[:channels]
    return DropoutExample(unit[0], activation, mask, output, rate, shown, float(1.0 - mask.mean()),
                          get_experiment(experiment).number, " → ".join(path))


def neighbour_correlation(activation: np.ndarray) -> float:
    """The correlation between horizontally and vertically adjacent values of the same
    channel of a (height, width, channels) map, pooled over channels (each centred on its
    own mean): near 1, a dropped value is mostly still there in its neighbours, which the
    next 3x3 conv and the max-pool read too (Tompson et al. 2015's case for dropping whole
    channels, ``SpatialDropout2D``)."""
    centred = activation - activation.mean(axis=(0, 1), keepdims=True)
    pairs = [(centred[:, :-1], centred[:, 1:]), (centred[:-1], centred[1:])]
    a = np.concatenate([first.ravel() for first, _ in pairs])
    b = np.concatenate([second.ravel() for _, second in pairs])
    return float(np.sum(a * b) / np.sqrt(np.sum(a * a) * np.sum(b * b)))


def plot_dropout_mask(image: np.ndarray, rate: float = 0.3, seed: int = 0, experiment: int = 7,
                      channels: int = 2) -> Figure:
    """Per channel: activation map, random keep-mask, and the masked map scaled by 1 / (1 - rate)."""
    example = dropout_example(image, rate, seed, experiment, channels)
    rows = len(example.channels)
    fig, axes = plt.subplots(rows, 4, figsize=(9, 2.3 * rows + 0.8), squeeze=False, layout="constrained")
    axes[0, 0].imshow(example.image, interpolation="nearest")
    axes[0, 0].set_title("input image", fontsize=9)
    height, width, depth = example.activation.shape
    for row, channel in zip(axes, example.channels, strict=True):
        for ax in row:
            _hide_ticks(ax)
        if row is not axes[0]:
            row[0].set_axis_off()
        vmax = float(example.output[..., channel].max()) or 1.0
        shown = row[1].imshow(example.activation[..., channel], cmap="viridis", vmin=0, vmax=vmax)
        row[2].imshow(example.mask[..., channel], cmap="gray", vmin=0, vmax=1)
        row[3].imshow(example.output[..., channel], cmap="viridis", vmin=0, vmax=vmax)
        dropped = 100 * (1 - example.mask[..., channel].mean())
        row[1].set_title(f"channel {channel}: activation", fontsize=9)
        row[2].set_title(f"mask: white kept, {dropped:.0f} % dropped", fontsize=9)
        row[3].set_title(f"after dropout: kept ×{1 / (1 - example.rate):.2f}", fontsize=9)
        fig.colorbar(shown, ax=list(row[1:]), shrink=0.8, label="activation")
    fig.suptitle(f"Dropout({example.rate:g}) on what experiment {example.experiment}'s first Dropout layer receives "
                 f"({example.path}, {height}x{width}x{depth} units):\n"
                 f"{100 * example.dropped_fraction:.1f} % of all {example.mask.size:,} units dropped, "
                 f"the rest scaled by 1/(1−{example.rate:g}) so the expected sum is unchanged", fontsize=10)
    return fig


# ---------------------------------------------------------------------------- 5. initialisation and depth

PLAIN_NETWORK, BASIC_NETWORK = "plain stack", "basic network (exp 6)"


def _plain_stack(depth: int, width: int, initializer: str) -> keras.Sequential:
    """``depth`` same-width 3x3 ReLU convs, no pooling, no batch norm: the textbook setting of He et al."""
    return keras.Sequential([keras.Input(shape=(32, 32, 3))] + [
        layers.Conv2D(width, 3, padding="same", activation="relu", kernel_initializer=initializer)
        for _ in range(depth)])


def activation_spread(images: np.ndarray, initializers: Sequence[str] = ("glorot_uniform", "he_uniform", "he_normal"),
                      depth: int = 15, width: int = 32, batch_size: int = 32, seed: int = 0,
                      basic: bool = True) -> pd.DataFrame:
    """Std of each conv layer's pre-activation at initialisation, per initializer: does the signal survive depth?

    Two networks, both without batch norm. A plain stack of ``depth`` same-width 3x3 ReLU
    convs, no pooling: the setting He et al. analysed. With fan-in = fan-out, glorot_uniform
    gives Var(w) = 1 / fan_in and each ReLU halves the second moment, so the spread shrinks
    by about 1/sqrt(2) per layer (x0.005 over 15 layers at seed 0); He's Var(w) = 2 / fan_in
    compensates and keeps it within a small factor (random ups and downs at width 32).
    15 layers make the trend unmistakable and cost a few seconds on two CPU cores.
    And the study's basic network, ``build_model(6)`` rebuilt with each initializer
    (experiment 12 is its he_uniform version): 5 convs with pooling and growing width,
    where glorot still loses a factor of about 5 by conv5 while He holds the level. Every
    initializer gets the same seed, so glorot_uniform and he_uniform draw the same random
    numbers at different scales. Returns one row per (network, initializer, layer) with ``std``.
    """
    rng = np.random.default_rng(seed)
    batch = _unit_images(np.asarray(images)[rng.choice(len(images), size=min(batch_size, len(images)), replace=False)])
    rows = []
    for initializer in initializers:
        networks = {PLAIN_NETWORK: lambda init=initializer: _plain_stack(depth, width, init)}
        if basic:
            networks[BASIC_NETWORK] = lambda init=initializer: build_model(
                replace(get_experiment(6).spec, kernel_initializer=init))
        for network, build in networks.items():
            keras.utils.set_random_seed(seed)
            values = _preactivations(build(), batch)
            for layer, (name, value) in enumerate((n, v) for n, v in values.items() if n.startswith("conv")):
                rows.append({"network": network, "initializer": initializer, "layer": layer + 1, "name": name,
                             "std": float(value.std())})
    return pd.DataFrame(rows)


def spread_change(frame: pd.DataFrame) -> pd.DataFrame:
    """First and last conv layer's std and their ratio (last / first) per network and initializer."""
    grouped = frame.sort_values("layer").groupby(["network", "initializer"], sort=False)["std"]
    change = pd.DataFrame({"first": grouped.first(), "last": grouped.last(), "layers": grouped.size()})
    change["ratio"] = change["last"] / change["first"]
    return change


def plot_activation_spread(frame: pd.DataFrame) -> Figure:
    """Per-layer pre-activation std at initialisation, one line per initializer, log y; one panel per network."""
    networks = list(dict.fromkeys(frame["network"]))
    fig, axes = plt.subplots(1, len(networks), figsize=(5.2 * len(networks), 3.8), squeeze=False,
                             layout="constrained")
    change = spread_change(frame)
    for ax, network in zip(axes[0], networks, strict=True):
        mine = frame[frame["network"] == network]
        for initializer, rows in mine.groupby("initializer", sort=False):
            ratio = change.loc[(network, initializer), "ratio"]
            ax.plot(rows["layer"], rows["std"], marker="o", markersize=3,
                    color=INITIALIZER_COLORS.get(initializer), label=f"{initializer} (last/first ×{ratio:.3g})")
        ax.set_yscale("log")
        ax.set(xlabel="conv layer", ylabel="pre-activation std (log scale)",
               title=f"{network}, {mine['layer'].max()} conv layers")
        ax.set_xticks(sorted(mine["layer"].unique()))
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle("Activation spread at initialisation, by weight initializer (no batch norm)")
    return fig


# ---------------------------------------------------------------------------- 6. batch norm

class ActivationDistributions(NamedTuple):
    """``summary``: per experiment and conv layer, the mean and std of all values handed on; over
    live channels, the mean of the per-channel means and the median per-channel std; the share
    of dead (constant) channels; and, where a batch norm follows, the median per-channel
    variance it receives. ``values``: a random sample (experiment, layer, value) to plot."""

    summary: pd.DataFrame
    values: pd.DataFrame


def _handed_on(model: keras.Model, images: np.ndarray) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Per conv layer, in training mode: what it hands on (its output after the ReLU and after whatever
    follows before the next pool or conv: the batch norm in experiment 11) and that batch norm's input."""
    found: list[tuple[np.ndarray, np.ndarray | None]] = []
    hidden, current, bn_input = ops.convert_to_tensor(images), None, None
    for layer in model.layers:
        if isinstance(layer, (layers.MaxPooling2D, layers.Conv2D, layers.Flatten)) and current is not None:
            found.append((ops.convert_to_numpy(current), bn_input))
            current, bn_input = None, None
        if isinstance(layer, layers.BatchNormalization) and current is not None:
            bn_input = ops.convert_to_numpy(hidden)
        hidden = layer(hidden, training=True)
        if isinstance(layer, layers.Conv2D) or current is not None:
            current = hidden
    return found


def activation_distributions(images: np.ndarray, labels: np.ndarray, steps: int = 20, batch_size: int = 16,
                             seed: int = 0, experiments: Sequence[int] = (6, 11),
                             sample: int = 4000) -> ActivationDistributions:
    """Each conv layer's output distribution without (exp 6) and with batch norm (exp 11), in training mode.

    Both models take ``steps`` Adam(1e-3) steps (the study's optimizer) on the same batches
    of a pool of 128 real images, then run those 128 in training mode, so batch norm uses that batch's statistics,
    as it does while training. The values are what each conv layer hands on: after its
    ReLU, and in experiment 11 after the batch norm that follows the ReLU. That is where
    experiment 11 normalises, so it is the point where "batch norm keeps every layer at mean
    0 and std 1" can be seen, and the same point in experiment 6 shows each layer at its own
    small, drifting scale. Channels whose ReLU output is constant on the batch (dead) are
    counted, not averaged: batch norm maps them to a constant too. A channel whose variance
    is below batch norm's epsilon (1e-3) comes out with std sqrt(var / (var + eps)) < 1,
    which ``bn_input_var`` shows (conv1 on [0, 1] pixels is such a layer).
    """
    rng = np.random.default_rng(seed)
    pool = rng.choice(len(images), size=min(max(128, batch_size), len(images)), replace=False)
    unit = _unit_images(np.asarray(images)[pool])  # only the pool: the full set may be 50,000 images
    labels = keras.utils.to_categorical(_class_indices(labels)[pool], len(CLASS_NAMES))
    batches = [np.arange(len(pool))[(i * batch_size) % len(pool):][:batch_size] for i in range(steps)]
    summary, samples = [], []
    for number in experiments:
        model = _trainable_model(number, seed)
        scale = _input_scale(number)
        for batch in batches:
            model.train_on_batch(unit[batch] * scale, labels[batch])
        for index, (values, bn_input) in enumerate(_handed_on(model, unit[:128] * scale)):
            per_channel = values.reshape(-1, values.shape[-1])
            channel_std = per_channel.std(axis=0)
            live = channel_std > 1e-6
            bn_var = float("nan")  # what the batch norm receives, where there is one
            if bn_input is not None:
                bn_var = float(np.median(bn_input.reshape(-1, bn_input.shape[-1]).var(axis=0)[live]))
            summary.append({"experiment": number, "layer": f"conv{index + 1}", "mean": float(values.mean()),
                            "std": float(values.std()), "channel_mean": float(per_channel.mean(axis=0)[live].mean()),
                            "channel_std": float(np.median(channel_std[live])), "dead_channels": float(1 - live.mean()),
                            "bn_input_var": bn_var})
            picked = rng.choice(values.size, size=min(sample, values.size), replace=False)
            samples.append(pd.DataFrame({"experiment": number, "layer": f"conv{index + 1}",
                                         "value": values.reshape(-1)[picked]}))
    return ActivationDistributions(pd.DataFrame(summary), pd.concat(samples, ignore_index=True))


def plot_activation_distributions(result: ActivationDistributions) -> Figure:
    """Violins per conv layer, one panel per model: each layer at its own scale, or all at mean 0, std 1?

    The panels keep their own y axes (without batch norm the values are ten times smaller);
    the std under each violin carries the comparison.
    """
    summary, values = result
    numbers = list(dict.fromkeys(summary["experiment"]))
    fig, axes = plt.subplots(1, len(numbers), figsize=(5.2 * len(numbers), 4), squeeze=False, layout="constrained")
    colors = [NO_BN_COLOR, BN_COLOR, "tab:purple", "tab:brown"]
    for ax, number, color in zip(axes[0], numbers, colors, strict=False):
        rows = summary[summary["experiment"] == number]
        mine = values[values["experiment"] == number]
        data = [mine.loc[mine["layer"] == layer, "value"].to_numpy() for layer in rows["layer"]]
        positions = np.arange(1, len(data) + 1)
        parts = ax.violinplot(data, positions, showextrema=False, widths=0.8)
        for body in parts["bodies"]:
            body.set(facecolor=color, alpha=0.5)
        ax.errorbar(positions, rows["mean"], yerr=rows["std"], fmt="o", color="black", capsize=3,
                    markersize=4, label="mean ± std")
        low, high = np.percentile(mine["value"], [0.2, 99.5])
        margin = 0.12 * (high - low)
        ax.set_ylim(low - margin, high + margin)
        for position, std in zip(positions, rows["std"], strict=True):
            ax.annotate(f"std {std:.2f}", (position, 1.0), xycoords=("data", "axes fraction"), xytext=(0, -12),
                        textcoords="offset points", ha="center", fontsize=8)
        batch_norm = "with" if getattr(get_experiment(number).spec, "batch_norm", False) else "without"
        ax.set_xticks(positions, rows["layer"])
        ax.set(title=f"{batch_norm} batch norm: {get_experiment(number).label}",
               xlabel="conv layer (its output, as the next layer gets it)", ylabel="activation value")
        ax.axhline(0, color="grey", linewidth=0.5)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle("Conv layer outputs in training mode after a few Adam steps, without vs with batch norm "
                 "(own y scale per panel)")
    return fig


# ---------------------------------------------------------------------------- 6b. batch-norm running statistics

INFERENCE_STYLE, TRAINING_STYLE = "-", "--"
MOMENTUM_COLORS = ("tab:red", "tab:blue", "tab:green", "tab:purple")


class BatchNormMomentum(NamedTuple):
    """``accuracy``: held-out accuracy (%) per training step (0: at initialisation), one column
    per (momentum, mode); mode ``inference`` uses the running statistics, ``training`` each
    test batch's own statistics. The rest say what was measured: ``train_images`` and
    ``test_images`` (stratified draws), ``batch_size``, ``experiment``, ``backend``."""

    accuracy: pd.DataFrame
    train_images: int
    test_images: int
    batch_size: int
    experiment: int
    backend: str = ""


def _stratified_pick(labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Sorted indices of about ``count`` images, the same share of each class (all when there are fewer)."""
    if count >= len(labels):
        return np.arange(len(labels))
    return stratified_share(labels, count / len(labels), seed)


def _accuracy(model: keras.Model, images: np.ndarray, classes: np.ndarray, batch_size: int, training: bool) -> float:
    """Accuracy (%) on ``images``. ``training=True``: in batches of about ``batch_size``, each
    normalised with its own batch-norm statistics through ``stateless_call``, so nothing is
    updated; otherwise with the running statistics (``predict_on_batch``: traced once, faster)."""
    if training:
        split = np.array_split(np.arange(len(images)), max(1, round(len(images) / batch_size)))
    else:
        split = np.array_split(np.arange(len(images)), max(1, math.ceil(len(images) / 500)))
    correct = 0
    for batch in split:
        if training:
            logits, _ = model.stateless_call(model.trainable_variables, model.non_trainable_variables,
                                             ops.convert_to_tensor(images[batch]), training=True)
        else:
            logits = model.predict_on_batch(images[batch])
        correct += int((ops.convert_to_numpy(logits).argmax(axis=-1) == classes[batch]).sum())
    return 100.0 * correct / len(images)


def bn_momentum_effect(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                       momenta: Sequence[float] = (0.99, 0.6), steps: int = 200, every: int = 10,
                       batch_size: int = 64, train_images: int = 2000, test_images: int = 400, seed: int = 0,
                       experiment: int = 11, replay: bool = True) -> BatchNormMomentum:
    """Experiment 11 (batch norm) in its first steps: held-out accuracy with the running statistics
    against each batch's own, for each batch-norm ``momentum``.

    At inference a batch-norm layer normalises with running averages of the batch means and
    variances: each training step moves them a fraction ``1 - momentum`` towards the batch's
    (Keras' default 0.99: 1 %, a memory of about 100 steps), starting from mean 0 and
    variance 1. In training mode it uses the batch's own statistics. The model takes ``steps``
    Adam(1e-3) steps (the study's optimizer) on batches drawn from a stratified
    ``train_images`` subset; every ``every`` steps both accuracies are measured on a
    stratified ``test_images`` subset of the test set, in batches of ``batch_size`` (in
    training mode a batch normalises with its own statistics, so its size matters), without
    updating anything.

    The momentum changes nothing but the running averages: the same seed gives the same
    weights and the same batches the same steps, whatever the momentum. So with ``replay``
    one model is trained, with momentum 0 (its running statistics after a step are that
    step's batch statistics), and each momentum's running averages are computed from those
    as Keras computes them, ``momentum * old + (1 - momentum) * batch``, then put into the
    model to measure inference mode. ``replay=False`` trains one model per momentum (twice
    the time; the test checks that both ways agree).
    """
    if steps < 1 or every < 1:
        raise ValueError(f"steps and every must be >= 1, got {steps} and {every}")
    if not all(0.0 <= m < 1.0 for m in momenta):
        raise ValueError(f"batch-norm momenta must be in [0, 1), got {list(momenta)}")
    picked = _stratified_pick(_class_indices(y_train), train_images, seed)
    held = _stratified_pick(_class_indices(y_test), test_images, seed)
    scale = _input_scale(experiment)
    images = _unit_images(np.asarray(x_train)[picked]) * scale
    labels = keras.utils.to_categorical(_class_indices(y_train)[picked], len(CLASS_NAMES))
    test = _unit_images(np.asarray(x_test)[held]) * scale
    test_classes = _class_indices(y_test)[held]
    rng = np.random.default_rng(seed)
    batches = [rng.choice(len(images), size=min(batch_size, len(images)), replace=False) for _ in range(steps)]
    measured_at = sorted({0, *range(every, steps + 1, every), steps})

    def measure(model):
        return _accuracy(model, test, test_classes, batch_size, training=False)

    columns: dict[tuple[float, str], list[float]] = {}
    trained = {None: 0.0} if replay else {float(m): float(m) for m in momenta}
    for own, momentum in trained.items():
        model = _trainable_model(experiment, seed, bn_momentum=momentum)
        if not batch_norm_layers(model):
            raise ValueError(f"experiment {experiment} has no batch-norm layer")
        running = {float(m): batch_norm_statistics(model) for m in (momenta if own is None else [own])}
        for step in range(steps + 1):
            if step in measured_at:
                training = _accuracy(model, test, test_classes, batch_size, training=True)
                for m, statistics in running.items():
                    columns.setdefault((m, "training"), []).append(training)
                    if own is None:
                        restore_batch_norm(model, statistics)  # the next step overwrites them again
                    columns.setdefault((m, "inference"), []).append(measure(model))
            if step == steps:
                break
            model.train_on_batch(images[batches[step]], labels[batches[step]])
            if own is None:
                batch = batch_norm_statistics(model)  # momentum 0: the step's batch statistics
                running = {m: [(np.float32(m) * mean + np.float32(1 - m) * batch_mean,
                                np.float32(m) * variance + np.float32(1 - m) * batch_variance)
                               for (mean, variance), (batch_mean, batch_variance) in zip(old, batch, strict=True)]
                           for m, old in running.items()}
            else:
                running = {own: batch_norm_statistics(model)}
    accuracy = pd.DataFrame({key: columns[key] for m in momenta for key in ((float(m), "inference"),
                                                                              (float(m), "training"))},
                            index=pd.Index(measured_at, name="step"))
    accuracy.columns = pd.MultiIndex.from_tuples(accuracy.columns, names=["momentum", "mode"])
    return BatchNormMomentum(accuracy, len(picked), len(held), batch_size, get_experiment(experiment).number,
                             keras.backend.backend())


def momentum_lag(result: BatchNormMomentum) -> pd.DataFrame:
    """Per momentum: training-mode minus inference-mode accuracy (points), its mean absolute
    value over the measured steps after initialisation, and at the last step."""
    accuracy = result.accuracy
    later = accuracy.index > 0
    rows = {}
    for momentum in dict.fromkeys(accuracy.columns.get_level_values("momentum")):
        gap = accuracy[(momentum, "training")] - accuracy[(momentum, "inference")]
        rows[momentum] = {"mean_abs_gap": float(gap[later].abs().mean()), "last_gap": float(gap.iloc[-1]),
                          "last_inference": float(accuracy[(momentum, "inference")].iloc[-1]),
                          "last_training": float(accuracy[(momentum, "training")].iloc[-1])}
    frame = pd.DataFrame(rows).T
    frame.index.name = "momentum"
    return frame


def plot_bn_momentum(result: BatchNormMomentum) -> Figure:
    """Held-out accuracy over the first steps: solid with the running statistics (inference mode),
    dashed with each batch's own (training mode), one colour per batch-norm momentum. The
    training-mode lines of different momenta lie on top of each other (the weights are the
    same), so each is drawn thinner than the one before and the legend says when they coincide."""
    accuracy = result.accuracy
    fig, ax = plt.subplots(figsize=(8.5, 5.2), layout="constrained")
    momenta = list(dict.fromkeys(accuracy.columns.get_level_values("momentum")))
    training = [accuracy[(m, "training")].to_numpy() for m in momenta]
    same = all(np.allclose(t, training[0]) for t in training)
    for order, (momentum, color) in enumerate(zip(momenta, MOMENTUM_COLORS, strict=False)):
        memory = 1 / (1 - momentum)
        ax.plot(accuracy.index, accuracy[(momentum, "inference")], linestyle=INFERENCE_STYLE, color=color,
                marker="o", markersize=3, label=f"momentum {momentum:g} (memory ≈ {memory:.3g} steps): "
                                                 "running statistics (inference mode)")
        ax.plot(accuracy.index, accuracy[(momentum, "training")], linestyle=TRAINING_STYLE, color=color,
                linewidth=max(4.0 - 1.5 * order, 1.0), alpha=0.8,
                label=f"momentum {momentum:g}: each batch's own statistics (training mode)"
                      + (", the same line for every momentum" if same and order == 0 and len(momenta) > 1 else ""))
    ax.axhline(100 / len(CLASS_NAMES), color="grey", linestyle=":", linewidth=1, label="chance (10 %)")
    ax.set(xlabel=f"Adam step (lr 1e-3, batch {result.batch_size}, {result.train_images:,} training images)",
           ylabel=f"accuracy on {result.test_images:,} test images (%)",
           title=f"Experiment {result.experiment}'s first steps: the same weights, normalised two ways "
                 f"({result.backend or 'Keras'})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1)
    return fig

# ---------------------------------------------------------------------------- 7. augmentation

def augment_draws(image: np.ndarray, draws: int = 8, seed: int = 0, augment: Augment | None = None) -> np.ndarray:
    """``draws`` independent draws of the ``Augment`` layer (training mode) on one image, (draws, H, W, 3)."""
    augment = Augment(seed=seed) if augment is None else augment
    batch = np.repeat(_unit_images(image)[None], draws, axis=0)
    return ops.convert_to_numpy(augment(ops.convert_to_tensor(batch), training=True))


def plot_augment_draws(image: np.ndarray, draws: int = 8, seed: int = 0, augment: Augment | None = None) -> Figure:
    """The original and ``draws`` augmented copies: what the network sees instead of one fixed image."""
    augment = Augment(seed=seed) if augment is None else augment
    shown = [_unit_images(image), *augment_draws(image, draws, seed, augment)]
    columns = math.ceil(math.sqrt(len(shown)))
    rows = math.ceil(len(shown) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.9 * columns, 1.9 * rows + 0.6), squeeze=False,
                             layout="constrained")
    for index, ax in enumerate(axes.flat):
        _hide_ticks(ax)
        if index >= len(shown):
            ax.set_axis_off()
            continue
        ax.imshow(np.clip(shown[index], 0, 1), interpolation="nearest")
        ax.set_title("original" if index == 0 else f"draw {index}", fontsize=9)
    flip = "random horizontal flip" if augment.flip else "no flip"
    fig.suptitle(f"Augment: shift up to ±{100 * augment.shift:.0f} % per axis, {flip} (seed {seed})", fontsize=10)
    return fig


__all__ = [
    "plot_class_examples", "class_example_indices", "class_mosaic",
    "InputScaleEffect", "input_scale_effect", "plot_input_scale_effect",
    "parameter_counts", "plot_parameter_counts",
    "DropoutExample", "dropout_example", "plot_dropout_mask",
    "activation_spread", "spread_change", "plot_activation_spread", "PLAIN_NETWORK", "BASIC_NETWORK",
    "ActivationDistributions", "activation_distributions", "plot_activation_distributions",
    "BatchNormMomentum", "bn_momentum_effect", "momentum_lag", "plot_bn_momentum",
    "augment_draws", "plot_augment_draws",
]
