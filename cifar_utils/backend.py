"""The one place that knows about Keras backends: which one runs, on what device.

Everything else in the package uses the public ``keras`` API only. Each helper imports
its backend library lazily, so a machine with JAX and no TensorFlow works.
"""

from __future__ import annotations

import importlib
import platform

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
