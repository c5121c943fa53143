"""The plain per-person loop that the reference figure was measured with; `posekit bench` times
posekit's pipeline against it on the same images.

RTMDet-nano at 320 with rtmlib's preprocessing and score threshold (0.3), then every person
crop alone (square, 1.25x the box) through Google's own MoveNet-Thunder graph converted by
tf2onnx (``shared/models/reference/movenet-thunder.tf2onnx.onnx``: batch 1, int32 RGB input,
keypoint decoding inside the graph). Each session keeps ONNX Runtime's default threading.
The person score is the box score. Nothing is batched, nothing overlaps.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from posekit import registry
from posekit.ops.crop import affine_crop, crop_to_image
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
        return people.replace(keypoints=np.concatenate(keypoints), keypoint_scores=np.concatenate(scores))
