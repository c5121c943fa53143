"""`Poses`: the one result type that flows through detector, pose model, tracker and writers."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Iterable

import numpy as np

NUM_KEYPOINTS = 17


def _as(array: Any, dtype: type, name: str) -> np.ndarray:
    out = np.ascontiguousarray(array, dtype=dtype)
    out.setflags(write=False)
    return out


@dataclass(frozen=True, eq=False)
class Poses:
    """Every person found in one frame, as parallel arrays.

    boxes:           (N, 4) float32, image pixels, x0 y0 x1 y1
    box_scores:      (N,) float32, detector confidence in [0, 1]
    keypoints:       (N, K, 2) float32, image pixels, x then y
    keypoint_scores: (N, K) float32, keypoint confidence in [0, 1]
    scores:          (N,) float32, the person score (by default the box score)
    track_ids:       (N,) int64, or None when the poses are not tracked

    Index it like an array: ``poses[poses.scores > 0.3]``, ``poses[:5]``, ``poses[[2, 0]]``.
    """

    boxes: np.ndarray
    box_scores: np.ndarray
    keypoints: np.ndarray
    keypoint_scores: np.ndarray
    scores: np.ndarray | None = None
    track_ids: np.ndarray | None = None
    _arrays: tuple[str, ...] = field(default=(), init=False, repr=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        boxes = _as(self.boxes, np.float32, "boxes")
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"expected a (N, 4) box array, got {boxes.shape}")
        n = boxes.shape[0]
        keypoints = _as(self.keypoints, np.float32, "keypoints")
        if keypoints.ndim != 3 or keypoints.shape[0] != n or keypoints.shape[2] != 2:
            raise ValueError(f"expected a ({n}, K, 2) keypoint array, got {keypoints.shape}")
        k = keypoints.shape[1]
        checks = {
            "box_scores": (np.float32, (n,)),
            "keypoint_scores": (np.float32, (n, k)),
            "scores": (np.float32, (n,)),
            "track_ids": (np.int64, (n,)),
        }
        set_(self, "boxes", boxes)
        set_(self, "keypoints", keypoints)
        if self.scores is None:
            set_(self, "scores", self.box_scores)
        for name, (dtype, shape) in checks.items():
            value = getattr(self, name)
            if value is None:
                continue
            value = _as(value, dtype, name)
            if value.shape != shape:
                raise ValueError(f"expected a {shape} {name} array, got {value.shape}")
            set_(self, name, value)

    @classmethod
    def empty(cls, num_keypoints: int = NUM_KEYPOINTS, tracked: bool = False) -> "Poses":
        """No person: every array has length 0 (never None)."""
        return cls(
            boxes=np.zeros((0, 4), np.float32),
            box_scores=np.zeros((0,), np.float32),
            keypoints=np.zeros((0, num_keypoints, 2), np.float32),
            keypoint_scores=np.zeros((0, num_keypoints), np.float32),
            track_ids=np.zeros((0,), np.int64) if tracked else None,
        )

    @classmethod
    def concatenate(cls, parts: Iterable["Poses"], num_keypoints: int = NUM_KEYPOINTS) -> "Poses":
        parts = list(parts)
        if not parts:
            return cls.empty(num_keypoints)
        tracked = [p.track_ids is not None for p in parts]
        if any(tracked) and not all(tracked):
            raise ValueError("cannot concatenate tracked and untracked poses")
        values = {
            f.name: np.concatenate([getattr(p, f.name) for p in parts])
            for f in fields(cls)
            if f.init and getattr(parts[0], f.name) is not None
        }
        return cls(**values)

    @property
    def num_keypoints(self) -> int:
        return self.keypoints.shape[1]

    def __len__(self) -> int:
        return self.boxes.shape[0]

    def __getitem__(self, index: Any) -> "Poses":
        if isinstance(index, (int, np.integer)):
            index = [index]
        values = {
            f.name: getattr(self, f.name)[index]
            for f in fields(self)
            if f.init and getattr(self, f.name) is not None
        }
        return Poses(**values)

    def replace(self, **changes: Any) -> "Poses":
        """A copy with some arrays replaced, e.g. ``poses.replace(track_ids=ids)``."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.init}
        values.update(changes)
        return Poses(**values)

    def __repr__(self) -> str:
        tracked = "" if self.track_ids is None else f", track_ids={self.track_ids.tolist()}"
        return f"Poses(n={len(self)}, num_keypoints={self.num_keypoints}{tracked})"
