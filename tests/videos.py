"""Test videos: the frames of a file, and MJPG AVI files written from frames (OpenCV)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def read_frames(path: Path, size: tuple[int, int] | None = None) -> list[np.ndarray]:
    """Every frame of a video (resized to `size`, (width, height), when given)."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame if size is None else cv2.resize(frame, size, interpolation=cv2.INTER_AREA))
    capture.release()
    return frames


def write_avi(path: Path, frames: list[np.ndarray], fps: float = 25.0) -> Path:
    """`frames` as an MJPG AVI (a container that indexes its frames) at `path`; returns it."""
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path
