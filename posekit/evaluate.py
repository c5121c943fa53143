"""COCO keypoint AP (pycocotools) of a pose estimator on an annotated image folder, on detected
boxes or on the ground-truth person boxes, plus the detector's person box AP."""

from __future__ import annotations

import contextlib
import io as _io
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from posekit.io import InputError, poses_to_coco, read_image
from posekit.structures import NUM_KEYPOINTS, Poses

log = logging.getLogger(__name__)

STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
BOX_STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def load_annotations(path: str | os.PathLike):
    """A quiet pycocotools COCO object; a clear error when the file is not COCO keypoints JSON."""
    from posekit.extras import require

    COCO = require("pycocotools.coco", "COCO evaluation").COCO
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        if not all(k in data for k in ("images", "annotations", "categories")):
            raise KeyError(f"missing {[k for k in ('images', 'annotations', 'categories') if k not in data]}")
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: expected COCO keypoint annotations (images, annotations, categories), "
                         f"got {type(exc).__name__}: {exc}") from exc
    with contextlib.redirect_stdout(_io.StringIO()):
        coco = COCO()
        coco.dataset = data
        coco.createIndex()
    return coco


def gt_boxes(coco, image_id: int) -> Poses:
    """The non-crowd person boxes of one image as `Poses` (score 1)."""
    anns = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=[image_id], iscrowd=False)) if a.get("category_id", 1) == 1]
    boxes = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                      for a in anns], np.float32).reshape(-1, 4)
    n = len(boxes)
    return Poses(boxes=boxes, box_scores=np.ones(n, np.float32),
                 keypoints=np.zeros((n, NUM_KEYPOINTS, 2), np.float32),
                 keypoint_scores=np.zeros((n, NUM_KEYPOINTS), np.float32))


def coco_eval(coco, results: list[dict], iou_type: str) -> tuple[dict[str, float], str]:
    """Run COCOeval: its summary stats by name (-1 where COCO has nothing to score) and its table."""
    from posekit.extras import require

    COCOeval = require("pycocotools.cocoeval", "COCO evaluation").COCOeval

    names = STAT_NAMES if iou_type == "keypoints" else BOX_STAT_NAMES
    if not results:
        return {n: 0.0 for n in names}, "(no detections)\n"
    with contextlib.redirect_stdout(_io.StringIO()) as text:
        dt = coco.loadRes(results)
        ev = COCOeval(coco, dt, iou_type)
        ev.params.imgIds = sorted({r["image_id"] for r in results} | set(coco.getImgIds()))
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    log.info("COCO %s evaluation:\n%s", iou_type, text.getvalue())
    return {n: float(v) for n, v in zip(names, ev.stats)}, text.getvalue()


def evaluate(ann: str | os.PathLike, images: str | os.PathLike, estimator: Any = None,
             boxes: tuple[str, ...] = ("detector", "gt"), progress: Callable | None = None) -> dict:
    """Keypoint AP of `estimator` (a PoseEstimator; the default models when None).

    boxes: which person boxes to evaluate on: "detector" (the full pipeline), "gt" (the
    annotated non-crowd boxes, to isolate the pose model). Also reports the detector's person
    box AP when "detector" is asked. Returns {"detector": {...}, "gt": {...}, "box": {...},
    "images", "people", "seconds", "tables"}.
    """
    if estimator is None:
        from posekit.pipeline import PoseEstimator

        estimator = PoseEstimator()
    coco = load_annotations(ann)
    folder = Path(images)
    entries = [coco.imgs[i] for i in sorted(coco.getImgIds())]
    decoded = []
    for entry in entries:
        path = folder / entry["file_name"]
        if not path.is_file():
            raise InputError(f"{path}: image {entry['id']} named by {ann} is not in {folder}")
        decoded.append((entry["id"], path.name, read_image(path)))
    report: dict[str, Any] = {"images": len(decoded), "tables": {}}
    if "gt" in boxes and not getattr(estimator, "takes_boxes", True):
        log.info("%s finds people itself (bottom-up): no AP on ground-truth boxes", estimator)
        boxes = tuple(m for m in boxes if m != "gt")
    start = time.perf_counter()
    people = 0
    for mode in boxes:
        if mode not in ("detector", "gt"):
            raise ValueError(f"unknown boxes {mode!r}; use 'detector' or 'gt'")
        results = []
        t0 = time.perf_counter()
        for image_id, name, image in decoded:
            if mode == "gt":
                poses = estimator.estimate_boxes([image], [gt_boxes(coco, image_id)])[0]
            else:
                poses = estimator.estimate_batch([image])[0]
                people += len(poses)
            results.extend(poses_to_coco(poses, image_id))
            if progress is not None:
                progress()
        stats, table = coco_eval(coco, results, "keypoints")
        report[mode] = {**stats, "seconds": round(time.perf_counter() - t0, 3), "people": len(results)}
        report["tables"][mode] = table
        if mode == "detector":
            box_stats, box_table = coco_eval(coco, _box_results(estimator, decoded), "bbox")
            report["box"] = box_stats
            report["tables"]["box"] = box_table
    report["people"] = people
    report["seconds"] = round(time.perf_counter() - start, 3)
    return report


def _box_results(estimator: Any, decoded: list) -> list[dict]:
    out = []
    for image_id, _name, image in decoded:
        found = estimator.detector(image)
        for box, score in zip(found.boxes, found.box_scores):
            x0, y0, x1, y1 = (float(v) for v in box)
            out.append({"image_id": image_id, "category_id": 1, "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(score)})
    return out


def report_json(report: dict) -> dict:
    """The machine-readable summary `posekit eval --json` writes: detected-box stats at top level."""
    keys = ("AP", "AP50", "AP75", "APm", "APl", "AR")
    main = report.get("detector") or report.get("gt")
    out = {k: round(main[k], 4) for k in keys}
    out.update(images=report["images"], people=report["people"], seconds=report["seconds"])
    for name in ("detector", "gt"):
        if name in report:
            out[f"{name}_boxes"] = {k: round(report[name][k], 4) for k in keys}
    if "box" in report:
        out["person_box_AP"] = round(report["box"]["AP"], 4)
    return out
