"""COCO keypoint AP (pycocotools) of a pose estimator on an annotated image folder, on detected
boxes or on the ground-truth person boxes, plus the detector's person box AP."""

from __future__ import annotations

import contextlib
import inspect
import io as _io
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from posekit import streams
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
    coco.source = str(path)  # named in errors about its images
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

    ann: a COCO keypoint annotation file, or what `load_annotations` returned for one.
    boxes: which person boxes to evaluate on: "detector" (the full pipeline), "gt" (the
    annotated non-crowd boxes, to isolate the pose model). Also reports the detector's person
    box AP when "detector" is asked. Returns {"detector": {...}, "gt": {...}, "box": {...},
    "images", "people", "seconds", "tables"}.
    progress: called once per image and pass (``len(images) x passes`` calls in all).

    Images stream through the estimator's own pipeline (`stream`: decoded ahead on a thread,
    batched, its worker threads), never all held at once: memory does not grow with the set
    beyond the COCO result records. One detector pass serves both the keypoint AP on detected
    boxes and the person box AP (``stream(..., with_detections=True)``: the detector's boxes
    before the pose NMS); the ground-truth-box pass runs `estimate_boxes` the same way
    (``estimator.stream_boxes`` where the estimator has one, else `posekit.streams.stream_boxes`).
    """
    if estimator is None:
        from posekit.pipeline import PoseEstimator

        estimator = PoseEstimator()
    for mode in boxes:
        if mode not in ("detector", "gt"):
            raise ValueError(f"unknown boxes {mode!r}; use 'detector' or 'gt'")
    coco = ann if hasattr(ann, "getImgIds") else load_annotations(ann)
    items = image_paths(coco, images)
    report: dict[str, Any] = {"images": len(items), "tables": {}}
    if "gt" in boxes and not getattr(estimator, "takes_boxes", True):
        log.info("%s finds people itself (bottom-up): no AP on ground-truth boxes", estimator)
        boxes = tuple(m for m in boxes if m != "gt")
    tick = progress or (lambda: None)
    start = time.perf_counter()
    people = 0
    for mode in boxes:
        t0 = time.perf_counter()
        results: list[dict] = []
        if mode == "detector":
            box_results: list[dict] = []
            found = _with_detections(estimator, (str(path) for _, path in items))
            for (image_id, _), (poses, detections) in zip(items, found):
                people += len(poses)
                results.extend(poses_to_coco(poses, image_id))
                box_results.extend(box_records(detections, image_id))
                tick()
        else:
            pairs = ((str(path), gt_boxes(coco, image_id)) for image_id, path in items)
            run = getattr(estimator, "stream_boxes", None)
            found = run(pairs) if run is not None else streams.stream_boxes(estimator, pairs)
            for (image_id, _), poses in zip(items, found):
                results.extend(poses_to_coco(poses, image_id))
                tick()
        seconds = round(time.perf_counter() - t0, 3)
        stats, table = coco_eval(coco, results, "keypoints")
        report[mode] = {**stats, "seconds": seconds, "people": len(results)}
        report["tables"][mode] = table
        if mode == "detector":
            report["box"], report["tables"]["box"] = coco_eval(coco, box_results, "bbox")
    report["people"] = people
    report["seconds"] = round(time.perf_counter() - start, 3)
    return report


def _with_detections(estimator: Any, paths: Iterator[str]) -> Iterator[tuple[Poses, Poses]]:
    """(poses, detector boxes) per image from one pass: ``stream(..., with_detections=True)``, or
    for an estimator whose `stream` has no such option, its `estimate_batch` and `detector`
    image by image."""
    stream = getattr(estimator, "stream", None)
    if stream is not None and "with_detections" in inspect.signature(stream).parameters:
        return stream(paths, with_detections=True)
    log.info("%s: stream has no with_detections; one image at a time", type(estimator).__name__)
    return ((estimator.estimate_batch([image])[0], estimator.detector(image))
            for image in map(read_image, paths))


def image_paths(coco: Any, images: str | os.PathLike) -> list[tuple[int, Path]]:
    """(image_id, path) of every annotated image, by id; a clear error naming the first one missing
    (checked before any model runs)."""
    folder = Path(images)
    out = []
    for image_id in sorted(coco.getImgIds()):
        entry = coco.imgs[image_id]
        path = folder / entry["file_name"]
        if not path.is_file():
            ann = getattr(coco, "source", "the annotations")
            raise InputError(f"{path}: image {entry['id']} named by {ann} is not in {folder}")
        out.append((image_id, path))
    return out


def box_records(found: Poses, image_id: int) -> list[dict]:
    """COCO detection results (person, xywh) for one image's detector boxes."""
    out = []
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
