"""Several devices: inputs split across one worker process per device, results in input order.

`--device` names one device ("cpu", "cuda", "cuda:1": this process runs it) or several, comma
separated (`split_devices`):

  cuda:0,1       cuda:0 and cuda:1 (same as cuda:0,cuda:1)
  cuda:all       every CUDA device torch sees
  cpu,cpu        two CPU workers (so is cpu:0,1; the CPU has one device, the index names a worker);
                 cpu:all: one worker per CPU core

Several devices run a `MultiDeviceEstimator`: one process per device (multiprocessing 'spawn':
torch and ONNX Runtime are not fork-safe), each building the same estimator with
`posekit.estimators.make_estimator` on its device. Frames are dealt out round-robin in chunks of
the estimator's `frames_per_batch`; each worker runs its own `stream` (prefetch decoding, its
threads or device batches) on its share, and results come back in input order, so the output is
what one device gives. Paths travel as paths (each worker decodes its own images); arrays travel
pickled. A video file whose container indexes its frames goes by `stream_video`: each worker
decodes its own ranges of frames (seeking to each), so no frame crosses between processes and
`posekit infer` on several GPUs is not held to one process's decoding and pickling.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import threading
from collections import deque
from typing import Any, Iterable, Iterator, Sequence

from posekit import streams

log = logging.getLogger(__name__)

DEVICE_KINDS = ("cpu", "cuda")


def split_devices(device: str) -> list[str]:
    """The devices a --device string names, in order: ["cuda:0", "cuda:1"] for "cuda:0,1"; one
    element for a single device (returned as given)."""
    text = str(device).strip()
    if "," not in text and not text.endswith(":all"):
        return [text]
    kind_of = text.split(":", 1)[0]
    if text.endswith(":all") and "," not in text:
        if kind_of == "cuda":
            from posekit.extras import require

            count = require("torch", "several CUDA devices").cuda.device_count()
            if count == 0:
                raise ValueError(f"--device {text}: torch sees no CUDA device")
            return [f"cuda:{i}" for i in range(count)]
        if kind_of == "cpu":
            return ["cpu"] * (os.cpu_count() or 1)
        raise ValueError(f"--device {text}: expected cuda:all or cpu:all")
    out: list[str] = []
    kind = None
    for part in (p.strip() for p in text.split(",")):
        if part.isdigit() and kind is not None:
            name = f"{kind}:{part}"
        else:
            kind = part.split(":", 1)[0]
            name = part
        if kind not in DEVICE_KINDS or not name.split(":", 1)[-1].isdigit() and ":" in name:
            raise ValueError(f"--device {text}: expected devices like cuda:0,1 or cpu,cpu, got {part!r}")
        out.append("cpu" if kind == "cpu" else name)  # one CPU device: the index only names a worker
    return out


_ITEM, _END, _DONE, _ERROR, _READY, _RESULT = "item", "end", "done", "error", "ready", "result"

# frames per video range a worker decodes and runs (`stream_video`): long enough that seeking to
# its start (a key frame, then decoding forward) costs little, short enough to spread a video
VIDEO_RANGE_FRAMES = 256


def _worker(device: str, options: dict[str, Any], inputs: Any, outputs: Any) -> None:
    """One device's process: build the estimator, then run jobs (a method, its items, an end
    marker) until told to stop (None)."""
    from posekit.estimators import make_estimator

    try:
        estimator = make_estimator(device=device, **options)
    except Exception as exc:  # reported to the parent, which raises it
        outputs.put((_ERROR, _portable(exc, device)))
        return
    outputs.put((_READY, {"takes_boxes": getattr(estimator, "takes_boxes", True),
                          "frames_per_batch": int(getattr(estimator, "frames_per_batch", 1)),
                          "name": repr(estimator)}))
    while (job := inputs.get()) is not None:
        method, kwargs = job
        items = _job_items(inputs)
        try:
            if method == "stream":
                results = estimator.stream(items, **kwargs)
            elif method == "video":
                results = _video_ranges(estimator, items)
            else:
                run = getattr(estimator, "stream_boxes", None)
                results = run(items) if run is not None else streams.stream_boxes(estimator, items)
            for result in results:
                outputs.put((_RESULT, result))
            outputs.put((_DONE, None))
        except Exception as exc:  # reported to the parent, which raises it and stops the workers
            outputs.put((_ERROR, _portable(exc, device)))
            return


def _video_ranges(estimator: Any, ranges: Iterable[tuple[str, int, int, int]]) -> Iterator[list[tuple]]:
    """For each (path, start, stop, declared) frame range, in order: its frames' (index, timestamp,
    width, height, poses). The frames are decoded here, and all the ranges' frames go through the
    estimator as one stream (no drain between ranges). A range that ends early (the file holds
    fewer frames than its header declares) raises `InputError` as `VideoReader` words it."""
    from posekit.io import Frame, InputError, read_frame_range

    counts: deque = deque()  # frames of each range read to its end, in order

    def frames() -> Iterator[tuple[None, Frame]]:
        for path, start, stop, declared in ranges:
            n = 0
            for index, timestamp, image in read_frame_range(path, start, stop):
                n += 1
                yield None, Frame(path, index, image, timestamp)
            if n < stop - start:  # (another worker's range may be the first to end early)
                raise InputError(f"{path}: truncated video, no frame {start + n} of the {declared} frames its "
                                 "header declares")
            counts.append(n)

    done: list[tuple] = []
    stream = streams.stream_tagged(estimator, frames())
    try:
        for _, frame, poses in stream:
            done.append((frame.index, frame.timestamp, frame.image.shape[1], frame.image.shape[0], poses))
            while counts and len(done) >= counts[0]:
                n = counts.popleft()
                yield done[:n]
                done = done[n:]
    finally:
        stream.close()
    while counts:  # ranges whose last frames came out before the reader had finished them
        n = counts.popleft()
        yield done[:n]
        done = done[n:]


def _job_items(inputs: Any) -> Iterator[Any]:
    while True:
        kind, item = inputs.get()
        if kind == _END:
            return
        yield item


def _portable(exc: BaseException, device: str) -> BaseException:
    """`exc` if it pickles (so the parent raises the same type), else a RuntimeError naming it."""
    import pickle

    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - any pickling failure: send its text instead
        return RuntimeError(f"{device}: {type(exc).__name__}: {exc}")


class MultiDeviceEstimator:
    """One estimator per device, each in its own process, behind the estimator interface
    (``stream``, ``stream_boxes``, ``estimate_batch``, ``estimate_boxes``, ``detector``,
    ``estimator(image)``); results in input order, as one device gives them.

    devices: e.g. ["cuda:0", "cuda:1"] or ["cpu", "cpu"] (`split_devices`)
    options: `posekit.estimators.make_estimator`'s arguments other than device (det, pose,
             backend, precision and the estimator's keyword arguments)
    queue_frames: frames queued ahead per worker (bounds memory on long videos)

    Workers start when it is made and stay up until `close` (or the end of the process). If a
    stream is abandoned half-way or a worker fails, the workers are stopped and the next call
    starts fresh ones. One stream at a time. Workers are spawned, so a script that makes one
    must guard its entry point (``if __name__ == "__main__":``), as multiprocessing requires.
    """

    def __init__(self, devices: Sequence[str], queue_frames: int = 16, **options: Any) -> None:
        if len(devices) < 1:
            raise ValueError("expected at least one device")
        self.devices = list(devices)
        self.options = options
        self.queue_frames = int(queue_frames)
        self._workers: list[tuple[Any, Any, Any]] | None = None
        self._info: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.start()

    # -- workers ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start one worker per device and wait until each has built its estimator."""
        if self._workers is not None:
            return
        context = multiprocessing.get_context("spawn")
        workers = []
        for device in self.devices:
            inputs, outputs = context.Queue(self.queue_frames), context.Queue()
            process = context.Process(target=_worker, args=(device, self.options, inputs, outputs),
                                      name=f"posekit-{device}", daemon=True)
            process.start()
            workers.append((process, inputs, outputs))
        self._workers = workers
        for device, (process, _, outputs) in zip(self.devices, workers):
            kind, value = self._get(process, outputs, device)
            if kind == _ERROR:
                self.close()
                raise value
            self._info = value
        log.info("%d workers on %s: %s", len(workers), ", ".join(self.devices), self._info["name"])

    def close(self) -> None:
        """Stop the workers (ask, then terminate those that do not stop)."""
        workers, self._workers = self._workers, None
        for process, inputs, _ in workers or ():
            try:
                inputs.put_nowait(None)
            except (queue.Full, ValueError, OSError):
                pass
        for process, inputs, outputs in workers or ():
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
                process.join()
            inputs.cancel_join_thread()
            outputs.cancel_join_thread()

    def __enter__(self) -> "MultiDeviceEstimator":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @staticmethod
    def _get(process: Any, outputs: Any, device: str) -> tuple[str, Any]:
        while True:
            try:
                return outputs.get(timeout=1.0)
            except queue.Empty:
                if not process.is_alive():
                    raise RuntimeError(f"the worker on {device} exited (code {process.exitcode})") from None

    # -- jobs ---------------------------------------------------------------------------------

    def _run(self, method: str, kwargs: dict[str, Any], items: Iterable[Any], chunk: int | None = None) -> Iterator[Any]:
        """Deal `items` out to the workers in chunks (default: the estimator's frames_per_batch)
        and yield their results in input order."""
        if not self._lock.acquire(blocking=False):
            raise RuntimeError("a MultiDeviceEstimator runs one stream at a time; finish (or close) the other first")
        try:
            self.start()
            workers = self._workers
            chunk = max(1, int(chunk or self._info.get("frames_per_batch", 1)))
            stop = threading.Event()
            failure: list[BaseException] = []
            for _, inputs, _ in workers:
                inputs.put((method, kwargs))

            def put(inputs: Any, message: Any) -> bool:
                return streams.put_unless_stopped(inputs, message, stop)

            def feed() -> None:
                try:
                    for i, item in enumerate(items):
                        if isinstance(item, os.PathLike):
                            item = os.fspath(item)
                        elif isinstance(item, tuple) and isinstance(item[0], os.PathLike):
                            item = (os.fspath(item[0]), *item[1:])
                        if not put(workers[(i // chunk) % len(workers)][1], (_ITEM, item)):
                            return
                except BaseException as exc:  # raised by the consumer once the workers are done
                    failure.append(exc)
                finally:
                    for _, inputs, _ in workers:
                        put(inputs, (_END, None))

            feeder = threading.Thread(target=feed, name="posekit-deal", daemon=True)
            feeder.start()
            clean = False
            try:
                i = 0
                while True:
                    index = (i // chunk) % len(workers)
                    process, _, outputs = workers[index]
                    kind, value = self._get(process, outputs, self.devices[index])
                    if kind == _ERROR:
                        raise value
                    if kind == _DONE:  # no item i: every worker is done
                        for j, (other, _, out) in enumerate(workers):
                            if j != index:
                                kind, value = self._get(other, out, self.devices[j])
                                if kind == _ERROR:
                                    raise value
                        break
                    yield value
                    i += 1
                feeder.join()
                clean = True
                if failure:
                    raise failure[0]
            finally:
                if not clean:
                    stop.set()
                    self.close()  # abandoned or failed half-way: the next call starts fresh workers
        finally:
            self._lock.release()

    def stream(self, frames: Iterable[Any], prefetch: int = 8, with_detections: bool = False) -> Iterator[Any]:
        """Poses per frame (or (poses, detections) with `with_detections`), in order; frames are
        arrays or paths (decoded by the workers)."""
        return self._run("stream", {"prefetch": prefetch, "with_detections": with_detections}, frames)

    def stream_video(self, path: str | os.PathLike, frames: int, declared: int | None = None,
                     range_frames: int | None = None) -> Iterator[tuple[int, float, int, int, Any]]:
        """(index, timestamp, width, height, poses) for frames 0 .. frames-1 of a video file, in
        order, each worker decoding its own ranges of `range_frames` frames (dealt out in turn),
        so no frame crosses between processes: what `posekit infer` runs on a video whose
        container indexes its frames. declared: the header's frame count, for the truncation
        error (default `frames`). Timestamps are `posekit.io.VideoReader`'s."""
        size = int(range_frames or os.environ.get("POSEKIT_VIDEO_RANGE_FRAMES") or VIDEO_RANGE_FRAMES)
        if size < 1:
            raise ValueError(f"range_frames must be >= 1, got {size}")
        path = os.fspath(path)
        ranges = ((path, start, min(start + size, frames), declared or frames) for start in range(0, frames, size))
        for done in self._run("video", {}, ranges, chunk=1):
            yield from done

    def stream_boxes(self, pairs: Iterable[tuple[Any, Any]]) -> Iterator[Any]:
        """`estimate_boxes` over (image or path, person boxes) pairs, in order."""
        return self._run("stream_boxes", {}, pairs)

    @property
    def takes_boxes(self) -> bool:
        return bool(self._info.get("takes_boxes", True))

    @property
    def frames_per_batch(self) -> int:
        return int(self._info.get("frames_per_batch", 1))

    def __call__(self, image: Any) -> Any:
        return self.estimate_batch([image])[0]

    def estimate_batch(self, images: Sequence[Any]) -> list[Any]:
        return list(self.stream(images))

    def estimate_boxes(self, images: Sequence[Any], people: Sequence[Any]) -> list[Any]:
        return list(self.stream_boxes(zip(images, people)))

    def detector(self, image: Any) -> Any:
        return next(iter(self.stream([image], with_detections=True)))[1]

    def __repr__(self) -> str:
        return f"MultiDeviceEstimator({self.devices}, {self._info.get('name', '?')})"
