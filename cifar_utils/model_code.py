"""Show the reader the Keras code of a model, written from the model that is trained.

The study's slides show each network as a ``keras.Sequential([...])`` listing; a chapter
shows the same listing, but generated from the built model (each layer's ``get_config()``),
so the code on the page and the network that trains cannot drift apart, and any layer the
builder learns later (dense-only heads, custom layers of this package) is listed too.

- ``model_code``: runnable source that rebuilds the model, non-default arguments only.
- ``code_changes``: what changed between two experiments' listings, as a unified diff.
- ``architecture``: a one-line diagram that still tells the 17 experiments apart.
- ``model_differences``: a structural comparison, so tests can prove listing == model.
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Callable, Sequence
from dataclasses import is_dataclass
from typing import Any

import keras

from .experiments import ArchSpec, Experiment, get_experiment
from .models import build_model

__all__ = ["architecture", "code_changes", "model_code", "model_differences"]

ModelLike = keras.Model | Experiment | ArchSpec | int | str

# Public Keras namespaces a config object may come from, and how the listing spells them.
_NAMESPACES = (
    (keras.layers, "layers."),
    (keras.initializers, "keras.initializers."),
    (keras.regularizers, "keras.regularizers."),
    (keras.constraints, "keras.constraints."),
    (keras.dtype_policies, "keras.dtype_policies."),
)
_INPUT_SCALE = {True: "pixels / 255 (floats in [0, 1])", False: "raw pixels 0-255"}
_EMPTY = inspect.Parameter.empty


# --- accepting models and experiments -----------------------------------------------------------------------


def _resolve(model_or_experiment: ModelLike) -> tuple[keras.Model, Experiment | None]:
    """The built model, and the experiment when one was named (it knows the input scale)."""
    if isinstance(model_or_experiment, keras.Model):
        return model_or_experiment, None
    if is_dataclass(model_or_experiment) and not isinstance(model_or_experiment, Experiment):
        return build_model(model_or_experiment), None  # a bare spec: ArchSpec or any other the builder takes
    if isinstance(model_or_experiment, Experiment | int | str) and not isinstance(model_or_experiment, bool):
        experiment = get_experiment(model_or_experiment)
        return build_model(experiment), experiment
    raise TypeError(f"expected a keras.Model, an Experiment, a spec (ArchSpec ...) or an experiment number/key, "
                    f"got {type(model_or_experiment).__name__}")


def _sequential(model: keras.Model) -> keras.Sequential:
    if not isinstance(model, keras.Sequential):
        raise TypeError(f"only keras.Sequential models can be written as a layer list, got {type(model).__name__}")
    return model


# --- configs without run details ----------------------------------------------------------------------------


def _without_seeds(value: Any) -> Any:
    """A config with every ``seed`` entry removed, at any depth (initializers carry one too)."""
    if isinstance(value, dict):
        return {k: _without_seeds(v) for k, v in value.items() if k != "seed"}
    if isinstance(value, list | tuple):
        return type(value)(_without_seeds(v) for v in value)
    return value


def _architecture_config(obj: Any, drop_name: bool = True) -> dict:
    """What defines the layer (or initializer ...): its config less the name and the seeds."""
    config = _without_seeds(obj.get_config())
    if drop_name:
        config.pop("name", None)
    return config


def _input_layer(model: keras.Model) -> dict | None:
    """The InputLayer's config (batch shape, dtype), or None for a model with no input yet."""
    layers = model.get_config().get("layers", [])
    if layers and layers[0].get("class_name") == "InputLayer":
        return layers[0]["config"]
    return None


# --- writing Python source ----------------------------------------------------------------------------------


def _qualified(cls: Any) -> tuple[str, tuple[str, str] | None]:
    """How the listing names a class (or function), and the import it needs (None: none needed)."""
    for namespace, prefix in _NAMESPACES:
        if getattr(namespace, cls.__name__, None) is cls:
            return prefix + cls.__name__, None
    if getattr(keras, cls.__name__, None) is cls:
        return f"keras.{cls.__name__}", None
    module = cls.__module__
    if module == "__main__":
        return cls.__name__, None  # defined in the notebook itself, where the listing runs
    if module.split(".")[0] == "keras" or "<locals>" in cls.__qualname__:
        raise ValueError(f"cannot write an import for {module}.{cls.__qualname__}: define it at module level")
    return cls.__name__, (module, cls.__name__)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _parameters(cls: type) -> dict[str, inspect.Parameter]:
    """Constructor parameters in signature order; for layers, the base ``Layer`` keywords after them."""
    params = {name: p for name, p in inspect.signature(cls.__init__).parameters.items()
              if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    if issubclass(cls, keras.layers.Layer):
        for name, p in inspect.signature(keras.layers.Layer.__init__).parameters.items():
            if name != "self" and p.kind == p.KEYWORD_ONLY:
                params.setdefault(name, p)
    return params


_ARGUMENTS: dict[tuple[type, str, bool], tuple[list[Any], dict[str, Any]]] = {}  # a VGG repeats its layers


def _arguments(cls: type, config: dict, drop_name: bool = True) -> tuple[list[Any], dict[str, Any]]:
    key = (cls, repr(config), drop_name)
    if key not in _ARGUMENTS:
        _ARGUMENTS[key] = _find_arguments(cls, config, drop_name)
    positional, keywords = _ARGUMENTS[key]
    return list(positional), dict(keywords)


def _find_arguments(cls: type, config: dict, drop_name: bool) -> tuple[list[Any], dict[str, Any]]:
    """Positional and keyword arguments that rebuild ``config``: required ones first, then non-defaults.

    Defaults come from the constructor's signature; an argument whose default is resolved at run
    time (``data_format=None``, a pool's ``strides=None``) is dropped only if rebuilding without it
    gives the same config, so every simplification is checked against the class itself.
    """
    params = _parameters(cls)

    def rebuilt(kwargs: dict) -> dict | None:
        """The config of ``cls(**kwargs)``: what the listing's call would make."""
        try:
            return _architecture_config(cls(**kwargs), drop_name)
        except Exception:  # an argument the class cannot take back in that form
            return None

    ordered = [k for k in params if k in config] + [k for k in config if k not in params]
    kwargs = {k: config[k] for k in ordered}
    required = [k for k in kwargs if k in params and params[k].default is _EMPTY]
    for key in [k for k in kwargs if k not in required]:
        default = params[key].default if key in params else _EMPTY
        if default is not _EMPTY and _same(kwargs[key], default):
            del kwargs[key]  # the signature's own default: omitting it is the same call
            continue
        trial = {k: v for k, v in kwargs.items() if k != key}
        if rebuilt(trial) == config:
            kwargs = trial
    for key, value in kwargs.items():  # kernel_size=(3, 3) is written 3, as people write it
        if isinstance(value, tuple | list) and value and len(set(value)) == 1 and isinstance(value[0], int):
            if rebuilt({**kwargs, key: value[0]}) == config:
                kwargs[key] = value[0]
    if rebuilt(kwargs) != config:
        raise ValueError(f"{cls.__name__}: cannot rebuild its config from constructor arguments {sorted(kwargs)}")
    positional = []  # leading required arguments, written as people write them: Conv2D(32, 3, ...)
    for key, param in params.items():
        if key not in required or param.kind != param.POSITIONAL_OR_KEYWORD:
            break
        positional.append(kwargs.pop(key))
    return positional, kwargs


def _same(value: Any, default: Any) -> bool:
    try:
        return type(value) is type(default) and bool(value == default)
    except Exception:
        return False


def _literal(value: Any, imports: set[tuple[str, str]]) -> str:
    """Python source for a config value: double-quoted strings, Keras objects as alias or constructor."""
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"' if value.isprintable() else repr(value)
    if value is None or isinstance(value, bool | int | float):
        return repr(value)
    if isinstance(value, tuple):
        items = ", ".join(_literal(v, imports) for v in value)
        return f"({items},)" if len(value) == 1 else f"({items})"
    if isinstance(value, list):
        return "[" + ", ".join(_literal(v, imports) for v in value) + "]"
    if isinstance(value, dict) and "class_name" in value and "config" in value:
        value = keras.saving.deserialize_keras_object(value)
        if inspect.isfunction(value):  # a custom activation: its name, imported from its module
            name, needed = _qualified(value)
            imports.update([needed] if needed else [])
            return name
        return _object_code(value, imports)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_literal(k, imports)}: {_literal(v, imports)}" for k, v in value.items()) + "}"
    if hasattr(value, "get_config"):
        return _object_code(value, imports)
    raise ValueError(f"cannot write {value!r} ({type(value).__name__}) as Python source")


def _object_code(obj: Any, imports: set[tuple[str, str]]) -> str:
    """An initializer, regularizer ...: its string alias when it has default settings, else a call."""
    cls = type(obj)
    config = _architecture_config(obj, drop_name=False)
    for namespace, _ in _NAMESPACES[1:4]:  # initializers, regularizers, constraints take aliases
        if getattr(namespace, cls.__name__, None) is cls:
            try:
                by_alias = namespace.get(_snake(cls.__name__))
            except (ValueError, TypeError):
                break
            if type(by_alias) is cls and _architecture_config(by_alias, drop_name=False) == config:
                return _literal(_snake(cls.__name__), imports)
            break
    return _call(cls, config, imports, drop_name=False)


def _call(cls: type, config: dict, imports: set[tuple[str, str]], drop_name: bool = True) -> str:
    name, needed = _qualified(cls)
    if needed:
        imports.add(needed)
    positional, keywords = _arguments(cls, config, drop_name)
    args = [_literal(v, imports) for v in positional] + [f"{k}={_literal(v, imports)}" for k, v in keywords.items()]
    return f"{name}({', '.join(args)})"


def _input_code(config: dict, imports: set[tuple[str, str]]) -> str:
    batch_shape = tuple(config["batch_shape"])
    args = [f"shape={_literal(batch_shape[1:], imports)}"]
    if batch_shape[0] is not None:
        args.append(f"batch_size={batch_shape[0]}")
    if config.get("dtype") not in (None, keras.config.floatx()):
        args.append(f"dtype={_literal(config['dtype'], imports)}")
    if config.get("sparse"):
        args.append("sparse=True")
    return f"keras.Input({', '.join(args)})"


def model_code(model_or_experiment: ModelLike, name: str = "model") -> str:
    """Runnable Keras source that rebuilds the model, written from the built layers' configs.

    Only arguments that differ from each class's defaults are shown, the way keras-io examples
    write a model; seeds and layer names are run details and left out. For an experiment the
    first line says which input scale it is fed (experiments 1 and 2 differ only there).
    """
    if not name.isidentifier():
        raise ValueError(f"name must be a Python identifier, got {name!r}")
    model, experiment = _resolve(model_or_experiment)
    model = _sequential(model)
    imports: set[tuple[str, str]] = set()
    lines = []
    input_config = _input_layer(model)
    if input_config is not None:
        lines.append(_input_code(input_config, imports))
    for layer in model.layers:
        lines.append(_call(type(layer), _architecture_config(layer), imports))
    header = [] if experiment is None else [f"# input: {_INPUT_SCALE[experiment.normalize]}"]
    header += ["import keras", "from keras import layers"]
    modules = sorted({module for module, _ in imports})
    header += [""] * bool(modules) + [
        f"from {module} import {', '.join(sorted(n for m, n in imports if m == module))}" for module in modules]
    body = [f"{name} = keras.Sequential(["] + [f"    {line}," for line in lines] + ["])"]
    return "\n".join(header + [""] + body) + "\n"


def code_changes(before: ModelLike, after: ModelLike, context: int = 1) -> str:
    """The listing's changes from one experiment to the next, as a unified diff for a ```diff block.

    The file headers are left out (both sides are "the model"); when only the input scale
    changed, the text says the network code is unchanged, so no reader hunts for a difference.
    """
    old, new = model_code(before).splitlines(), model_code(after).splitlines()
    old_code = [line for line in old if not line.startswith("# input:")]
    new_code = [line for line in new if not line.startswith("# input:")]
    if old_code == new_code:
        old_input = [line for line in old if line.startswith("# input:")]
        new_input = [line for line in new if line.startswith("# input:")]
        if old_input == new_input:
            return "# no change in the network code or its input\n"
        changes = [f"-{line}" for line in old_input] + [f"+{line}" for line in new_input]
        return "\n".join(["# no change in the network code; only the input scale changed:", *changes]) + "\n"
    diff = list(difflib.unified_diff(old, new, lineterm="", n=context))
    return "\n".join(diff[2:]) + "\n"  # diff[:2] are the ---/+++ file headers


# --- the one-line diagram -----------------------------------------------------------------------------------

# A token is (prefix, width, suffix): width is the conv's filters or the dense's units, so blocks
# that differ only in width can be folded as "[Conv{f} → Pool for f in 32, 64]".
Token = tuple[str, int | None, str]

_INIT_SHORT = {"he_uniform": "he_u", "he_normal": "he_n", "glorot_normal": "glorot_n",
               "lecun_uniform": "lecun_u", "lecun_normal": "lecun_n"}
_CONVS = {"Conv1D": "Conv1D", "Conv2D": "Conv", "Conv3D": "Conv3D"}


def _init_text(initializer: Any) -> str:
    """'' for Keras' default (glorot_uniform), else a short alias or the class with its arguments."""
    code = _object_code(initializer, set())
    if code == '"glorot_uniform"':
        return ""
    code = code.strip('"').removeprefix("keras.initializers.").removesuffix("()")
    return "·" + _INIT_SHORT.get(code, code)


def _activation_text(layer: keras.layers.Layer) -> str:
    name = keras.activations.serialize(layer.activation)
    name = name if isinstance(name, str) else getattr(layer.activation, "__name__", "custom")
    return "" if name == "linear" else f"·{name}"


# Layers with no width, as the diagram names them; any other layer is shown as its call.
_SIMPLE: dict[str, Callable[[Any], str]] = {
    "BatchNormalization": lambda layer: "BN",
    "ReLU": lambda layer: "ReLU",
    "Flatten": lambda layer: "Flatten",
    "Dropout": lambda layer: f"Drop{layer.rate:g}",
    "Activation": lambda layer: _activation_text(layer).lstrip("·"),
    "Augment": lambda layer: f"Augment(±{100 * layer.shift:g}%{', flip' if layer.flip else ''})",
    "Translate": lambda layer: f"Translate(±{layer.pixels}px{', flip' if layer.flip else ''})",
}


def _token(layer: keras.layers.Layer) -> Token:
    kind = type(layer).__name__
    if kind in _CONVS:
        extras = ""
        if set(layer.kernel_size) != {3}:
            extras += f"·{_size(layer.kernel_size)}x{_size(layer.kernel_size)}" if len(set(layer.kernel_size)) == 1 \
                else "·" + _size(layer.kernel_size)
        if set(layer.strides) != {1}:
            extras += f"·s{_size(layer.strides)}"
        if layer.padding != "same":
            extras += f"·{layer.padding}"
        return (_CONVS[kind], layer.filters, extras + _activation_text(layer) + _init_text(layer.kernel_initializer))
    if kind == "Dense":
        return ("Dense", layer.units, _activation_text(layer) + _init_text(layer.kernel_initializer))
    if kind in ("MaxPooling2D", "AveragePooling2D"):
        short = "Pool" if kind == "MaxPooling2D" else "AvgPool"
        if (tuple(layer.pool_size), tuple(layer.strides), layer.padding) == ((3, 3), (2, 2), "same"):
            return (short, None, "")  # the study's pool, the one every experiment uses
        padding = "·same" if layer.padding == "same" else ""
        return (f"{short}{_size(layer.pool_size)}/s{_size(layer.strides)}{padding}", None, "")
    if kind in _SIMPLE:
        return (_SIMPLE[kind](layer), None, "")
    call = _call(type(layer), _architecture_config(layer), set())  # any other layer: its call, short
    call = re.sub(r"\d+\.\d{5,}(e-?\d+)?", lambda m: f"{float(m.group()):.4g}", call)  # 1/9, not 0.1111111111111111
    return (call.removeprefix("layers.").removesuffix("()").replace('"', ""), None, "")


def _size(values: Sequence[int]) -> str:
    """(3, 3) as "3", (3, 1) as "3x1"."""
    return str(values[0]) if len(set(values)) == 1 else "x".join(map(str, values))


def _text(token: Token, width: int | str | None = None) -> str:
    prefix, value, suffix = token
    value = value if width is None or value is None else width
    return f"{prefix}{'' if value is None else value}{suffix}"


Unit = tuple[int, Token]  # n consecutive identical layers, shown "2×Conv64"


def _unit_text(unit: Unit, width: int | str | None = None) -> str:
    count, token = unit
    return ("" if count == 1 else f"{count}×") + _text(token, width)


def _block_width(block: Sequence[Unit]) -> int | None | bool:
    """The single width a block's conv/dense layers share (None: no width), False if they differ."""
    widths = {token[1] for _, token in block if token[1] is not None}
    return widths.pop() if len(widths) == 1 else (None if not widths else False)


def _same_template(a: Sequence[Unit], b: Sequence[Unit]) -> bool:
    return all(ca == cb and (pa, sa) == (pb, sb) and (va is None) == (vb is None)
               for (ca, (pa, va, sa)), (cb, (pb, vb, sb)) in zip(a, b, strict=True))


def _folds(units: list[Unit], start: int) -> list[tuple[int, str]]:
    """Candidate folds at ``start``: (units covered, text), identical blocks and width-only changes."""
    found = []
    for period in range(1, (len(units) - start) // 2 + 1):
        first = units[start:start + period]
        width = _block_width(first)
        if width is False or (period > 1 and width is not None and first[0][1][1] is None):
            continue  # a block starts at its conv or dense layer, as d2l's vgg_block does
        blocks, widths = [first], [width]
        while start + (len(blocks) + 1) * period <= len(units):
            block = units[start + len(blocks) * period:start + (len(blocks) + 1) * period]
            block_width = _block_width(block)
            if block_width is False or not _same_template(first, block):
                break
            blocks.append(block)
            widths.append(block_width)
        for count in range(2, len(blocks) + 1):
            if len(set(widths[:count])) == 1:  # identical blocks (identical single layers are already "2×")
                text = f"[{' → '.join(_unit_text(u) for u in first)}] ×{count}"
            else:
                inner = " → ".join(_unit_text(u, "{f}") for u in first)
                text = f"[{inner} for f in {', '.join(map(str, widths[:count]))}]"
            found.append((period * count, text))
    return found


def _fold(tokens: list[Token]) -> str:
    """Join tokens with arrows, folding repeats where that makes the line shorter."""
    units: list[Unit] = []
    for token in tokens:
        if units and units[-1][1] == token:
            units[-1] = (units[-1][0] + 1, token)
        else:
            units.append((1, token))
    parts, i = [], 0
    while i < len(units):
        best = (0, 1, _unit_text(units[i]))  # (characters saved, units covered, text)
        for covered, text in _folds(units, i):
            saved = len(" → ".join(_unit_text(u) for u in units[i:i + covered])) - len(text)
            if (saved, covered) > best[:2]:
                best = (saved, covered, text)
        parts.append(best[2])
        i += best[1]
    return " → ".join(parts)


def architecture(model_or_experiment: ModelLike) -> str:
    """A one-line diagram that shows what tells experiments apart.

    Each conv/dense shows its activation and a non-default initialiser (``Conv32·relu·he_u``),
    so BN's place reads from the order (``Conv32·relu → BN`` vs ``Conv32 → BN → ReLU``);
    dropout shows its rate, an experiment starts with its input scale (``0-255 →``, ``/255 →``).
    Repeats fold: ``2×Conv64`` (two identical layers), ``[...] ×3`` (identical blocks) and
    ``[Conv{f}·relu → Pool for f in 32, 64]`` (blocks that differ only in width). ``Pool`` is the
    study's max pool (3x3, stride 2, same padding); any other pool shows its size and stride.
    """
    model, experiment = _resolve(model_or_experiment)
    line = _fold([_token(layer) for layer in _sequential(model).layers])
    if experiment is not None:
        line = ("/255 → " if experiment.normalize else "0-255 → ") + line
    return line


# --- comparing two models -----------------------------------------------------------------------------------


def _flat(config: Any, path: str = "") -> dict[str, Any]:
    if isinstance(config, dict) and config:
        out: dict[str, Any] = {}
        for key, value in config.items():
            if key in ("module", "registered_name") and path:
                continue  # where a class lives, not what it is; class_name and config say that
            out.update(_flat(value, f"{path}.{key}" if path else str(key)))
        return out
    return {path: config}


def _count(model_or_layer: Any) -> int | None:
    try:
        return model_or_layer.count_params()
    except ValueError:  # not built yet
        return None


def model_differences(a: keras.Model, b: keras.Model) -> list[str]:
    """Where two models differ in structure, in words; an empty list means the same network.

    Compares layer classes in order, each layer's config apart from names and seeds (nested
    initializer seeds included), the input, the weight shapes and the parameter counts. Used to
    prove that the listing a chapter prints builds the model that ``build_model`` trains.
    """
    found = []
    input_a, input_b = _input_layer(a), _input_layer(b)
    for key in ("batch_shape", "dtype", "sparse"):
        va, vb = ((cfg or {}).get(key) for cfg in (input_a, input_b))
        if va != vb:
            found.append(f"input {key}: {va!r} != {vb!r}")
    kinds_a = [type(layer).__name__ for layer in a.layers]
    kinds_b = [type(layer).__name__ for layer in b.layers]
    if len(kinds_a) != len(kinds_b):
        found.append(f"{len(kinds_a)} layers != {len(kinds_b)} layers")
    for i, (layer_a, layer_b) in enumerate(zip(a.layers, b.layers, strict=False)):
        where = f"layer {i} ({kinds_a[i]})"
        if type(layer_a) is not type(layer_b):
            found.append(f"layer {i}: {kinds_a[i]} != {kinds_b[i]}")
            continue
        flat_a, flat_b = _flat(_architecture_config(layer_a)), _flat(_architecture_config(layer_b))
        for key in sorted(set(flat_a) | set(flat_b)):
            va, vb = flat_a.get(key, "<absent>"), flat_b.get(key, "<absent>")
            if va != vb:
                found.append(f"{where}: {key}: {va!r} != {vb!r}")
        shapes_a = [tuple(w.shape) for w in layer_a.weights]
        shapes_b = [tuple(w.shape) for w in layer_b.weights]
        if shapes_a != shapes_b:
            found.append(f"{where}: weight shapes {shapes_a} != {shapes_b}")
    if len(kinds_a) > len(kinds_b):
        found.append(f"extra layers in the first model: {kinds_a[len(kinds_b):]}")
    elif len(kinds_b) > len(kinds_a):
        found.append(f"extra layers in the second model: {kinds_b[len(kinds_a):]}")
    count_a, count_b = _count(a), _count(b)
    if count_a != count_b:
        found.append(f"count_params: {count_a} != {count_b}")
    return found
