"""Frames in, in order: images checked as BGR, chunks, and a prefetch thread that decodes ahead."""

from __future__ import annotations

import os
import queue
import threading
from typing import Any, Iterator

import numpy as np


def as_bgr(image: Any) -> np.ndarray:
    """An (H, W, 3) uint8 BGR image from an array or a path; a clear error for anything else."""
    if not isinstance(image, np.ndarray):
        from posekit.io import read_image

        image = read_image(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 BGR image, got {image.shape} {image.dtype}")
    return image


def chunked(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive lists of `size` items (the last may be shorter)."""
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


_DONE = object()


def prefetch(items: Iterator[Any], depth: int) -> Iterator[Any]:
    """Pull from `items` in a background thread, at most `depth` ahead (paths are decoded
    there); re-raise its errors here."""
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def pull() -> None:
        try:
            for item in items:
                if isinstance(item, (str, os.PathLike)):
                    from posekit.io import read_image

                    item = read_image(item)
                if not put(item):
                    return
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            put(exc)

    thread = threading.Thread(target=pull, name="posekit-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
