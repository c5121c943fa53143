"""Frames in, in order: images checked as BGR, chunks, and a prefetch thread that decodes ahead."""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

log = logging.getLogger(__name__)


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


def put_unless_stopped(q: Any, item: Any, stop: threading.Event) -> bool:
    """Put `item` on a bounded queue, waiting while it is full, until `stop` is set; whether it went in."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def prefetch(items: Iterator[Any], depth: int) -> Iterator[Any]:
    """Pull from `items` in a background thread, at most `depth` ahead (paths are decoded
    there); re-raise its errors here."""
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(item: Any) -> bool:
        return put_unless_stopped(q, item, stop)

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


def stream_tagged(estimator: Any, tagged: Iterator[tuple[Any, Any]]) -> Iterator[tuple[Any, Any, Any]]:
    """(tag, frame, poses) for each (tag, `posekit.io.Frame`), in order; the frames are read (and
    decoded) in the estimator's prefetch thread. Closing it joins the estimator's workers."""
    pending: deque = deque()

    def images() -> Iterator[np.ndarray]:
        for tag, frame in tagged:
            pending.append((tag, frame))
            yield frame.image

    stream = estimator.stream(images())
    try:
        for poses in stream:
            yield (*pending.popleft(), poses)
    finally:
        close = getattr(stream, "close", None)
        if close is not None:  # joins the estimator's workers before the caller goes on
            close()


def video_poses(estimator: Any, reader: Any, images: bool = True) -> Iterator[tuple[Any, tuple[int, int], Any]]:
    """(frame, (width, height), poses) for each frame of a `posekit.io.VideoReader`, in order.

    The frames are read in the estimator's prefetch thread and go to its ``stream``; an estimator
    with ``stream_video`` (several devices: `posekit.multidevice`) decodes them itself instead,
    range by range, when the container indexes its frames, and this thread decodes them again
    only when `images` are wanted (to draw them; without, a frame carries no image).
    """
    from posekit.io import Frame

    ranged = getattr(estimator, "stream_video", None)
    if ranged is None or reader.is_camera or not reader.exact_count:
        stream = stream_tagged(estimator, ((None, frame) for frame in reader))
        try:
            for _, frame, poses in stream:
                yield frame, (frame.image.shape[1], frame.image.shape[0]), poses
        finally:
            stream.close()
        return
    count = min(reader.exact_count, reader.max_frames or reader.exact_count)
    log.info("%s: %d frames decoded by the workers, range by range%s", reader.name, count,
                                     " (and here, to draw them)" if images else "")
    decoded = iter(reader) if images else None
    stream = ranged(reader.name, count, declared=reader.exact_count)
    try:
        for index, timestamp, w, h, poses in stream:
            image = next(decoded).image if decoded is not None else None
            yield Frame(reader.name, index, image, timestamp), (w, h), poses
    finally:
        stream.close()
