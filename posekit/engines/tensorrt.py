"""Native TensorRT engine, through the `tensorrt` Python API (TensorRT 10 names).

Building follows NVIDIA's developer guide: an explicit-batch network filled by the ONNX parser,
a builder config with FP16 and/or INT8 (an `IInt8EntropyCalibrator2` fed real person crops), one
optimisation profile min/opt/max over the batch axis, a timing cache file reused across builds,
and the serialised plan written atomically. Running uses torch CUDA tensors for device memory
(no pycuda): `execute_async_v3` on torch's current stream.

Engines are called with numpy arrays (outputs come back as numpy float32) or torch CUDA tensors
(outputs stay on the GPU as torch tensors). Needs `pip install tensorrt` and a CUDA device.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import tensorrt as trt

from posekit.engines import TensorSpec

log = logging.getLogger(__name__)

_LOGGER = trt.Logger(trt.Logger.WARNING)


def _torch():
    import torch

    return torch


class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
    """Feeds calibration batches (numpy, already preprocessed as the network expects) to TensorRT.

    batches:    an iterable of arrays of shape (batch_size, ...) for the network's one input
    cache_path: where the calibration table is read from / written to (so a rebuild skips it)
    """

    def __init__(self, batches: Iterable[np.ndarray], batch_size: int, cache_path: str | os.PathLike | None = None):
        trt.IInt8EntropyCalibrator2.__init__(self)
        self.batches = iter(batches)
        self.batch_size = batch_size
        self.cache_path = Path(cache_path) if cache_path else None
        self._device_batch = None  # kept alive until the next get_batch: TensorRT reads it

    def get_batch_size(self) -> int:
        return self.batch_size

    def get_batch(self, names: list[str]) -> list[int] | None:
        torch = _torch()
        try:
            batch = next(self.batches)
        except StopIteration:
            return None
        if batch.shape[0] != self.batch_size:
            log.warning("calibration batch of %d, expected %d; skipped", batch.shape[0], self.batch_size)
            return self.get_batch(names)
        self._device_batch = torch.from_numpy(np.ascontiguousarray(batch, np.float32)).cuda()
        return [int(self._device_batch.data_ptr())]

    def read_calibration_cache(self) -> bytes | None:
        if self.cache_path is not None and self.cache_path.is_file():
            return self.cache_path.read_bytes()
        return None

    def write_calibration_cache(self, cache: Any) -> None:
        if self.cache_path is not None:
            _atomic_write(self.cache_path, bytes(cache))


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def build_engine(onnx_path: str | os.PathLike, plan_path: str | os.PathLike, precision: str = "fp16",
                 batch: tuple[int, int, int] = (1, 16, 64), calibration: Iterable[np.ndarray] | None = None,
                 calibration_batch: int = 8, timing_cache: str | os.PathLike | None = None,
                 workspace_bytes: int = 4 << 30) -> Path:
    """Build and serialise a TensorRT plan from an ONNX file with a dynamic batch axis.

    precision:   "fp32", "fp16", "bf16" or "int8" (INT8 keeps FP16 on for layers without INT8 kernels)
    batch:       (min, opt, max) batch sizes of the optimisation profile
    calibration: batches for INT8 (required for "int8")
    """
    onnx_path, plan_path = Path(onnx_path), Path(plan_path)
    builder = trt.Builder(_LOGGER)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, _LOGGER)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ValueError(f"{onnx_path}: TensorRT's ONNX parser failed: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "bf16":
        config.set_flag(trt.BuilderFlag.BF16)
    elif precision != "fp32":
        raise ValueError(f"unknown precision {precision!r}; use fp32, fp16, bf16 or int8")

    profile = builder.create_optimization_profile()
    low, opt, high = batch
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        rest = tuple(tensor.shape)[1:]
        if any(d < 0 for d in rest):
            raise ValueError(f"{onnx_path}: input {tensor.name!r} has dynamic non-batch dims {tuple(tensor.shape)}")
        profile.set_shape(tensor.name, (low, *rest), (opt, *rest), (high, *rest))
    config.add_optimization_profile(profile)

    calibrator = None
    if precision == "int8":
        if calibration is None:
            raise ValueError("INT8 needs calibration batches (real person crops, preprocessed)")
        config.set_flag(trt.BuilderFlag.INT8)
        calib_profile = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            shape = (calibration_batch, *tuple(tensor.shape)[1:])
            calib_profile.set_shape(tensor.name, shape, shape, shape)
        config.set_calibration_profile(calib_profile)
        calibrator = EntropyCalibrator(calibration, calibration_batch, plan_path.with_suffix(".calib"))
        config.int8_calibrator = calibrator

    cache_file = Path(timing_cache) if timing_cache else None
    cache_bytes = cache_file.read_bytes() if cache_file is not None and cache_file.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} ({precision}, batch {batch})")
    if cache_file is not None:
        _atomic_write(cache_file, bytes(config.get_timing_cache().serialize()))
    _atomic_write(plan_path, bytes(serialized))
    return plan_path


_NP_OF_TRT = {
    trt.float32: np.float32,
    trt.float16: np.float16,
    trt.int32: np.int32,
    trt.int8: np.int8,
    trt.bool: np.bool_,
}


class TensorRTEngine:
    """A serialised TensorRT plan, deserialised and run on a CUDA device."""

    backend = "tensorrt"

    def __init__(self, plan: str | os.PathLike | bytes, device: str = "cuda", precision: str = "",
                 metadata: dict[str, str] | None = None) -> None:
        torch = _torch()
        if not device.startswith("cuda"):
            raise ValueError(f"TensorRT runs on a CUDA device, not {device!r}")
        self.device = torch.device(device)
        self.precision = precision
        data = bytes(plan) if isinstance(plan, (bytes, bytearray)) else Path(plan).read_bytes()
        self.path = None if isinstance(plan, (bytes, bytearray)) else Path(plan)
        with torch.cuda.device(self.device):
            self.runtime = trt.Runtime(_LOGGER)
            self.engine = self.runtime.deserialize_cuda_engine(data)
            if self.engine is None:
                raise ValueError(f"{self.path or '<bytes>'}: not a TensorRT plan for this TensorRT/GPU")
            self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.inputs = tuple(
            TensorSpec(n, tuple(d if d >= 0 else None for d in self.engine.get_tensor_shape(n)),
                       np.dtype(_NP_OF_TRT[self.engine.get_tensor_dtype(n)]).name)
            for n in names if is_input[n]
        )
        self.output_names = tuple(n for n in names if not is_input[n])
        self.metadata = dict(metadata or {})

    def __call__(self, *arrays: Any) -> list[Any]:
        torch = _torch()
        if len(arrays) != len(self.inputs):
            raise ValueError(f"expected {len(self.inputs)} inputs, got {len(arrays)}")
        from_numpy = any(isinstance(a, np.ndarray) for a in arrays)
        stream = torch.cuda.current_stream(self.device)
        keep = []
        for spec, a in zip(self.inputs, arrays):
            t = torch.from_numpy(np.ascontiguousarray(a, spec.dtype)) if isinstance(a, np.ndarray) else a
            t = t.to(self.device, getattr(torch, spec.dtype)).contiguous()
            keep.append(t)
            self.context.set_input_shape(spec.name, tuple(t.shape))
            self.context.set_tensor_address(spec.name, t.data_ptr())
        outputs = []
        for name in self.output_names:
            shape = tuple(self.context.get_tensor_shape(name))
            dtype = getattr(torch, np.dtype(_NP_OF_TRT[self.engine.get_tensor_dtype(name)]).name)
            out = torch.empty(shape, dtype=dtype, device=self.device)
            self.context.set_tensor_address(name, out.data_ptr())
            outputs.append(out)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        if from_numpy:
            stream.synchronize()
            return [o.float().cpu().numpy() for o in outputs]
        return outputs

    def synchronize(self) -> None:
        _torch().cuda.synchronize(self.device)

    def __repr__(self) -> str:
        return f"TensorRTEngine({self.path or '<bytes>'}, device={str(self.device)!r})"
