"""ONNX Runtime engine: the CPU default, and the CUDA / TensorRT execution providers where installed."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from posekit.engines import TensorSpec, check_inputs

log = logging.getLogger(__name__)

_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}

_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(uint8)": "uint8",
}


def _device_kind(device: str) -> str:
    return "cuda" if device.startswith("cuda") else device


class OnnxRuntimeEngine:
    """Runs an ONNX file (path or bytes) with ONNX Runtime.

    threads: intra-op threads; None lets ONNX Runtime choose (all physical cores).
    """

    backend = "onnxruntime"

    def __init__(self, model: str | os.PathLike | bytes, device: str = "cpu", threads: int | None = None,
                 providers: list[str] | None = None) -> None:
        kind = _device_kind(device)
        if providers is None:
            try:
                providers = _PROVIDERS[kind]
            except KeyError:
                raise ValueError(f"unknown device {device!r} for onnxruntime; use one of {sorted(_PROVIDERS)}") from None
        available = ort.get_available_providers()
        missing = [p for p in providers if p not in available]
        if providers and providers[0] in missing:
            raise RuntimeError(
                f"onnxruntime here offers {available}, not {providers[0]} needed for device {device!r}; "
                "install onnxruntime-gpu for CUDA"
            )
        providers = [p for p in providers if p in available]
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        source = bytes(model) if isinstance(model, (bytes, bytearray)) else str(Path(model))
        self.path = None if isinstance(model, (bytes, bytearray)) else Path(model)
        self.session = ort.InferenceSession(source, sess_options=options, providers=providers)
        self.device = device
        self.inputs = tuple(
            TensorSpec(i.name, tuple(d if isinstance(d, int) else None for d in i.shape), _DTYPES.get(i.type, i.type))
            for i in self.session.get_inputs()
        )
        self.output_names = tuple(o.name for o in self.session.get_outputs())
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)

    def __call__(self, *arrays: np.ndarray) -> list[np.ndarray]:
        check_inputs(self.inputs, arrays)
        feeds = {spec.name: np.asarray(a, dtype=spec.dtype) for spec, a in zip(self.inputs, arrays)}
        return self.session.run(list(self.output_names), feeds)

    def __repr__(self) -> str:
        return f"OnnxRuntimeEngine({self.path or '<bytes>'}, device={self.device!r})"
