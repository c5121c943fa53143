"""`PoseEstimator`: detector -> affine crops -> top-down pose model -> keypoints in image pixels.

The crops of one frame, and of several frames, go to the pose engine as one batch; in
`stream`, frames are decoded in a prefetch thread and `workers` threads each run whole chunks
of frames (detect, crop, pose), so that on a 2-core CPU both cores stay busy even though a
single small ONNX Runtime call does not use two threads well.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from posekit import families, registry, streams
from posekit.ops.crop import affine_crop, crop_to_image, fit_input_sizes
from posekit.ops.poses import check_person_score, finish_poses
from posekit.pose_models import TopDownModel
from posekit.streams import as_bgr
from posekit.structures import NUM_KEYPOINTS, Poses

log = logging.getLogger(__name__)


# how PoseEstimator shapes person crops (see its docstring)
CROP_SHAPES = ("fit", "square")


def _pose_model(pose: Any, device: str, backend: str, precision: str, threads: int | None, flip: bool) -> Any:
    """The pose model on the engine `posekit.runtime.make_engine` picks (the float export for
    onnxruntime fp32, a cached build for the other backends and precisions), run by the one
    top-down runner. An object that is not a registry entry (or name) is used as it is."""
    if not isinstance(pose, (str, registry.ModelSpec)):
        return pose  # an object with input_size, max_batch and __call__(crops)
    from posekit.runtime import engine_options, make_engine

    spec = registry.resolve(pose)
    kind = families.of(spec).kind
    if kind != "top-down":
        raise ValueError(f"{spec.name} is a {kind} model, not a top-down pose model; top-down models: "
                         f"{', '.join(n for n in registry.names('pose') if families.of(registry.get(n)).kind == 'top-down')}")
    engine = make_engine(spec, backend, precision, device, **engine_options(backend, threads))
    return TopDownModel(engine, spec, flip=flip)


class PoseEstimator:
    """Multi-person pose estimation: ``estimator(image) -> Poses`` in image pixels.

    det:                 detector registry name (or a Detector); default PicoDet-S-320 pedestrian
    pose:                pose registry name (or a model object: ``model(crops) -> (keypoints, scores)``);
                         default PP-TinyPose-256x192 (the most accurate combination that is at least 2x
                         the plain per-person loop on the CPU: `posekit bench --stage models`, BENCHMARKS.md)
    det_score_threshold: detector boxes below are dropped (None: the detector's registered default,
                         0.35 for PicoDet, 0.2 otherwise)
    crop_scale:          crop side = `crop_scale` x the box's longer side (after matching the input aspect)
    crop_shape:          "fit": each crop shaped and sized like its person (a standing person runs at
                         256x128, about half the work of 256x256; a small one at 192 rather than
                         blown up to 256; see `fit_input_sizes`), for pose models on engines that
                         take any input size (ONNX Runtime); "square": every crop at the model's size.
                         "fit" falls back to "square" on engines with a fixed input size.
    person_score:        "box", "keypoints" (mean visible keypoint score) or "box*keypoints"
    keypoint_threshold:  a keypoint scoring above this counts as visible for the person score
    oks_threshold:       pose NMS: drop a person whose OKS with a better one is above; None: off
    backend, precision:  the pose model's engine: "onnxruntime" fp32 (the float export) or int8
                         (a cached build, calibrated on the crops shipped in posekit/assets), or any
                         backend/precision posekit.build makes. precision None: `default_precision`,
                         int8 for ONNX Runtime on the CPU (AP 0.698 vs fp32's 0.708 on the shared
                         COCO images, 1.6x the speed; BENCHMARKS.md), fp32 elsewhere
    det_precision:       the detector's precision on the same backend (default fp32: INT8 RTMDet
                         measured slower and less accurate than fp32)
    batch:               most crops per pose engine call (None: 2 on the CPU, 32 on a GPU)
    frames_per_batch:    frames grouped into one detector call and one pose batch in `stream`
                         (None: 1 on the CPU, 4 on a GPU)

    On the CPU, big batches cost more per crop (MoveNet-Thunder, 1 ORT thread: 20 ms CPU per
    crop at batch 1-2, 30 ms at 16, measured here), so the CPU defaults keep batches small and
    get their speed from `workers` single-threaded calls running at once; batching pays on GPUs.
    workers:             threads running chunks of frames at once in `stream` (3: on 2 cores, 2
                         workers kept 1.6 cores busy and 3 kept 1.95, measured with bench_pipeline)
    threads:             ONNX Runtime intra-op threads per engine (None: 1 when workers > 1)
    flip:                the flip test (each crop and its mirror image, merged by the family; costs
                         twice the pose work), for families that have one
    """

    def __init__(self, det: Any = "picodet-s-320-pedestrian", pose: Any = "tinypose-256x192", device: str = "cpu",
                 backend: str = "onnxruntime", precision: str | None = None, det_precision: str = "fp32",
                 det_score_threshold: float | None = None, det_iou_threshold: float = 0.65,
                 crop_scale: float = 1.25, crop_shape: str = "fit", person_score: str = "box*keypoints",
                 keypoint_threshold: float = 0.2,
                 oks_threshold: float | None = 0.8, min_score: float = 0.0, batch: int | None = None,
                 frames_per_batch: int | None = None, workers: int = 3, threads: int | None = None,
                 flip: bool = False) -> None:
        from posekit.detectors import Detector
        from posekit.runtime import default_precision

        check_person_score(person_score)
        if crop_shape not in CROP_SHAPES:
            raise ValueError(f"unknown crop_shape {crop_shape!r}; use one of {', '.join(CROP_SHAPES)}")
        on_cpu = device == "cpu"
        batch = batch if batch is not None else (2 if on_cpu else 32)
        frames_per_batch = frames_per_batch if frames_per_batch is not None else (1 if on_cpu else 4)
        if workers < 1 or batch < 1 or frames_per_batch < 1:
            raise ValueError(f"workers, batch and frames_per_batch must be >= 1, got {workers}, {batch}, {frames_per_batch}")
        if threads is None and workers > 1:
            threads = 1
        if not isinstance(det, Detector):
            det_spec = registry.resolve(det)
            if det_score_threshold is None:
                det_score_threshold = det_spec.options.get("score_threshold", 0.2)
            det = Detector(det_spec, device=device, backend=backend, precision=det_precision,
                           score_threshold=det_score_threshold, iou_threshold=det_iou_threshold, threads=threads)
        self.detector = det
        if isinstance(pose, (str, registry.ModelSpec)):
            self.precision = precision or default_precision(backend, device, pose)
        else:
            self.precision = precision or "fp32"  # a model object runs as it is
        self.pose = _pose_model(pose, device, backend, self.precision, threads, flip)
        self.crop_scale = float(crop_scale)
        self._crop = getattr(self.pose, "crop", None) or affine_crop  # the family's crop convention
        self.crop_shape = crop_shape if getattr(self.pose, "any_size", False) else "square"
        if crop_shape != self.crop_shape:
            log.debug("%s takes one input size: square crops", self.pose)
        self.person_score = person_score
        self.keypoint_threshold = float(keypoint_threshold)
        self.oks_threshold = oks_threshold
        self.min_score = float(min_score)
        self.batch = int(batch)
        self.frames_per_batch = int(frames_per_batch)
        self.workers = int(workers)

    # -- one frame / a list of frames ---------------------------------------------------------

    def __call__(self, image: np.ndarray | str | os.PathLike) -> Poses:
        if not isinstance(image, np.ndarray):
            from posekit.io import read_image

            image = read_image(image)
        return self.estimate_batch([image])[0]

    def estimate_batch(self, images: Sequence[np.ndarray]) -> list[Poses]:
        """Detect people in every image, then run all their crops through the pose model together."""
        images = [as_bgr(im) for im in images]
        return self.estimate_boxes(images, self.detector.detect_batch(images))

    def estimate_boxes(self, images: Sequence[np.ndarray], people: Sequence[Poses]) -> list[Poses]:
        """Keypoints for given person boxes (e.g. ground-truth boxes): the crops of all images
        together, one pose batch per crop shape."""
        images = [as_bgr(image) for image in images]
        shapes = [self._input_shapes(found.boxes) for found in people]
        keypoints = [np.zeros((len(found), NUM_KEYPOINTS, 2), np.float32) for found in people]
        scores = [np.zeros((len(found), NUM_KEYPOINTS), np.float32) for found in people]
        distinct = {tuple(int(v) for v in row) for s in shapes for row in s}
        for shape in sorted(distinct, reverse=True):
            crops, owners = [], []
            for i, (image, found, s) in enumerate(zip(images, people, shapes)):
                rows = np.flatnonzero((s == shape).all(1))
                if len(rows):
                    c, transform = self._crop(image, found.boxes[rows], shape, self.crop_scale)
                    crops.append(c)
                    owners.append((i, rows, transform))
            k, p = self._run_pose(np.concatenate(crops))
            start = 0
            for i, rows, transform in owners:
                end = start + len(rows)
                # a crop reaching past the frame can put a keypoint outside it: report it on the edge
                h, w = images[i].shape[:2]
                keypoints[i][rows] = np.clip(crop_to_image(k[start:end], transform), 0, [w, h])
                scores[i][rows] = p[start:end]
                start = end
        return [self._finish(found.replace(keypoints=k, keypoint_scores=p))
                for found, k, p in zip(people, keypoints, scores)]

    def _input_shapes(self, boxes: np.ndarray) -> np.ndarray:
        """(N, 2) pose input (height, width) per box: the model's size, or shaped like the box."""
        if self.crop_shape == "fit":
            return fit_input_sizes(boxes, self.pose.input_size, self.crop_scale)
        return np.tile(np.asarray(self.pose.input_size, int), (len(boxes), 1))

    def _run_pose(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        step = min(self.batch, self.pose.max_batch or self.batch)
        if len(crops) <= step:
            return self.pose(crops)
        parts = [self.pose(crops[i : i + step]) for i in range(0, len(crops), step)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _finish(self, poses: Poses) -> Poses:
        return finish_poses(poses, self.person_score, self.keypoint_threshold, self.oks_threshold, self.min_score)

    # -- many frames ------------------------------------------------------------------------

    def _estimate_chunk(self, images: Sequence[Any], with_detections: bool) -> list[Any]:
        """estimate_batch, or (poses, detections) per image: the detector's boxes before pose NMS."""
        images = [as_bgr(im) for im in images]
        found = self.detector.detect_batch(images)
        poses = self.estimate_boxes(images, found)
        return list(zip(poses, found)) if with_detections else poses

    def stream(self, frames: Iterable[Any], prefetch: int = 8, with_detections: bool = False) -> Iterator[Any]:
        """Poses for each frame, in order. Frames are (H, W, 3) uint8 BGR arrays, or paths.

        A prefetch thread pulls (and decodes) frames from `frames`; chunks of
        `frames_per_batch` frames run on `workers` threads; at most 2 x workers chunks are in
        flight, so memory stays bounded on long videos.
        with_detections: yield (poses, detections) per frame, detections being the detector's
        person boxes as it returned them (before the pose NMS and score floor), for person box AP
        from the same pass.
        """
        chunks = streams.chunked(streams.prefetch(iter(frames), prefetch), self.frames_per_batch)
        yield from streams.ordered_map(lambda chunk: self._estimate_chunk(chunk, with_detections), chunks, self.workers)
