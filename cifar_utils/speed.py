"""Speed settings: how fast a run goes.

Every setting here but one leaves the training the same computation (same batches in the
same order, same random draws, float32): on JAX the losses come out bit-identical, on
TensorFlow equal to float rounding (tests/test_speed.py). So they do not name a run: a
finished run is reused whatever its speed settings were. The batches' order is a function
of the run's seed and the epoch on every backend (``batches.epoch_order``), whatever the
settings.

The exception is ``precision``: ``mixed_bfloat16`` computes in bfloat16 (8 bits of
mantissa) with float32 weights, which is another computation with its own numbers, so a
run trained with it is named by it (``runs.identity.plan_run``) and never stands in for a
float32 run. It pays only where the hardware multiplies bfloat16 natively (GPUs, CPUs with
AVX-512 BF16 or AMX) and not on every such CPU: docs/benchmarks.md measures it.
Settings that change the numbers (how often the test set is evaluated) are run
parameters instead (``run_experiment(eval_every=...)``).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields

JIT_CHOICES = ("auto", True, False)
PRECISIONS = ("float32", "mixed_bfloat16")  # Keras dtype policies


@dataclass(frozen=True)
class Speed:
    """The speed levers of ``run_experiment``; the defaults are Keras' own behaviour.

    ``jit_compile``: passed to ``compile`` ("auto", True, False).
    ``steps_per_execution``: training steps per compiled call (see ``backend.prepare_steps``).
    ``eval_batch_size``: batch size for the test-set evaluation (None: the training batch
    size). Larger means fewer calls; metrics are sample-weighted means, so only float
    rounding changes.
    ``data_on_device``: copy the arrays to the accelerator once and cut batches there
    (``batches.EpochBatches(on_device=True)``) instead of copying every batch over.
    ``precision``: the Keras dtype policy the model is built with; ``mixed_bfloat16``
    names the run (see the module's docstring).
    """

    jit_compile: bool | str = "auto"
    steps_per_execution: int = 1
    eval_batch_size: int | None = None
    data_on_device: bool = False
    precision: str = "float32"

    def __post_init__(self):
        if self.jit_compile not in JIT_CHOICES or not isinstance(self.jit_compile, bool | str):
            raise ValueError(f"jit_compile must be 'auto', True or False, got {self.jit_compile!r}")
        if not isinstance(self.steps_per_execution, int) or self.steps_per_execution < 1:
            raise ValueError(f"steps_per_execution must be a positive integer, got {self.steps_per_execution!r}")
        if self.eval_batch_size is not None and (not isinstance(self.eval_batch_size, int)
                                                 or self.eval_batch_size < 1):
            raise ValueError(f"eval_batch_size must be a positive integer or None, got {self.eval_batch_size!r}")
        if not isinstance(self.data_on_device, bool):
            raise ValueError(f"data_on_device must be True or False, got {self.data_on_device!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")

    @classmethod
    def coerce(cls, value: Speed | Mapping | None) -> Speed:
        """Accept a ``Speed``, a dict of its fields (a notebook parameter) or None (defaults)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if not isinstance(value, Mapping):
            raise TypeError(f"speed must be a Speed, a dict or None, got {type(value).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown speed setting(s) {unknown}; known: {sorted(known)}")
        return cls(**value)

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """The settings that differ from Keras' defaults, e.g. 'jit_compile=True, data_on_device'."""
        changed = [f"{k}={v}" if not isinstance(v, bool) or k == "jit_compile" else k
                   for k, v in self.as_dict().items() if v != getattr(Speed(), k)]
        return ", ".join(changed) or "Keras defaults"


def add_speed_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``Speed`` fields as command-line flags (``run_all.sh`` and ``bench/`` share them)."""
    group = parser.add_argument_group("speed settings (the same computation but --precision; see docs/benchmarks.md)")
    group.add_argument("--jit-compile", choices=["auto", "true", "false"], default="auto")
    group.add_argument("--steps-per-execution", type=int, default=1, metavar="N",
                       help="training steps per compiled call (TensorFlow, JAX)")
    group.add_argument("--eval-batch-size", type=int, metavar="N", help="batch size of the test-set evaluation")
    group.add_argument("--data-on-device", action="store_true",
                       help="copy the data to the accelerator once and cut batches there")
    group.add_argument("--precision", choices=PRECISIONS, default="float32",
                       help="mixed_bfloat16: compute in bfloat16 (other numbers: names the run)")


def speed_from_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Speed:
    try:
        return Speed(jit_compile={"auto": "auto", "true": True, "false": False}[args.jit_compile],
                     steps_per_execution=args.steps_per_execution, eval_batch_size=args.eval_batch_size,
                     data_on_device=args.data_on_device, precision=args.precision)
    except ValueError as error:
        parser.error(str(error))


def speed_flags(speed: Speed) -> list[str]:
    """The flags that ``add_speed_arguments`` parses back into ``speed``."""
    flags = ["--jit-compile", str(speed.jit_compile).lower(), "--steps-per-execution", str(speed.steps_per_execution)]
    if speed.eval_batch_size is not None:
        flags += ["--eval-batch-size", str(speed.eval_batch_size)]
    flags += ["--precision", speed.precision] if speed.precision != "float32" else []
    return flags + (["--data-on-device"] if speed.data_on_device else [])
