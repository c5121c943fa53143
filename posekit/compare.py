"""Before/after accuracy of engines and precisions: per-output error against a reference engine on
real inputs (person crops for a pose model, letterboxed frames for a detector), decoded keypoint
error in input pixels for MoveNet, and keypoint AP on annotated images when the pipeline runs.

Every engine is fed the same arrays in the network's own layout: (B, 3, H, W) float32 pixels in
the registry's colour order and normalisation (what the torch modules and their ONNX take).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from posekit import families, registry
from posekit.runtime import make_engine, network_input_spec

log = logging.getLogger(__name__)


def real_inputs(model: str | registry.ModelSpec, annotations: str | os.PathLike, limit: int = 32) -> np.ndarray:
    from posekit.calibration import calibration_inputs

    spec = registry.resolve(model)
    return calibration_inputs(spec, network_input_spec(spec), annotations, limit)


def run_batched(engine: Any, x: np.ndarray, batch: int) -> list[np.ndarray]:
    parts = [engine(x[i : i + batch]) for i in range(0, len(x), batch)]
    return [np.concatenate([p[j] for p in parts]) for j in range(len(parts[0]))]


def _keypoint_error(spec: registry.ModelSpec, reference: list[np.ndarray], outputs: list[np.ndarray],
                    input_size: tuple[int, int] | None = None) -> dict[str, float]:
    """Decoded keypoints of a top-down model: distance in input pixels from the reference's,
    where it is confident. Outputs are in the family's order."""
    family = families.of(spec)
    if family.kind != "top-down":
        return {}
    size = tuple(input_size or spec.input_size)
    ref_k, ref_s = family.decode(reference, size)
    out_k, out_s = family.decode(outputs, size)
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
    output's largest magnitude), and for top-down pose models the decoded keypoint error in input pixels.
    """
    from posekit.quantize import output_errors

    if not engines:
        raise ValueError("expected at least one backend:precision to compare")
    spec = registry.resolve(model)
    family = families.of(spec)
    x = real_inputs(spec, annotations, limit) if inputs is None else inputs
    names: list[str] = []
    reference: list[np.ndarray] | None = None
    rows = []
    for backend, precision in engines:
        engine = make_engine(spec, backend, precision, device, batch_sizes=(1, batch))
        outputs = family.named(run_batched(engine, x, batch), getattr(engine, "output_names", ()))
        names = names or list(family.output_names)
        if reference is None:
            reference = outputs
        extra = _keypoint_error(spec, reference, outputs, x.shape[2:4])
        for err in output_errors(reference, outputs):
            name = names[err["output"]] if err["output"] < len(names) else str(err["output"])
            rows.append({"model": spec.name, "backend": backend, "precision": precision, "inputs": len(x),
                         "output": name, **{k: v for k, v in err.items() if k != "output"}, **extra})
    return rows


def engine_ap(model: str | registry.ModelSpec, backend: str, precision: str, annotations: str | os.PathLike,
              device: str = "cpu", det: str = "rtmdet-nano-person") -> dict[str, float]:
    """Keypoint AP on the annotated images with this pose engine (detector boxes and GT boxes)."""
    from posekit.evaluate import evaluate
    from posekit.pipeline import PoseEstimator
    from posekit.pose_models import TopDownModel

    spec = registry.resolve(model)
    engine = make_engine(spec, backend, precision, device)
    estimator = PoseEstimator(det=det, pose=TopDownModel(engine, spec), workers=1)
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
