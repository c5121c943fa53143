"""Person detectors: preprocess (letterbox or resize, normalise) -> engine -> postprocess -> `Poses` boxes.

The preprocessing comes from the registry entry (input size, colour order, mean/std) and the
family (letterbox or plain resize); the postprocessing is the family's. Detections are returned
as `Poses` whose keypoints are all zero with score zero, so that the same type flows to the pose stage.
"""

from __future__ import annotations

import logging
import os
from typing import Sequence

import numpy as np

from posekit import families, registry
from posekit.ops.boxes import nms
from posekit.ops.crop import LetterboxTransform, StretchTransform, letterbox, stretch
from posekit.structures import NUM_KEYPOINTS, Poses

log = logging.getLogger(__name__)

class Detector:
    """A person detector on an engine.

    name:            registry name, e.g. "rtmdet-nano-person" or "yolox-nano"
    weights:         an explicit ONNX file; otherwise the registry's search order applies
    score_threshold: boxes scoring below are dropped
    iou_threshold:   NMS overlap above which the lower-scored box is dropped
    backend:         the engine's runtime (posekit.engines.BACKENDS)
    precision:       "fp32" runs the registry's ONNX file (or `weights`); other precisions run
                     the cached build `posekit.build.load(name, backend, precision)` makes
    threads:         ONNX Runtime intra-op threads (None: ONNX Runtime decides)

    ``detector(image)`` takes one (H, W, 3) uint8 BGR image and returns `Poses` with boxes in
    image pixels; ``detector.detect_batch(images)`` does several in as few engine calls as the
    model allows.
    """

    def __init__(self, name: str | registry.ModelSpec = "rtmdet-nano-person", weights: str | os.PathLike | None = None,
                 device: str = "cpu", backend: str = "onnxruntime", score_threshold: float = 0.3,
                 iou_threshold: float = 0.65, max_det: int = 100, threads: int | None = None,
                 precision: str = "fp32") -> None:
        from posekit.engines import load_engine
        from posekit.runtime import engine_options, make_engine

        spec = registry.resolve(name)
        name = spec.name
        if spec.task != "detector":
            raise ValueError(f"{name} is a {spec.task} model, not a detector; detectors: {', '.join(registry.names('detector'))}")
        self.family = families.of(spec)
        if self.family.kind != "detector":
            raise ValueError(f"{name}: family {self.family.name} is {self.family.kind}, not a detector family")
        options = engine_options(backend, threads)
        if weights is None:
            self.engine = make_engine(spec, backend, precision, device, **options)
        else:
            path = registry.find_weights(name, weights)[0]
            if path.suffix != ".onnx":
                raise ValueError(f"{name}: expected an .onnx detector file, got {path}")
            if precision != "fp32":
                raise ValueError(f"{name}: an explicit weights file runs as given (fp32); for {precision}, "
                                 "leave weights out and the cached build of the registry's file is used")
            self.engine = load_engine(path, backend, device, **options)
        self.spec = spec
        self.name = name
        self.input_size = spec.input_size
        self.score_threshold = float(score_threshold)
        self.iou_threshold = float(iou_threshold)
        self.max_det = int(max_det)
        self._mean = np.asarray(spec.mean, np.float32)
        self._inv_std = 1.0 / np.asarray(spec.std, np.float32)
        self._normalise = bool(np.any(self._mean != 0) or np.any(self._inv_std != 1))
        batch_dim = self.engine.inputs[0].shape[0]
        self.max_batch = None if batch_dim is None else int(batch_dim)

    def preprocess(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, list[LetterboxTransform | StretchTransform]]:
        """(B, 3, H, W) float32 network input and each image's transform (letterbox or plain resize)."""
        h, w = self.input_size
        batch = np.empty((len(images), 3, h, w), np.float32)
        transforms = []
        resize = self.family.resize
        for i, image in enumerate(images):
            if resize == "letterbox":
                boxed, transform = letterbox(image, self.input_size, self.family.pad_value)
            else:
                boxed, transform = stretch(image, self.input_size)
            if self.spec.colour == "RGB":
                boxed = boxed[..., ::-1]
            x = boxed.astype(np.float32)
            if self._normalise:
                x -= self._mean
                x *= self._inv_std
            batch[i] = x.transpose(2, 0, 1)
            transforms.append(transform)
        return batch, transforms

    def __call__(self, image: np.ndarray) -> Poses:
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[Poses]:
        if not images:
            return []
        step = self.max_batch or len(images)
        out: list[Poses] = []
        for start in range(0, len(images), step):
            chunk = images[start : start + step]
            batch, transforms = self.preprocess(chunk)
            outputs = self.family.named(self.engine(batch), self.engine.output_names)
            raw = self.family.postprocess(outputs, self.input_size, self.score_threshold, self.iou_threshold, self.max_det)
            for image, transform, (boxes, scores) in zip(chunk, transforms, raw):
                out.append(self._finish(image, transform, boxes, scores))
        return out

    def _finish(self, image: np.ndarray, transform: LetterboxTransform | StretchTransform, boxes: np.ndarray,
                scores: np.ndarray) -> Poses:
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        scores = np.asarray(scores, np.float32).reshape(-1)
        keep = scores >= self.score_threshold
        boxes, scores = boxes[keep], scores[keep]
        if len(boxes) > 1:
            order = nms(boxes, scores, self.iou_threshold, self.max_det)
            boxes, scores = boxes[order], scores[order]
        boxes = transform.boxes_to_image(boxes)
        h, w = image.shape[:2]
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        valid = (boxes[:, 2] - boxes[:, 0] > 1) & (boxes[:, 3] - boxes[:, 1] > 1)
        boxes, scores = boxes[valid], scores[valid]
        n = len(boxes)
        return Poses(boxes=boxes, box_scores=scores,
                     keypoints=np.zeros((n, NUM_KEYPOINTS, 2), np.float32),
                     keypoint_scores=np.zeros((n, NUM_KEYPOINTS), np.float32))

    def __repr__(self) -> str:
        return f"Detector({self.name!r}, engine={self.engine!r})"
