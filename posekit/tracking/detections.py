"""A video's untracked detections on disk, to replay into any tracker without running the models
again: tuning a tracker, comparing trackers on the same boxes (`posekit bench --stage track`).

One .npz per video: the frames' `Poses` concatenated (boxes, box_scores, scores, keypoints,
keypoint_scores) and `offsets` (F + 1,), frame f holding rows offsets[f]:offsets[f + 1].
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from posekit.structures import NUM_KEYPOINTS, Poses

logger = logging.getLogger(__name__)

FIELDS = ("boxes", "box_scores", "scores", "keypoints", "keypoint_scores")


def save_detections(path: str | os.PathLike, frames: Iterable[Poses], **meta: Any) -> Path:
    """Write every frame's detections to `path` (.npz, atomically); `meta` is stored as strings."""
    from posekit.io import atomic_path

    frames = list(frames)
    k = next((p.num_keypoints for p in frames if len(p)), NUM_KEYPOINTS)
    arrays = {}
    for name in FIELDS:
        parts = [getattr(p, name) for p in frames if len(p)]
        empty = Poses.empty(k)
        arrays[name] = np.concatenate(parts) if parts else getattr(empty, name)
    arrays["offsets"] = np.concatenate([[0], np.cumsum([len(p) for p in frames])]).astype(np.int64)
    for key, value in meta.items():
        arrays[f"meta_{key}"] = np.array(str(value))
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    return path


def load_detections(path: str | os.PathLike) -> list[Poses]:
    """The frames written by `save_detections`, as a list of untracked `Poses`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (expected detections written by save_detections)")
    with np.load(path) as data:
        missing = [n for n in (*FIELDS, "offsets") if n not in data]
        if missing:
            raise ValueError(f"{path}: expected arrays {', '.join((*FIELDS, 'offsets'))}, missing {missing}")
        arrays = {n: data[n] for n in FIELDS}
        offsets = data["offsets"]
    return [Poses(**{n: a[lo:hi] for n, a in arrays.items()}) for lo, hi in zip(offsets[:-1], offsets[1:])]


def load_meta(path: str | os.PathLike) -> dict[str, str]:
    with np.load(path) as data:
        return {k[5:]: str(data[k]) for k in data.files if k.startswith("meta_")}


def detect_video(source: str | int, estimator: Any, max_frames: int | None = None) -> Iterator[Poses]:
    """Every frame's untracked poses from `estimator.stream` over a video file or camera."""
    from posekit.io import iter_video

    def images():
        for n, frame in enumerate(iter_video(source)):
            if max_frames is not None and n >= max_frames:
                return
            yield frame.image

    yield from estimator.stream(images())


class ReplayedDetections:
    """Saved detections as an estimator: ``stream(images)`` yields frame n's poses for the n-th
    image, so `track_video` re-tracks and re-renders a video with another tracker or other
    settings without running the models. More images than frames saved raise ValueError.

        track_video("clip.mp4", "out", estimator=ReplayedDetections(load_detections("clip.detections.npz")))
    """

    def __init__(self, frames: Iterable[Poses]) -> None:
        self.frames = list(frames)

    def stream(self, images: Iterable[Any]) -> Iterator[Poses]:
        for n, _ in enumerate(images):
            if n >= len(self.frames):
                raise ValueError(f"expected at most {len(self.frames)} frames (the detections saved), got more")
            yield self.frames[n]
