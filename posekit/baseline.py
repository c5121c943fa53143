"""The plain per-person loop that the reference figure was measured with; `posekit bench` times
posekit's pipeline against it on the same images.

RTMDet-nano at 320 with rtmlib's preprocessing and score threshold (0.3), then every person
crop alone (square, 1.25x the box) through Google's own MoveNet-Thunder graph converted by
tf2onnx (``shared/models/reference/movenet-thunder.tf2onnx.onnx``: batch 1, int32 RGB input,
keypoint decoding inside the graph). Each session keeps ONNX Runtime's default threading.
The person score is the box score times the mean score of the visible keypoints (those above
0.2), the score the issue defines; no pose NMS. Nothing is batched, nothing overlaps. With the
box score alone the same loop scores AP 0.668 instead of 0.683 on the shared COCO images, so the
baseline is given the better score (the shared README's reference figure, through rtmlib: 0.684).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from posekit import registry
from posekit.ops.crop import affine_crop, crop_to_image
from posekit.ops.poses import finish_poses
from posekit.structures import Poses


def reference_movenet_path(variant: str = "thunder") -> Path:
    """Where the tf2onnx MoveNet reference lives: ``<POSEKIT_MODELS>/reference/movenet-<variant>.tf2onnx.onnx``."""
    name = f"reference/movenet-{variant}.tf2onnx.onnx"
    folder = registry.models_dir()
    if folder is None or not (folder / name).is_file():
        raise FileNotFoundError(
            f"the MoveNet reference graph {name} was not found under POSEKIT_MODELS={folder}; "
            "it is not a product artefact and is never downloaded"
        )
    return folder / name


class ReferenceMoveNet:
    """Google's MoveNet graph via tf2onnx, one crop per call.

    ``model(crops)`` takes (N, S, S, 3) uint8 BGR crops and returns keypoints (N, 17, 2) in
    crop pixels (x, y) and scores (N, 17).
    """

    colour = "BGR"  # what __call__ accepts; the graph itself wants RGB, converted below
    max_batch = 1

    def __init__(self, path: str | os.PathLike | None = None, variant: str = "thunder", threads: int | None = None) -> None:
        from posekit.engines import load_engine

        options = {} if threads is None else {"threads": threads}
        self.engine = load_engine(path or reference_movenet_path(variant), "onnxruntime", "cpu", **options)
        size = self.engine.inputs[0].shape[1]
        self.input_size = (int(size), int(size))

    def __call__(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = self.input_size
        keypoints = np.zeros((len(crops), 17, 2), np.float32)
        scores = np.zeros((len(crops), 17), np.float32)
        for i, crop in enumerate(crops):
            out = self.engine(crop[None, :, :, ::-1].astype(np.int32))[0][0, 0]  # (17, 3) y, x, score
            keypoints[i] = out[:, [1, 0]] * np.array([w, h], np.float32)
            scores[i] = out[:, 2]
        return keypoints, scores


class PlainLoop:
    """Detect, then estimate each person alone: the baseline `posekit bench` compares against."""

    def __init__(self, det: str = "rtmdet-nano-person", variant: str = "thunder", crop_scale: float = 1.25,
                 score_threshold: float = 0.3) -> None:
        from posekit.detectors import Detector

        self.detector = Detector(det, score_threshold=score_threshold, iou_threshold=1.0)
        self.pose = ReferenceMoveNet(variant=variant)
        self.crop_scale = crop_scale

    def __call__(self, image: np.ndarray) -> Poses:
        people = self.detector(image)
        keypoints, scores = [], []
        for box in people.boxes:
            crop, transform = affine_crop(image, box[None], self.pose.input_size, self.crop_scale)
            k, s = self.pose(crop)
            keypoints.append(crop_to_image(k, transform))
            scores.append(s)
        if not keypoints:
            return Poses.empty()
        poses = people.replace(keypoints=np.concatenate(keypoints), keypoint_scores=np.concatenate(scores))
        return finish_poses(poses, person_score="box*keypoints", oks_threshold=None)


def bench_pipeline(images: str | os.PathLike, ann: str | os.PathLike | None = None, estimators: dict | None = None,
                   plain: PlainLoop | None = None, repeat: int = 1, warmup: int = 2) -> dict:
    """Time posekit's pipeline(s) and the plain loop on the same image files, in one run.

    estimators: label -> PoseEstimator (default: {"posekit": PoseEstimator()}).
    Every runner reads and decodes the files as part of the timed work. The passes alternate
    between runners (plain, posekit, ..., plain, posekit, ...) so that a change in the machine's
    load hits all of them alike; the fastest of `repeat` passes counts. AP is computed when
    `ann` names COCO keypoint annotations for the images.
    Returns {"images", "repeat", "machine", "plain": {...}, <label>: {..., "speedup"}}.
    """
    import time

    from posekit.evaluate import coco_eval, load_annotations
    from posekit.io import poses_to_coco, read_image

    folder = Path(images)
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not paths:
        raise FileNotFoundError(f"{folder}: no .jpg/.jpeg/.png images to benchmark")
    coco = load_annotations(ann) if ann is not None else None
    ids = {} if coco is None else {Path(im["file_name"]).name: im["id"] for im in coco.dataset["images"]}
    if estimators is None:
        from posekit.pipeline import PoseEstimator

        estimators = {"posekit": PoseEstimator()}
    plain = plain or PlainLoop()

    def run_plain(ps):
        return [plain(read_image(p)) for p in ps]

    def streamer(estimator):
        return lambda ps: list(estimator.stream([str(p) for p in ps]))

    runners = {"plain": run_plain, **{label: streamer(e) for label, e in estimators.items()}}
    seconds: dict[str, list[float]] = {name: [] for name in runners}
    cpu: dict[str, list[float]] = {name: [] for name in runners}
    first: dict[str, list] = {}
    for runner in runners.values():
        runner(paths[:warmup])
    for _ in range(repeat):
        for name, runner in runners.items():
            t0, c0 = time.perf_counter(), time.process_time()
            out = runner(paths)
            seconds[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)  # all threads of this process
            first.setdefault(name, out)
    report: dict = {"images": len(paths), "repeat": repeat, "machine": _machine()}
    for name in runners:
        best = min(seconds[name])
        # CPU time per image says how much work each runner does, whatever else loads the machine.
        entry = {"images_per_s": round(len(paths) / best, 2), "seconds": round(best, 3),
                 "cpu_ms_per_image": round(1000 * min(cpu[name]) / len(paths), 1),
                 "people": int(sum(len(p) for p in first[name]))}
        if coco is not None:
            results = [r for p, poses in zip(paths, first[name]) if p.name in ids
                       for r in poses_to_coco(poses, ids[p.name])]
            stats, _ = coco_eval(coco, results, "keypoints")
            entry.update(AP=round(stats["AP"], 4), AP50=round(stats["AP50"], 4))
        if name != "plain":
            entry["speedup"] = round(entry["images_per_s"] / report["plain"]["images_per_s"], 2)
        report[name] = entry
    return report


def _machine() -> dict:
    import platform

    import onnxruntime

    return {"load_average_1min": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), "numpy": np.__version__, "onnxruntime": onnxruntime.__version__}
