"""Engines: one small protocol, one file per runtime, one lookup to pick the class.

An engine is built from an artefact (an ONNX file, a torch module, a compiled package) and a
device, is called with numpy arrays (or torch tensors, for GPU engines) and returns a list of
output arrays in the artefact's output order. Each runtime is imported lazily.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

# backend name -> (module, class, the pip requirement that provides its runtime)
BACKENDS: dict[str, tuple[str, str, str]] = {
    "onnxruntime": ("posekit.engines.onnxruntime", "OnnxRuntimeEngine", "onnxruntime"),
    "torch": ("posekit.engines.torch_eager", "TorchEagerEngine", "torch"),
    "inductor": ("posekit.engines.inductor", "InductorEngine", "torch"),
    "aotinductor": ("posekit.engines.inductor", "AOTInductorEngine", "torch"),
    "tensorrt": ("posekit.engines.tensorrt", "TensorRTEngine", "tensorrt"),
}


class BackendUnavailable(ImportError):
    """The runtime a backend needs is not installed."""


@dataclass(frozen=True)
class TensorSpec:
    """One input of an engine: its name, shape (None for a dynamic axis) and dtype."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str = "float32"


@runtime_checkable
class Engine(Protocol):
    backend: str
    inputs: tuple[TensorSpec, ...]
    output_names: tuple[str, ...]
    metadata: dict[str, str]

    def __call__(self, *arrays: Any) -> list[Any]: ...


def engine_class(backend: str) -> type:
    """The engine class for `backend`; a clear error when it is unknown or not installed."""
    try:
        module_name, class_name, requirement = BACKENDS[backend]
    except KeyError:
        raise ValueError(f"unknown backend {backend!r}; known: {', '.join(sorted(BACKENDS))}") from None
    try:
        module = import_module(module_name)
    except ImportError as exc:
        raise BackendUnavailable(
            f"backend {backend!r} needs the package {requirement!r}, which is not installed "
            f"({exc}); install it with `pip install {requirement}`"
        ) from exc
    return getattr(module, class_name)


def load_engine(artefact: Any, backend: str = "onnxruntime", device: str = "cpu", **options: Any) -> Engine:
    return engine_class(backend)(artefact, device=device, **options)


def check_inputs(specs: Sequence[TensorSpec], arrays: Sequence[np.ndarray]) -> None:
    """Raise a ValueError naming the input whose rank or static dimension is wrong."""
    if len(arrays) != len(specs):
        raise ValueError(f"expected {len(specs)} inputs ({', '.join(s.name for s in specs)}), got {len(arrays)}")
    for spec, array in zip(specs, arrays):
        shape = tuple(array.shape)
        if len(shape) != len(spec.shape) or any(d is not None and d != s for d, s in zip(spec.shape, shape)):
            raise ValueError(f"input {spec.name!r}: expected shape {spec.shape}, got {shape}")
