"""Torch eager engine: the reference every compiled engine is checked against.

Takes a torch module (or a registry model name, built with `posekit.models.build`), runs it on
`device` in fp32, fp16 or bf16. Called with numpy arrays it returns numpy float32 arrays; called
with torch tensors it returns torch tensors on the engine's device (in the engine's dtype), so a
GPU pipeline never copies through the host.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
import torch

from posekit.engines import TensorSpec, check_inputs

log = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def torch_dtype(precision: str) -> torch.dtype:
    try:
        return DTYPES[precision]
    except KeyError:
        raise ValueError(f"precision {precision!r} is not a torch floating precision; use one of {sorted(DTYPES)}") from None


def resolve_module(artefact: Any) -> torch.nn.Module:
    """A torch module from a module or a registry model name."""
    if isinstance(artefact, torch.nn.Module):
        return artefact
    if isinstance(artefact, str):
        from posekit.models import build

        return build(artefact)
    raise TypeError(f"expected a torch.nn.Module or a registry model name, got {type(artefact).__name__}")


def to_device_inputs(arrays: Sequence[Any], device: torch.device, dtype: torch.dtype,
                     channels_last: bool = False) -> tuple[list[torch.Tensor], bool]:
    """Move inputs to `device`; floating ones to `dtype`. Returns (tensors, whether they came as numpy)."""
    from_numpy = any(isinstance(a, np.ndarray) for a in arrays)
    tensors = []
    for a in arrays:
        t = torch.from_numpy(np.ascontiguousarray(a)) if isinstance(a, np.ndarray) else a
        t = t.to(device, non_blocking=True)
        if t.is_floating_point():
            t = t.to(dtype)
        if channels_last and t.dim() == 4:
            t = t.contiguous(memory_format=torch.channels_last)
        tensors.append(t)
    return tensors, from_numpy


def as_output_list(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return list(out.values())
    return list(out)


def to_numpy(tensors: Sequence[torch.Tensor]) -> list[np.ndarray]:
    return [t.detach().float().cpu().numpy() if t.is_floating_point() else t.detach().cpu().numpy() for t in tensors]


class TorchEagerEngine:
    """A torch module run eagerly.

    module:    a torch.nn.Module or a registry model name
    device:    "cpu", "cuda", "cuda:1", ...
    precision: "fp32", "fp16" or "bf16": weights and floating inputs are cast to it
    inputs:    the input specs, checked on each numpy call (optional: a module does not know them)
    """

    backend = "torch"

    def __init__(self, module: Any, device: str = "cpu", precision: str = "fp32", channels_last: bool = False,
                 inputs: Sequence[TensorSpec] = (), output_names: Sequence[str] = (),
                 metadata: dict[str, str] | None = None) -> None:
        self.device = torch.device(device)
        self.precision = precision
        self.dtype = torch_dtype(precision)
        self.channels_last = channels_last
        module = resolve_module(module).eval().to(self.device, self.dtype)
        if channels_last:
            module = module.to(memory_format=torch.channels_last)
        self.module = module
        self.inputs = tuple(inputs)
        self.output_names = tuple(output_names)
        self.metadata = dict(metadata or {})

    def forward(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        with torch.inference_mode():
            return as_output_list(self.module(*tensors))

    def __call__(self, *arrays: Any) -> list[Any]:
        if self.inputs and all(isinstance(a, np.ndarray) for a in arrays):
            check_inputs(self.inputs, arrays)
        tensors, from_numpy = to_device_inputs(arrays, self.device, self.dtype, self.channels_last)
        out = self.forward(tensors)
        return to_numpy(out) if from_numpy else out

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self.module).__name__}, device={str(self.device)!r}, precision={self.precision!r})"
