"""Frames in, in order: images checked as BGR, chunks, and a prefetch thread that decodes ahead."""

from __future__ import annotations

import os
import queue
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator, Sequence

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


def ordered_map(fn: Callable[[Any], Sequence[Any]], chunks: Iterable[Any], workers: int) -> Iterator[Any]:
    """The items of ``fn(chunk)`` for each chunk, in order; `workers` threads run chunks at
    once, at most 2 x workers chunks in flight (so memory stays bounded on long streams)."""
    if workers <= 1:
        for chunk in chunks:
            yield from fn(chunk)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="posekit") as pool:
        pending: deque = deque()
        for chunk in chunks:
            pending.append(pool.submit(fn, chunk))
            if len(pending) >= 2 * workers:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()


def stream_boxes(estimator: Any, pairs: Iterable[tuple[Any, Any]], prefetch_depth: int = 8) -> Iterator[Any]:
    """``estimator.estimate_boxes`` over (image or path, person boxes as `Poses`) pairs: Poses per
    pair, in order. Images are decoded ahead on a thread; chunks of the estimator's
    `frames_per_batch` run on its `workers` threads, as in its `stream`."""

    def decoded() -> Iterator[tuple[np.ndarray, Any]]:  # runs in the prefetch thread
        for image, people in pairs:
            yield as_bgr(image), people

    def run(chunk: list[tuple[np.ndarray, Any]]) -> list[Any]:
        return estimator.estimate_boxes([image for image, _ in chunk], [people for _, people in chunk])

    chunks = chunked(prefetch(decoded(), prefetch_depth), int(getattr(estimator, "frames_per_batch", 1)))
    yield from ordered_map(run, chunks, int(getattr(estimator, "workers", 1)))
