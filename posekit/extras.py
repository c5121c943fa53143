"""Optional dependencies: one import point that names the extra to install, in one line.

The base install (`pip install posekit`) runs the CPU default (`infer`, `track`) with numpy,
OpenCV, ONNX Runtime, onnx, lap and tqdm. The rest are extras:

    eval      pycocotools                     COCO AP (`posekit eval`, `bench` AP columns)
    track     motmetrics, scipy               tracking metrics (`posekit eval-track`, `bench --stage track`)
    gpu       torch, onnxslim                 torch networks: GPU pipeline, Inductor, export from torch
    tensorrt  tensorrt                        TensorRT engines
    bench     matplotlib, nvidia-ml-py, supervision   plots, GPU utilisation, the ByteTrack baseline
    serve     fastapi, uvicorn, python-multipart, prometheus-client   `posekit serve` (HTTP API)
    ray       ray[data] (with pyarrow, pandas)    `posekit infer --ray` (batch inference on a Ray cluster)
    dev       all of the above but tensorrt, and pytest
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

# module -> the extra that installs it
EXTRA_OF = {
    "pycocotools": "eval",
    "motmetrics": "track",
    "scipy": "track",
    "torch": "gpu",
    "onnxslim": "gpu",
    "tensorrt": "tensorrt",
    "matplotlib": "bench",
    "supervision": "bench",
    "fastapi": "serve",
    "starlette": "serve",
    "uvicorn": "serve",
    "multipart": "serve",
    "prometheus_client": "serve",
    "ray": "ray",
    "pyarrow": "ray",
}


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message says which extra brings it."""


def require(module: str, what: str) -> ModuleType:
    """Import `module`, or fail in one line naming what needs it and the pip command that installs it."""
    try:
        return import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        extra = EXTRA_OF.get(top)
        hint = f"pip install 'posekit[{extra}]'" if extra else f"pip install {top}"
        raise MissingExtra(f"{what} needs {top}, which is not installed ({exc}); install it with: {hint}") from exc
