"""Keypoint AP of INT8 MoveNet variants on the shared COCO images, one row per quantisation option.

  POSEKIT_MODELS=../shared/models python scripts/int8_ap.py --only default,heads-float

Each variant is quantised to a temporary file and run through the full pipeline (the detector's
boxes are computed once and reused, so every row sees the same boxes); AP is reported on detector
boxes and on the annotated boxes. With --diagnose a row also reports the AP of two hybrids: FP32
keypoint locations with the variant's scores, and the variant's locations with FP32 scores, which
says whether the AP is lost in where the keypoints are or in how people are scored and ranked.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from posekit import registry  # noqa: E402
from posekit.build import annotations_path, source_onnx  # noqa: E402
from posekit.calibration import load_person_boxes, to_network_input, _imread  # noqa: E402
from posekit import registry  # noqa: E402
from posekit.compare import _keypoint_error, real_inputs, run_batched  # noqa: E402
from posekit.pose_models import TopDownModel  # noqa: E402
from posekit.runtime import network_input_spec  # noqa: E402
from posekit.engines.onnxruntime import OnnxRuntimeEngine  # noqa: E402
from posekit.quantize import QuantOptions, quantize_onnx  # noqa: E402

MODEL = "movenet-thunder"


class CachedDetector:
    """Wraps a Detector: each image's boxes are computed once (keyed by the pixels)."""

    def __init__(self, detector) -> None:
        self.detector = detector
        self.memo: dict[str, object] = {}

    def __call__(self, image):
        return self.detect_batch([image])[0]

    def detect_batch(self, images):
        out = []
        for image in images:
            key = hashlib.sha1(image.tobytes()).hexdigest()
            if key not in self.memo:
                self.memo[key] = self.detector.detect_batch([image])[0]
            out.append(self.memo[key])
        return out


class Hybrid:
    """Keypoint locations from one pose model, scores from another."""

    def __init__(self, where, scores) -> None:
        self.where, self.scores = where, scores
        self.input_size, self.max_batch = where.input_size, None

    def __call__(self, crops):
        return self.where(crops)[0], self.scores(crops)[1]


def detector_crops(detector, size) -> np.ndarray:
    """(N, h, w, 3) BGR crops of the detector's boxes, as the pipeline cuts them at run time."""
    from posekit.ops.crop import affine_crop

    crops = []
    for path, _ in load_person_boxes(annotations_path()):
        image = _imread(path)
        found = detector.detect_batch([image])[0]
        if len(found):
            crops.append(affine_crop(image, found.boxes, size, 1.25)[0])
    return np.concatenate(crops)


def ap(pose, detector) -> dict:
    from posekit.evaluate import evaluate
    from posekit.pipeline import PoseEstimator

    est = PoseEstimator(det="rtmdet-nano-person", pose=pose, workers=1, threads=2)
    est.detector = detector
    ann = annotations_path()
    report = evaluate(ann, ann.parent / "images", est)
    return {"AP": report["detector"]["AP"], "AP50": report["detector"]["AP50"], "AP_gt": report["gt"]["AP"]}


def speed(fp32, int8, x, calls: int = 150) -> dict:
    """Batch-1 latency, FP32 and INT8 calls alternating; the 10th percentile of each, so that load
    from other processes on a shared machine (which only ever adds time) mostly drops out."""
    import time as clock

    for engine in (fp32, int8):
        for _ in range(5):
            engine(x)
    per = {"fp32": [], "int8": []}
    for _ in range(calls):
        for name, engine in (("fp32", fp32), ("int8", int8)):
            t = clock.perf_counter()
            engine(x)
            per[name].append((clock.perf_counter() - t) * 1000)
    a, b = (float(np.percentile(per[k], 10)) for k in ("fp32", "int8"))
    return {"fp32_ms": a, "int8_ms": b, "speedup": a / b}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--only", help="comma-separated variants (default all)")
    p.add_argument("--speed", action="store_true", help="also time FP32 vs the variant at batch 1, interleaved")
    p.add_argument("--diagnose", action="store_true")
    p.add_argument("--json", help="append rows to this JSON-lines file")
    args = p.parse_args()
    spec = registry.get(MODEL)
    source = source_onnx(MODEL)
    tensor = network_input_spec(MODEL)
    from posekit.detectors import Detector

    detector = CachedDetector(Detector("rtmdet-nano-person", score_threshold=0.2, threads=2))
    gt = real_inputs(MODEL, annotations_path(), limit=1000)
    det = to_network_input(detector_crops(detector, spec.input_size), spec, tensor)
    flips = gt[..., ::-1].copy()  # NCHW: flip along W
    sets = {"gt": gt, "gt+flip": np.concatenate([gt, flips]), "gt+det": np.concatenate([gt, det]),
            "gt+flip+det": np.concatenate([gt, flips, det, det[..., ::-1]])}
    print(f"calibration crops: gt {len(gt)}, detector {len(det)}", flush=True)
    import onnx

    graph = onnx.load(str(source)).graph
    nodes = [n for n in graph.node]
    heads = ("centre", "heatmaps", "regression", "offsets")
    head_nodes = tuple(n.name for n in nodes if any(n.name.startswith(f"/{h}/") for h in heads))
    head_out = tuple(n.name for n in nodes if n.op_type == "Conv" and n.name.endswith("/out/Conv"))
    heat_out = tuple(n for n in head_out if n.startswith("/heatmaps/") or n.startswith("/centre/"))
    first_conv = next(n.name for n in nodes if n.op_type == "Conv")
    stem = tuple(n.name for n in nodes[: nodes.index(next(n for n in nodes if n.name == first_conv)) + 1])
    fpn = tuple(n.name for n in nodes if n.name.startswith(("/lateral.", "/smooth.", "/Resize", "/Add")))
    blocks = sorted({n.name.split("/")[1] for n in nodes if n.name.startswith("/blocks.")}, key=lambda b: int(b.split(".")[1]))
    tail = tuple(n.name for n in nodes if n.name.split("/")[1:2] and n.name.split("/")[1] in blocks[-3:] + ["last"])
    smooth = tuple(n for n in fpn if n.startswith("/smooth."))
    no_out = {"OpTypesToExcludeOutputQuantization": ["Sigmoid", "Conv"]}
    base = dict(op_types=None)
    variants = {
        "default": ("gt", QuantOptions(**base)),
        "head-out-float": ("gt", QuantOptions(**base, exclude_nodes=head_out)),
        "heat-out-float": ("gt", QuantOptions(**base, exclude_nodes=heat_out)),
        "heads-float": ("gt", QuantOptions(**base, exclude_nodes=head_nodes)),
        "stem-float": ("gt", QuantOptions(**base, exclude_nodes=stem)),
        "fpn-float": ("gt", QuantOptions(**base, exclude_nodes=fpn)),
        "heads+stem-float": ("gt", QuantOptions(**base, exclude_nodes=head_nodes + stem)),
        "no-out-quant": ("gt", QuantOptions(**base, extra={"OpTypesToExcludeOutputQuantization": ["Sigmoid", "Conv"]})),
        "fpn+ma": ("gt", QuantOptions(**base, exclude_nodes=fpn, extra={"CalibMovingAverage": True})),
        "fpn+ma+no-out": ("gt", QuantOptions(**base, exclude_nodes=fpn, extra={"CalibMovingAverage": True, **no_out})),
        "ma+no-out": ("gt", QuantOptions(**base, extra={"CalibMovingAverage": True, **no_out})),
        "fpn+no-out": ("gt", QuantOptions(**base, exclude_nodes=fpn, extra=no_out)),
        "smooth+ma+no-out": ("gt", QuantOptions(**base, exclude_nodes=smooth, extra={"CalibMovingAverage": True, **no_out})),
        "ma-det+no-out": ("gt+det", QuantOptions(**base, extra={"CalibMovingAverage": True, **no_out})),
        "fpn+heads+ma": ("gt", QuantOptions(**base, exclude_nodes=fpn + head_nodes, extra={"CalibMovingAverage": True})),
        "fpn+ma-det": ("gt+det", QuantOptions(**base, exclude_nodes=fpn, extra={"CalibMovingAverage": True})),
        "fpn+ma-all": ("gt+flip+det", QuantOptions(**base, exclude_nodes=fpn, extra={"CalibMovingAverage": True})),
        "fpn+tail+ma": ("gt", QuantOptions(**base, exclude_nodes=fpn + tail, extra={"CalibMovingAverage": True})),
        "float-outputs": ("gt", QuantOptions(**base, float_outputs=True)),
        "fpn+fo": ("gt", QuantOptions(**base, exclude_nodes=fpn, float_outputs=True)),
        "fpn+ma+fo": ("gt", QuantOptions(**base, exclude_nodes=fpn, float_outputs=True, extra={"CalibMovingAverage": True})),
        "fpn+head-out+fo": ("gt", QuantOptions(**base, exclude_nodes=fpn + head_out, float_outputs=True)),
        "fpn+heads": ("gt", QuantOptions(**base, exclude_nodes=fpn + head_nodes)),
        "fpn+heads+ma+fo": ("gt", QuantOptions(**base, exclude_nodes=fpn + head_nodes, float_outputs=True, extra={"CalibMovingAverage": True})),
        "fpn+heads+stem+ma": ("gt", QuantOptions(**base, exclude_nodes=fpn + head_nodes + stem, extra={"CalibMovingAverage": True})),
        "fpn+heads+ma-det": ("gt+det", QuantOptions(**base, exclude_nodes=fpn + head_nodes, extra={"CalibMovingAverage": True})),
        "lat+heads+stem+ma": ("gt", QuantOptions(**base, exclude_nodes=tuple(n for n in fpn if n not in smooth) + head_nodes + stem, extra={"CalibMovingAverage": True})),
        "calib-flip": ("gt+flip", QuantOptions(**base)),
        "calib-det": ("gt+det", QuantOptions(**base)),
        "calib-all": ("gt+flip+det", QuantOptions(**base)),
        "percentile": ("gt", QuantOptions(**base, calibrate="Percentile", extra={"CalibPercentile": 99.99})),
        "entropy": ("gt", QuantOptions(**base, calibrate="Entropy")),
        "moving-average": ("gt", QuantOptions(**base, extra={"CalibMovingAverage": True})),
        "act-symmetric": ("gt", QuantOptions(**base, activation_type="int8", extra={"ActivationSymmetric": True})),
        "weight-symmetric": ("gt", QuantOptions(**base, extra={"WeightSymmetric": True})),
        "per-tensor": ("gt", QuantOptions(**base, per_channel=False)),
        "reduce-range": ("gt", QuantOptions(**base, reduce_range=True)),
    }
    wanted = args.only.split(",") if args.only else list(variants)
    fp32 = TopDownModel(OnnxRuntimeEngine(source, threads=2), registry.get(MODEL))
    held = gt
    ref = run_batched(fp32.engine, held, 8)
    rows = []
    if "fp32" in wanted:
        rows.append({"variant": "fp32", **ap(fp32, detector)})
        print(json.dumps(rows[-1]), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for label in wanted:
            if label == "fp32":
                continue
            calib_name, opt = variants[label]
            try:
                t0 = time.perf_counter()
                path = quantize_onnx(source, Path(tmp) / f"{label}.onnx", sets[calib_name], opt)
                q = TopDownModel(OnnxRuntimeEngine(path, threads=2), registry.get(MODEL))
                row = {"variant": label, "calib": f"{calib_name} ({len(sets[calib_name])})",
                       "quantise_s": round(time.perf_counter() - t0, 1), **ap(q, detector),
                       **_keypoint_error(registry.get(MODEL), ref, run_batched(q.engine, held, 8))}
                if args.speed:
                    row.update(speed(fp32.engine, q.engine, held[:1]))
                if args.diagnose:
                    row["AP_fp32_where_int8_scores"] = ap(Hybrid(fp32, q), detector)["AP"]
                    row["AP_int8_where_fp32_scores"] = ap(Hybrid(q, fp32), detector)["AP"]
            except Exception as exc:  # noqa: BLE001 - report the variant that failed and go on
                row = {"variant": label, "error": f"{type(exc).__name__}: {exc}"}
            rows.append(row)
            line = json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})
            print(line, flush=True)
            if args.json:
                with open(args.json, "a") as f:
                    f.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
