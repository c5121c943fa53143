"""INT8 on the CPU: ONNX Runtime static quantisation calibrated on real person crops and frames.

The float model is first pre-processed (`quant_pre_process`: shape inference and graph
optimisation), then `quantize_static` writes a QDQ (or QOperator) model with per-channel int8
weights, its activation ranges measured on real inputs from `posekit.calibration`. The output is
written under a temporary name and renamed, so an interrupted run leaves no half model.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QuantOptions:
    """The knobs of `quantize_static` that matter for speed and accuracy on the CPU.

    quant_format:    "QDQ" (QuantizeLinear/DequantizeLinear pairs, fused by ORT) or "QOperator"
    per_channel:     per-output-channel weight scales (better accuracy for depthwise convs)
    activation_type: "uint8" or "int8" (u8s8 vs s8s8); weights are int8 unless weight_type says so
    reduce_range:    7-bit weights, for CPUs without VNNI where u8s8 may saturate
    op_types:        only these op types are quantised (None: ORT's default set)
    exclude_nodes:   node names left in float (e.g. the first conv and the output head)
    calibrate:       "MinMax", "Entropy" or "Percentile"
    float_outputs:   drop the QuantizeLinear/DequantizeLinear pair in front of each graph output,
                     so outputs (e.g. sigmoid heatmaps, whose small values rank keypoints) stay float
    """

    quant_format: str = "QDQ"
    per_channel: bool = True
    activation_type: str = "uint8"
    weight_type: str = "int8"
    reduce_range: bool = False
    op_types: tuple[str, ...] | None = ("Conv", "MatMul")
    exclude_nodes: tuple[str, ...] = ()
    calibrate: str = "MinMax"
    float_outputs: bool = False
    extra: dict = field(default_factory=dict)

    def label(self) -> str:
        parts = [self.quant_format, "per-channel" if self.per_channel else "per-tensor",
                 f"{self.activation_type[0]}{self.activation_type[-1]}{self.weight_type[0]}{self.weight_type[-1]}"
                 .replace("u8i8", "u8s8").replace("i8i8", "s8s8").replace("u8u8", "u8u8"),
                 self.calibrate]
        if self.reduce_range:
            parts.append("reduce-range")
        if self.exclude_nodes:
            parts.append(f"exclude {len(self.exclude_nodes)} nodes")
        if self.op_types:
            parts.append("+".join(self.op_types))
        if self.float_outputs:
            parts.append("float outputs")
        if self.extra:
            parts.append(", ".join(f"{k}={v}" for k, v in sorted(self.extra.items())))
        return ", ".join(parts)


class ArrayCalibrationReader:
    """An ONNX Runtime `CalibrationDataReader` over preprocessed arrays, one batch per call."""

    def __init__(self, input_name: str, inputs: np.ndarray, batch_size: int = 1) -> None:
        self.input_name = input_name
        self.inputs = inputs
        self.batch_size = batch_size
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self.inputs):
            return None
        batch = self.inputs[self._next : self._next + self.batch_size]
        self._next += self.batch_size
        return {self.input_name: batch}

    def rewind(self) -> None:
        self._next = 0


MIN_OPSET = 13  # per-channel QuantizeLinear/DequantizeLinear need the `axis` attribute (opset 13)


def upgrade_opset(model_path: Path, out_path: Path) -> Path:
    """`model_path` itself when its default-domain opset is >= 13; else a converted copy at `out_path`."""
    import onnx
    from onnx import version_converter

    model = onnx.load(str(model_path))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), MIN_OPSET)
    if opset >= MIN_OPSET:
        return model_path
    log.info("%s: converting opset %d -> %d for per-channel quantisation", model_path, opset, MIN_OPSET)
    onnx.save(version_converter.convert_version(model, MIN_OPSET), str(out_path))
    return out_path


def quantize_onnx(model_path: str | os.PathLike, out_path: str | os.PathLike, calibration: np.ndarray,
                  options: QuantOptions = QuantOptions(), input_name: str | None = None,
                  preprocess: bool = True) -> Path:
    """Quantise an ONNX model to INT8 with activation ranges from `calibration` (real inputs).

    calibration: (N, ...) arrays already in the network's input layout and dtype.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model_path, out_path = Path(model_path), Path(out_path)
    if not model_path.is_file():
        raise FileNotFoundError(f"no ONNX model at {model_path}")
    if len(calibration) == 0:
        raise ValueError(f"{model_path}: expected at least one calibration input, got none")
    if input_name is None:
        graph = onnx.load(str(model_path), load_external_data=False).graph
        initialisers = {i.name for i in graph.initializer}
        names = [i.name for i in graph.input if i.name not in initialisers]
        if len(names) != 1:
            raise ValueError(f"{model_path}: expected one input to calibrate, found {names}")
        input_name = names[0]
    types = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=".quant-") as tmp:
        source = upgrade_opset(model_path, Path(tmp) / "opset13.onnx")
        if preprocess:
            preprocessed = Path(tmp) / "preprocessed.onnx"
            quant_pre_process(str(source), str(preprocessed), skip_symbolic_shape=True)
            source = preprocessed
        partial = Path(tmp) / "int8.onnx"
        quantize_static(
            str(source), str(partial),
            ArrayCalibrationReader(input_name, calibration),
            quant_format=QuantFormat.QDQ if options.quant_format == "QDQ" else QuantFormat.QOperator,
            per_channel=options.per_channel,
            reduce_range=options.reduce_range,
            activation_type=types[options.activation_type],
            weight_type=types[options.weight_type],
            op_types_to_quantize=list(options.op_types) if options.op_types else None,
            nodes_to_exclude=list(options.exclude_nodes),
            calibrate_method=getattr(CalibrationMethod, options.calibrate),
            extra_options=dict(options.extra),
        )
        if options.float_outputs:
            onnx.save(float_outputs(onnx.load(str(partial))), str(partial))
        os.replace(partial, out_path)
    log.info("quantised %s -> %s (%s)", model_path, out_path, options.label())
    return out_path


def float_outputs(model):
    """`model` (a QDQ ModelProto, changed in place) without the QuantizeLinear -> DequantizeLinear
    pair that feeds each graph output: the output is then the float tensor the pair rounded."""
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    dropped = []
    for output in graph.output:
        dq = producer.get(output.name)
        q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        if q is None or q.op_type != "QuantizeLinear" or consumers.get(q.output[0], 0) != 1:
            continue
        source = producer.get(q.input[0])
        if source is None or consumers.get(q.input[0], 0) != 1:
            continue  # a graph input, or a float tensor others read too: leave the pair
        source.output[list(source.output).index(q.input[0])] = output.name
        dropped += [q, dq]
    for node in dropped:
        graph.node.remove(node)
    return model


def output_errors(reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray]) -> list[dict]:
    """Per-output error of `candidate` against `reference`: max/mean abs and relative to the scale."""
    rows = []
    for i, (ref, out) in enumerate(zip(reference, candidate)):
        ref = np.asarray(ref, np.float64)
        out = np.asarray(out, np.float64)
        if ref.shape != out.shape:
            raise ValueError(f"output {i}: reference shape {ref.shape}, candidate {out.shape}")
        diff = np.abs(ref - out)
        scale = float(np.abs(ref).max()) or 1.0
        rows.append({"output": i, "max_abs": float(diff.max(initial=0)), "mean_abs": float(diff.mean()) if diff.size else 0.0,
                     "max_rel": float(diff.max(initial=0)) / scale, "scale": scale})
    return rows
