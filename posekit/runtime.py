"""One engine factory: a registry entry on a backend, at a precision, on a device.

    engine = make_engine(registry.get("movenet-thunder"), "onnxruntime", "int8")

torch / inductor run the family's torch network; onnxruntime fp32 runs the float source ONNX;
everything else (INT8, TensorRT plans, AOTInductor packages) comes from `posekit.build`'s cache,
built on first use. Engines never see registry names: they take artefacts or modules.
"""

from __future__ import annotations

import inspect
from typing import Any, Sequence

from posekit.engines import TensorSpec, engine_class
from posekit.registry import ModelSpec


def default_precision(backend: str, device: str = "cpu", model: ModelSpec | str | None = None) -> str:
    """The pose model's precision when none is asked for: int8 for ONNX Runtime on the CPU (the
    cached calibrated build) where `model`'s family says INT8 holds (``Family.cpu_int8``; any
    family when `model` is None), fp32 everywhere else."""
    if backend != "onnxruntime" or device != "cpu":
        return "fp32"
    if model is not None:
        from posekit import families
        from posekit.registry import resolve

        if not families.of(resolve(model)).cpu_int8:
            return "fp32"
    return "int8"


def engine_options(backend: str, threads: int | None) -> dict[str, Any]:
    """`threads` for the engines that take it (ONNX Runtime); the others choose their own."""
    takes = inspect.signature(engine_class(backend)).parameters
    return {"threads": threads} if threads is not None and "threads" in takes else {}


def network_input_spec(spec: ModelSpec | str) -> TensorSpec:
    """The network's input as posekit's exports and torch networks take it: (B, 3, H, W) float32."""
    from posekit.registry import resolve

    h, w = resolve(spec).input_size
    return TensorSpec("images", (None, 3, h, w), "float32")


def make_engine(spec: ModelSpec | str, backend: str, precision: str = "fp32", device: str = "cpu",
                batch_sizes: Sequence[int] = (1, 8, 32), **options: Any) -> Any:
    """One engine for `spec` (a registry entry; a name is looked up), whatever the backend (see
    the module docstring)."""
    from posekit import families
    from posekit.registry import resolve

    spec = resolve(spec)
    cls = engine_class(backend)
    family = families.of(spec)
    if backend in ("torch", "inductor"):
        if backend == "inductor":
            options.setdefault("batch_sizes", batch_sizes)
        options.setdefault("output_names", family.output_names)
        return cls(family.build_torch(spec), device=device, precision=precision, **options)
    if backend == "onnxruntime" and precision == "fp32":
        from posekit.build import onnxruntime_source

        return cls(onnxruntime_source(spec.name), device=device, **options)
    from posekit.build import load

    low, high = min(batch_sizes), max(batch_sizes)
    return load(spec.name, backend, precision, (low, min(max(8, low), high), high), device, **options)
