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


def versions() -> dict[str, str]:
    import numpy

    return {"python": platform.python_version(), "keras": keras.__version__,
            backend_name(): getattr(_library(), "__version__", "?"), "numpy": numpy.__version__}


def usable_steps_per_execution(requested: int) -> int:
    """Keras' PyTorch trainer runs one step per call; the other backends take any number.

    A speed setting should not stop a run, so on PyTorch a larger value falls back to 1."""
    if requested < 1:
        raise ValueError(f"steps_per_execution must be at least 1, got {requested}")
    if requested > 1 and backend_name() == "torch":
        warnings.warn(f"steps_per_execution={requested} is not supported on the torch backend; using 1",
                      stacklevel=3)
        return 1
    return requested


def usable_jit_compile(requested: bool | str) -> bool | str:
    """On PyTorch, ``jit_compile=True`` means torch.compile, which failed on these models
    (torch 2.13: the backward of MaxPooling2D(padding='same') hit a wrong meta kernel for
    replication_pad2d). A speed setting should not stop a run, so it falls back to eager."""
    if requested is True and backend_name() == "torch":
        warnings.warn("jit_compile=True (torch.compile) fails on these models with the torch backend; "
                      "running eagerly", stacklevel=3)
        return False
    return requested
