"""`BottomUpEstimator`: one network finds every person in the whole frame (MoveNet MultiPose); no detector.

Each frame is letterboxed so its long side is the model's input side and the short side the
next multiple of the family's `multiple` (a 960x540 frame runs at 256x160), centred on nothing:
padding goes right and bottom, so keypoints map back with one scale.
"""

from __future__ import annotations

import logging
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from posekit import families, registry, streams
from posekit.ops.crop import letterbox
from posekit.ops.multipose import input_size_for
from posekit.ops.poses import check_person_score, finish_poses
from posekit.streams import as_bgr
from posekit.structures import Poses

log = logging.getLogger(__name__)


class BottomUpEstimator:
    """Multi-person pose estimation with a bottom-up model: ``estimator(image) -> Poses``.

    pose:       registry name or entry of a bottom-up model (e.g. "movenet-multipose")
    side:       the long side of the network input (None: the registry entry's input size)
    person_score, keypoint_threshold, oks_threshold, min_score: as `PoseEstimator`'s; the box
                score is the model's own person score
    workers:    threads running frames at once in `stream`
    Other `PoseEstimator` keyword arguments that concern a detector or crops are ignored.
    """

    def __init__(self, pose: Any = "movenet-multipose", device: str = "cpu", backend: str = "onnxruntime",
                 precision: str | None = None, side: int | None = None, person_score: str = "box*keypoints",
                 keypoint_threshold: float = 0.2, oks_threshold: float | None = 0.8, min_score: float = 0.0,
                 workers: int = 3, threads: int | None = None, **ignored: Any) -> None:
        from posekit.runtime import default_precision, engine_options, make_engine

        if ignored:
            log.debug("the bottom-up pipeline has no detector or crops: ignoring %s", ", ".join(sorted(ignored)))
        check_person_score(person_score)
        self.spec = registry.resolve(pose)
        self.family = families.of(self.spec)
        if self.family.kind != "bottom-up":
            raise ValueError(f"{self.spec.name} is a {self.family.kind} model, not a bottom-up pose model")
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if threads is None and workers > 1:
            threads = 1
        self.precision = precision or default_precision(backend, device, self.spec)
        self.engine = make_engine(self.spec, backend, self.precision, device, **engine_options(backend, threads))
        self.side = int(side or max(self.spec.input_size))
        if self.side % self.family.multiple:
            raise ValueError(f"side must be a multiple of {self.family.multiple}, got {self.side}")
        shape = self.engine.inputs[0].shape
        self.fixed_size = None if (shape[2] is None or shape[3] is None) else (int(shape[2]), int(shape[3]))
        self.mean = np.asarray(self.spec.mean, np.float32)
        self.std = np.asarray(self.spec.std, np.float32)
        self.finish = dict(person_score=person_score, keypoint_threshold=keypoint_threshold,
                           oks_threshold=oks_threshold, min_score=min_score)
        self.workers = int(workers)

    def _input(self, image: np.ndarray) -> tuple[np.ndarray, Any]:
        size = self.fixed_size or input_size_for(*image.shape[:2], long_side=self.side, multiple=self.family.multiple)
        boxed, transform = letterbox(image, size, pad_value=0)
        x = boxed[..., ::-1] if self.spec.colour.upper() == "RGB" else boxed
        x = (x.astype(np.float32) - self.mean) / self.std
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None]), transform

    def __call__(self, image: Any) -> Poses:
        return self.estimate_batch([image])[0]

    def estimate_batch(self, images: Sequence[Any]) -> list[Poses]:
        """Poses per image, each image its own network call (images differ in shape)."""
        out = []
        for image in images:
            image = as_bgr(image)
            x, transform = self._input(image)
            outputs = self.family.named(self.engine(x), self.engine.output_names)
            keypoints, keypoint_scores, boxes, scores = self.family.decode(outputs, x.shape[2:4])[0]
            scale, (ox, oy) = np.float32(transform.scale), transform.offset
            keypoints = (np.asarray(keypoints, np.float32) - np.float32([ox, oy])) / scale
            boxes = transform.boxes_to_image(boxes)
            h, w = image.shape[:2]
            boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
            boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
            poses = Poses(boxes=boxes, box_scores=np.asarray(scores, np.float32),
                          keypoints=keypoints.astype(np.float32),
                          keypoint_scores=np.asarray(keypoint_scores, np.float32))
            out.append(finish_poses(poses, **self.finish))
        return out

    takes_boxes = False  # evaluate() skips the ground-truth-box AP

    def estimate_boxes(self, images: Sequence[np.ndarray], people: Sequence[Poses]) -> list[Poses]:
        raise ValueError(f"{self.spec.name} is bottom-up: it finds people itself and takes no person boxes")

    def detector(self, image: np.ndarray) -> Poses:
        """The people's boxes (keypoints kept), for person box AP."""
        return self(image)

    def stream(self, frames: Iterable[Any], prefetch: int = 8) -> Iterator[Poses]:
        """Poses per frame, in order; frames decoded ahead on a thread, `workers` frames at once."""
        frames = streams.prefetch(iter(frames), prefetch)
        if self.workers == 1:
            for frame in frames:
                yield self(frame)
            return
        with ThreadPoolExecutor(self.workers, thread_name_prefix="posekit") as pool:
            pending: deque = deque()
            for frame in frames:
                pending.append(pool.submit(self, frame))
                if len(pending) >= 2 * self.workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    def __repr__(self) -> str:
        return f"BottomUpEstimator({self.spec.name!r}, engine={self.engine!r})"
