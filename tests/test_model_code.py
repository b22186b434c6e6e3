"""The code a chapter shows is the model that trains: each listing is run and compared layer by layer."""

import json
import os
import re
import subprocess
import sys
import textwrap

import keras
import pytest
from keras import layers

from cifar_utils import EXPERIMENTS, ArchSpec, Augment, build_model, get_experiment
from cifar_utils.model_code import architecture, code_changes, model_code, model_differences

STUDY = [e for e in EXPERIMENTS if e.number <= 17]  # the study's own 17 networks


def run_listing(code: str, name: str = "model") -> keras.Model:
    """Execute a listing as a reader would paste it, in a fresh namespace."""
    namespace: dict = {}
    exec(compile(code, "<listing>", "exec"), namespace)
    return namespace[name]


def changed_lines(diff: str) -> tuple[list[str], list[str]]:
    """(removed, added) code lines of a unified diff, without the +/- marks and indentation."""
    lines = diff.splitlines()
    removed = [line[1:].strip() for line in lines if line.startswith("-")]
    added = [line[1:].strip() for line in lines if line.startswith("+")]
    return removed, added


@pytest.mark.slow
@pytest.mark.parametrize("experiment", EXPERIMENTS, ids=lambda e: e.key)
def test_listing_rebuilds_the_trained_model(experiment):
    model = run_listing(model_code(experiment))
    assert model_differences(model, build_model(experiment)) == []
    if experiment.study is not None:
        assert model.count_params() == experiment.study.params


def test_listing_reads_like_the_slides():
    code = model_code(9)
    lines = code.splitlines()
    assert lines[:3] == ["# input: pixels / 255 (floats in [0, 1])", "import keras", "from keras import layers"]
    assert "model = keras.Sequential([" in lines and lines[-1] == "])"
    body = [line.strip() for line in lines[lines.index("model = keras.Sequential([") + 1:-1]]
    assert body[:5] == [
        "keras.Input(shape=(32, 32, 3)),",
        'layers.Conv2D(32, 3, padding="same", activation="relu", kernel_initializer="he_uniform"),',
        "layers.BatchNormalization(),",
        'layers.MaxPooling2D(pool_size=3, strides=2, padding="same"),',
        "layers.Dropout(0.3),",
    ]
    assert body[-4:] == ['layers.Dense(128, activation="relu"),', "layers.BatchNormalization(),",
                         "layers.Dropout(0.3),", 'layers.Dense(10),']
    assert code.count('kernel_initializer="he_uniform"') == 5  # convs only, as the builder does
    assert model_code(1).splitlines()[0] == "# input: raw pixels 0-255"
    # An experiment by number, key or object gives one listing; a bare model has no input-scale line.
    assert model_code("exp09") == model_code(get_experiment(9)) == code
    assert model_code(build_model(9)) == "\n".join(lines[1:]) + "\n"
    assert run_listing(model_code(2, name="net"), name="net").count_params() == 24_522
    with pytest.raises(ValueError, match="identifier"):
        model_code(2, name="my model")


def test_run_details_stay_out_of_the_listing():
    seeded = build_model(16, seed=123)
    code = model_code(seeded)
    assert "seed" not in code and "name=" not in code
    assert "from cifar_utils.augment import Augment" in code and "    Augment(),\n" in code
    assert code == model_code(build_model(16))
    assert model_differences(build_model(16, seed=1), build_model(16, seed=2)) == []


def test_non_sequential_models_are_refused():
    inputs = keras.Input(shape=(4,))
    functional = keras.Model(inputs, layers.Dense(2)(inputs))
    with pytest.raises(TypeError, match="Sequential"):
        model_code(functional)


@pytest.mark.parametrize("mutate, expected", [
    (lambda code: code.replace(', kernel_initializer="he_uniform"', "", 1), "kernel_initializer"),
    (lambda code: code.replace("layers.Dropout(0.3)", "layers.Dropout(0.5)", 1), "rate"),
    (lambda code: code.replace("layers.Conv2D(32, 3,", "layers.Conv2D(32, 5,", 1), "kernel_size"),
    (lambda code: code.replace('activation="relu", ', "", 1), "activation"),
], ids=["initializer", "dropout", "kernel", "activation"])
def test_a_one_argument_change_is_caught(mutate, expected):
    code = model_code(9)
    mutated = mutate(code)
    assert mutated != code
    differences = model_differences(run_listing(mutated), build_model(9))
    assert differences and any(expected in d for d in differences), differences


def test_moving_batch_norm_is_caught_though_the_parameter_count_is_equal():
    lines = model_code(9).splitlines()
    bn = lines.index("    layers.BatchNormalization(),")
    assert "MaxPooling2D" in lines[bn + 1]
    lines[bn], lines[bn + 1] = lines[bn + 1], lines[bn]  # conv -> pool -> BN in the first block
    moved = run_listing("\n".join(lines))
    reference = build_model(9)
    assert moved.count_params() == reference.count_params()
    differences = model_differences(moved, reference)
    assert "layer 1: MaxPooling2D != BatchNormalization" in differences
    assert "layer 2: BatchNormalization != MaxPooling2D" in differences


def test_diff_8_to_9_is_the_initializer_only():
    diff = code_changes(8, 9)
    assert not any(line.startswith(("---", "+++")) for line in diff.splitlines())
    removed, added = changed_lines(diff)
    assert len(removed) == len(added) == 5
    for old, new in zip(removed, added, strict=True):
        assert old.startswith("layers.Conv2D(") and new == old.replace('"),', '", kernel_initializer="he_uniform"),')


def test_diff_6_to_7_adds_only_dropout():
    removed, added = changed_lines(code_changes(6, 7))
    assert removed == [] and added == ["layers.Dropout(0.3),"] * 6


def test_diff_9_to_10_moves_the_activation_after_batch_norm():
    diff = code_changes(9, 10)
    removed, added = changed_lines(diff)
    assert removed and all('activation="relu"' in line for line in removed)
    assert sorted(added) == sorted([line.replace('activation="relu", ', "").replace(', activation="relu"', "")
                                    for line in removed] + ["layers.ReLU(),"] * 6)
    assert "BatchNormalization" not in "".join(removed + added)  # BN stays; ReLU moves behind it
    assert "\n+    layers.ReLU(),\n" in diff


def test_diff_1_to_2_is_the_input_scale_only():
    diff = code_changes(1, 2)
    assert "no change in the network code" in diff
    assert "-# input: raw pixels 0-255" in diff and "+# input: pixels / 255 (floats in [0, 1])" in diff
    assert "layers." not in diff
    assert "no change in the network code or its input" in code_changes(9, "exp09")
    removed, added = changed_lines(code_changes(9, 16))
    assert removed == [] and added == ["from cifar_utils.augment import Augment", "", "Augment(),"]


# --- the one-line diagram -------------------------------------------------------------------------

DIAGRAM_KINDS = {"Conv": "Conv2D", "Dense": "Dense", "BN": "BatchNormalization", "Pool": "MaxPooling2D",
                 "Drop": "Dropout", "ReLU": "ReLU", "Flatten": "Flatten", "Augment": "Augment"}


def split_arrows(text: str) -> list[str]:
    """Split on ' → ' outside brackets."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(text):
        depth += (text[i] == "[") - (text[i] == "]")
        if depth == 0 and text.startswith(" → ", i):
            parts.append(text[start:i])
            i = start = i + 3
        else:
            i += 1
    return parts + [text[start:]]


def expand(diagram: str) -> list[str]:
    """Undo the folds ([...] ×k, k×layer, [... for f in ...]): one token per layer."""
    tokens = []
    for part in split_arrows(diagram):
        if m := re.fullmatch(r"\[(.*) for f in ([\d, ]+)\]", part):
            for width in m.group(2).split(", "):
                tokens += expand(m.group(1).replace("{f}", width))
        elif m := re.fullmatch(r"\[(.*)\] ×(\d+)", part):
            tokens += expand(m.group(1)) * int(m.group(2))
        elif m := re.fullmatch(r"(\d+)×(.*)", part):
            tokens += [m.group(2)] * int(m.group(1))
        else:
            tokens.append(part)
    return tokens


@pytest.mark.slow
@pytest.mark.parametrize("experiment", STUDY, ids=lambda e: e.key)
def test_diagram_unfolds_to_the_model_layers(experiment):
    diagram = architecture(experiment)
    scale, rest = diagram.split(" → ", 1)
    assert scale == ("/255" if experiment.normalize else "0-255")
    model = build_model(experiment)
    tokens = expand(rest)
    assert len(tokens) == len(model.layers), tokens
    for token, layer in zip(tokens, model.layers, strict=True):
        kind = re.match(r"[A-Za-z]+", token).group()
        assert DIAGRAM_KINDS[kind] == type(layer).__name__, (token, layer)
        if kind in ("Conv", "Dense"):
            width = layer.filters if kind == "Conv" else layer.units
            assert re.match(rf"{kind}{width}(·|$)", token), (token, width)
            activation = keras.activations.serialize(layer.activation)
            assert ("·relu" in token) == (activation == "relu") and ("·softmax" in token) == (activation == "softmax")
            initializer = type(layer.kernel_initializer).__name__
            assert ("·he_u" in token) == (initializer == "HeUniform")
            assert ("·he_n" in token) == (initializer == "HeNormal")
        if kind == "Drop":
            assert token == f"Drop{layer.rate:g}"


@pytest.mark.slow
def test_diagrams_tell_the_seventeen_apart():
    diagrams = {e.number: architecture(e) for e in STUDY}
    assert len(set(diagrams.values())) == 17
    assert diagrams[8] != diagrams[9] and "·he_u" in diagrams[9] and "·he_" not in diagrams[8]
    assert len({diagrams[7], diagrams[13], diagrams[14]}) == 3
    assert "·he_u" in diagrams[13] and "·he_n" in diagrams[14] and "Drop0.3" in diagrams[7]
    assert "relu → BN" in diagrams[8] and "BN → ReLU" not in diagrams[8]  # 8 has its ReLU, inside the conv
    assert "Conv{f}·he_u → BN → ReLU" in diagrams[10] and "Dense128 → BN → ReLU" in diagrams[10]
    assert diagrams[1].startswith("0-255 → ") and diagrams[2].startswith("/255 → ")
    assert diagrams[1].removeprefix("0-255 → ") == diagrams[2].removeprefix("/255 → ")
    assert "Augment(±10%, flip)" in diagrams[16] and "Augment" not in diagrams[9]
    assert all("\n" not in d for d in diagrams.values())
    assert len(diagrams[15]) <= 150 and max(map(len, diagrams.values())) <= 165


# --- models the builder does not make yet ---------------------------------------------------------


def test_custom_arch_spec_round_trips():
    spec = ArchSpec(blocks=((2, 8),), dense_units=16, dropout=0.1)
    model = build_model(spec)
    code = model_code(model)
    assert model_differences(run_listing(code), model) == []
    assert code == model_code(spec) and "layers.Dropout(0.1)," in code
    assert architecture(spec) == "2×Conv8·relu → Pool → Drop0.1 → Flatten → Dense16·relu → Drop0.1 → Dense10"


def hand_made() -> keras.Sequential:
    return keras.Sequential([
        keras.Input(shape=(12, 12, 1)),
        Augment(shift=0.2, flip=False, seed=7),
        layers.Conv2D(4, (3, 1), strides=2, use_bias=False),
        layers.AveragePooling2D(2),
        layers.Flatten(),
        layers.Dense(16, activation="gelu", kernel_initializer=keras.initializers.RandomNormal(stddev=0.02),
                     kernel_regularizer=keras.regularizers.L2(1e-4)),
        layers.Dropout(0.5, seed=3),
        layers.Dense(3, activation="softmax", kernel_initializer="he_normal"),
    ])


def test_hand_made_model_with_non_alias_initializer_round_trips():
    model = hand_made()
    code = model_code(model)
    assert "keras.Input(shape=(12, 12, 1))," in code
    assert "    Augment(shift=0.2, flip=False),\n" in code and "from cifar_utils.augment import Augment" in code
    assert "layers.Conv2D(4, (3, 1), strides=2, use_bias=False)," in code
    assert "kernel_initializer=keras.initializers.RandomNormal(stddev=0.02)" in code
    assert 'kernel_initializer="he_normal"' in code and "seed" not in code
    rebuilt = run_listing(code)
    assert model_differences(rebuilt, model) == []
    assert rebuilt.count_params() == model.count_params()
    changed = run_listing(code.replace("stddev=0.02", "stddev=0.05"))
    assert any("stddev" in d for d in model_differences(changed, model))
    diagram = architecture(model)
    assert "Augment(±20%)" in diagram and "Dense16·gelu·RandomNormal(stddev=0.02)" in diagram
    assert "Conv4·3x1·s2·valid" in diagram


# --- the listing does not depend on the backend ---------------------------------------------------

JAX_SCRIPT = textwrap.dedent("""
    import json
    import keras
    from cifar_utils import build_model
    from cifar_utils.model_code import model_code, model_differences

    out = {}
    for number in (16,):  # custom layer (Augment), initializer alias, BN: one build is slow enough on JAX
        namespace = {}
        code = model_code(number)
        exec(code, namespace)
        model = namespace["model"]
        out[number] = [keras.backend.backend(), code, model_differences(model, build_model(number)),
                       model.count_params()]
    print(json.dumps(out))
""")


@pytest.mark.slow
def test_listing_round_trips_on_jax():
    pytest.importorskip("jax")
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    done = subprocess.run([sys.executable, "-c", JAX_SCRIPT], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    for number, (backend, code, differences, params) in result.items():
        assert backend == "jax" and differences == []
        assert params == get_experiment(int(number)).study.params
        assert code == model_code(int(number))  # the same listing as on this process' backend
