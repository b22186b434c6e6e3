"""The one place that knows about Keras backends: which one runs, on what device.

Everything else in the package uses the public ``keras`` API only. Each helper imports
its backend library lazily, so a machine with JAX and no TensorFlow works.
"""

from __future__ import annotations

import importlib
import platform
import warnings

import keras

_LIBRARIES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch", "numpy": "numpy"}


def backend_name() -> str:
    return keras.backend.backend()


def _library(name: str | None = None):
    return importlib.import_module(_LIBRARIES[name or backend_name()])


def accelerators() -> list[str]:
    """Names of the GPUs/TPUs the current backend sees (empty on CPU)."""
    name = backend_name()
    lib = _library(name)
    if name == "tensorflow":
        return [d.name for d in lib.config.list_physical_devices() if d.device_type != "CPU"]
    if name == "jax":
        return [getattr(d, "device_kind", str(d)) for d in lib.devices() if d.platform != "cpu"]
    if name == "torch":
        if lib.cuda.is_available():
            return [lib.cuda.get_device_name(i) for i in range(lib.cuda.device_count())]
        return []
    return []


def device_description() -> str:
    """What the run used, e.g. 'NVIDIA H200' or 'CPU (x86_64, 2 cores)'."""
    found = accelerators()
    if found:
        return found[0] if len(set(found)) == 1 else ", ".join(found)
    import os

    return f"CPU ({platform.machine()}, {os.cpu_count()} cores)"


def cpu_name() -> str:
    """The CPU's model name (timings differ up to ~5x between CPUs), e.g. 'AMD EPYC'."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> dict[str, str]:
    import numpy

    return {"python": platform.python_version(), "keras": keras.__version__,
            backend_name(): getattr(_library(), "__version__", "?"), "numpy": numpy.__version__}


def prepare_steps(model, steps: int, batch_size: int) -> tuple[int, int]:
    """Arrange for one compiled call to run ``steps`` training steps of ``batch_size``.

    Returns (``steps_per_execution`` for ``compile``, batch size for ``fit``).
    TensorFlow: Keras runs the steps in one ``tf.function`` loop. JAX: Keras' own loop
    calls the compiled step once per batch from Python, so it cannot save the per-step
    dispatch; here ``fit`` gets batches of ``steps * batch_size`` and the model's train step
    runs over them in ``batch_size`` pieces inside one compiled program: the same updates
    in the same order (compilation takes about ``steps`` times longer).
    PyTorch: Keras runs one step per call (it refuses more), so a larger value falls
    back to 1 with a warning: a speed setting should not stop a run.
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps_per_execution must be a positive integer, got {steps!r}")
    name = backend_name()
    if steps == 1:
        return 1, batch_size
    if name == "torch":
        warnings.warn(f"steps_per_execution={steps} is not supported on the torch backend; using 1",
                      stacklevel=3)
        return 1, batch_size
    if name == "jax":
        _fuse_train_steps(model, batch_size)
        return 1, steps * batch_size
    return steps, batch_size


def _fuse_train_steps(model, batch_size: int) -> None:
    """Make the JAX ``train_step`` cut its batch into ``batch_size`` pieces, one step each.

    A Python loop, so the compiled program holds the steps one after another as straight-
    line code. ``jax.lax.scan`` would make it a while loop: on XLA:CPU that ran 10-12x
    slower and rounded differently (also for one iteration: ``unroll=True`` of length 1 is
    still a loop). Unrolled, the losses equal the one-step-per-call run's to the last bit.
    """
    single_step = model.train_step

    def train_steps(state, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if sample_weight is not None:
            raise ValueError("fused train steps do not take sample weights")
        logs = None
        for start in range(0, x.shape[0], batch_size):  # the last piece may be partial
            logs, state = single_step(state, (x[start:start + batch_size], y[start:start + batch_size]))
        return logs, state  # metrics are running means over the epoch: the last logs are the total

    model.train_step = train_steps


def usable_jit_compile(requested: bool | str) -> bool | str:
    """On PyTorch, ``jit_compile=True`` means torch.compile, which failed on these models
    (torch 2.13: the backward of MaxPooling2D(padding='same') hit a wrong meta kernel for
    replication_pad2d). A speed setting should not stop a run, so it falls back to eager."""
    if requested is True and backend_name() == "torch":
        warnings.warn("jit_compile=True (torch.compile) fails on these models with the torch backend; "
                      "running eagerly", stacklevel=3)
        return False
    return requested
