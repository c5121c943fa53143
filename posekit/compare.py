"""Before/after accuracy of engines and precisions: per-output error against a reference engine on
real inputs (person crops for a pose model, letterboxed frames for a detector), decoded keypoint
error in input pixels for MoveNet, and keypoint AP on annotated images when the pipeline runs.

Every engine is fed the same arrays in the network's own layout: (B, 3, H, W) float32 pixels in
the registry's colour order and normalisation (what the torch modules and their ONNX take).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from posekit import registry
from posekit.engines import TensorSpec

log = logging.getLogger(__name__)


def network_input_spec(model: str) -> TensorSpec:
    h, w = registry.get(model).input_size
    return TensorSpec("images", (None, 3, h, w), "float32")


def make_engine(model: str, backend: str, precision: str = "fp32", device: str = "cpu",
                batch_sizes: Sequence[int] = (1, 8, 32), **options: Any):
    """One engine for `model`, whatever the backend: torch modules for torch/inductor, the float
    source ONNX for onnxruntime fp32, and cached builds (posekit.build) for the rest."""
    from posekit.engines import engine_class

    cls = engine_class(backend)
    if backend in ("torch", "inductor"):
        from posekit.models import build as build_module

        if backend == "inductor":
            options.setdefault("batch_sizes", batch_sizes)
        module = build_module(model)
        options.setdefault("output_names", getattr(sys.modules[type(module).__module__], "OUTPUT_NAMES", ()))
        return cls(module, device=device, precision=precision, **options)
    if backend == "onnxruntime" and precision == "fp32":
        from posekit.build import onnxruntime_source

        return cls(onnxruntime_source(model), device=device, **options)
    from posekit.build import load

    low, high = min(batch_sizes), max(batch_sizes)
    return load(model, backend, precision, (low, min(max(8, low), high), high), device, **options)


def real_inputs(model: str, annotations: str | os.PathLike, limit: int = 32) -> np.ndarray:
    from posekit.calibration import calibration_inputs

    return calibration_inputs(registry.get(model), network_input_spec(model), annotations, limit)


def run_batched(engine: Any, x: np.ndarray, batch: int) -> list[np.ndarray]:
    parts = [engine(x[i : i + batch]) for i in range(0, len(x), batch)]
    return [np.concatenate([p[j] for p in parts]) for j in range(len(parts[0]))]


def _keypoint_error(model: str, reference: list[np.ndarray], outputs: list[np.ndarray]) -> dict[str, float]:
    """Decoded MoveNet keypoints: distance in input pixels from the reference's, where it is confident."""
    if registry.get(model).family != "movenet":
        return {}
    from posekit.ops.movenet import decode_movenet

    ref_k, ref_s = decode_movenet(*reference)
    out_k, out_s = decode_movenet(*outputs)
    confident = ref_s > 0.3
    dist = np.linalg.norm(ref_k - out_k, axis=-1)[confident]
    return {"kp_px_median": float(np.median(dist)) if dist.size else 0.0,
            "kp_px_p95": float(np.percentile(dist, 95)) if dist.size else 0.0,
            "kp_within_2px": float((dist <= 2).mean()) if dist.size else 1.0,
            "score_max_abs": float(np.abs(ref_s - out_s).max())}


def compare_engines(model: str, engines: Sequence[tuple[str, str]], annotations: str | os.PathLike,
                    device: str = "cpu", limit: int = 32, batch: int = 8, inputs: np.ndarray | None = None) -> list[dict]:
    """Per-output error of each (backend, precision) against the first one, on real inputs.

    inputs: the network inputs to use instead of cutting them from `annotations`.

    Rows: backend, precision, output, max_abs, mean_abs, max_rel (max abs / the reference
    output's largest magnitude), and for MoveNet the decoded keypoint error in input pixels.
    """
    from posekit.quantize import output_errors

    if not engines:
        raise ValueError("expected at least one backend:precision to compare")
    x = real_inputs(model, annotations, limit) if inputs is None else inputs
    names: list[str] = []
    reference: list[np.ndarray] | None = None
    rows = []
    for backend, precision in engines:
        engine = make_engine(model, backend, precision, device, batch_sizes=(1, batch))
        outputs = run_batched(engine, x, batch)
        names = names or list(getattr(engine, "output_names", ())) or [str(i) for i in range(len(outputs))]
        if reference is None:
            reference = outputs
        extra = _keypoint_error(model, reference, outputs)
        for err in output_errors(reference, outputs):
            name = names[err["output"]] if err["output"] < len(names) else str(err["output"])
            rows.append({"model": model, "backend": backend, "precision": precision, "inputs": len(x),
                         "output": name, **{k: v for k, v in err.items() if k != "output"}, **extra})
    return rows


class EnginePoseModel:
    """A MoveNet engine as PoseEstimator's pose model: ``model(crops BGR uint8 NHWC) -> (keypoints, scores)``."""

    max_batch = None

    def __init__(self, model: str, engine: Any) -> None:
        self.spec = registry.get(model)
        self.engine = engine
        self.input_size = self.spec.input_size
        self.tensor = network_input_spec(model)

    def __call__(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from posekit.calibration import to_network_input
        from posekit.ops.movenet import decode_movenet

        if len(crops) == 0:
            return np.zeros((0, 17, 2), np.float32), np.zeros((0, 17), np.float32)
        return decode_movenet(*self.engine(to_network_input(crops, self.spec, self.tensor)))


def engine_ap(model: str, backend: str, precision: str, annotations: str | os.PathLike, device: str = "cpu",
              det: str = "rtmdet-nano-person") -> dict[str, float]:
    """Keypoint AP on the annotated images with this pose engine (detector boxes and GT boxes)."""
    from posekit.evaluate import evaluate
    from posekit.pipeline import PoseEstimator

    engine = make_engine(model, backend, precision, device)
    estimator = PoseEstimator(det=det, pose=EnginePoseModel(model, engine), workers=1)
    annotations = Path(annotations)
    report = evaluate(annotations, annotations.parent / "images", estimator)
    return {"AP": report["detector"]["AP"], "AP50": report["detector"]["AP50"], "AP_gt_boxes": report["gt"]["AP"],
            "images": report["images"]}


def format_table(rows: Sequence[dict], columns: Sequence[str]) -> str:
    """A plain aligned text table of `columns` from `rows` (floats to 4 significant digits)."""
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return "-" if v is None else str(v)

    table = [list(columns)] + [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table)
