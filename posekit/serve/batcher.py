"""`Batcher`: dynamic batching of single images from many callers into `estimate_batch` calls.

Callers `submit` images and get one `concurrent.futures.Future` per image. Worker threads take
whatever is waiting: up to `max_batch` images, waiting at most `max_wait_ms` after the first one
for more to arrive, and run them as one batch. The queue is bounded (`max_queue` images waiting):
a submission that does not fit raises `QueueFull` at once instead of growing memory, so a server
can answer 503. `close` stops admission and lets the workers finish everything already admitted.

Plain threads and the standard library only: no web framework is imported here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from typing import Any, Callable, Sequence

log = logging.getLogger(__name__)


class QueueFull(RuntimeError):
    """The batcher's queue has no room for a submission; retry later."""


class BatcherClosed(RuntimeError):
    """The batcher is shutting down and takes no new work."""


class Batcher:
    """Group images submitted from many threads into batches for ``run_batch(images) -> results``.

    run_batch:    called with a list of up to `max_batch` items, returns one result per item in order
                  (e.g. ``PoseEstimator.estimate_batch``)
    max_batch:    most items per call
    max_wait_ms:  how long a worker holds a partial batch open for more items (0: take what is there)
    max_queue:    most items admitted but not yet taken by a worker; beyond it `submit` raises QueueFull
    workers:      threads calling `run_batch` at once (on a 2-core CPU, 2-3 single-threaded ONNX
                  Runtime calls keep both cores busy; on a GPU, 1)
    on_batch:     optional ``on_batch(size, seconds)`` after each call (metrics)
    """

    def __init__(self, run_batch: Callable[[list[Any]], Sequence[Any]], max_batch: int = 8,
                 max_wait_ms: float = 5.0, max_queue: int = 64, workers: int = 1,
                 on_batch: Callable[[int, float], None] | None = None) -> None:
        if max_batch < 1 or max_queue < 1 or workers < 1 or max_wait_ms < 0:
            raise ValueError(f"expected max_batch, max_queue, workers >= 1 and max_wait_ms >= 0, got "
                             f"{max_batch}, {max_queue}, {workers}, {max_wait_ms}")
        self.run_batch = run_batch
        self.max_batch = int(max_batch)
        self.max_wait = float(max_wait_ms) / 1000.0
        self.max_queue = int(max_queue)
        self.on_batch = on_batch
        self._queue: deque[tuple[Any, Future]] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._busy = 0  # items taken by workers and not yet answered
        self._threads = [threading.Thread(target=self._work, name=f"posekit-batcher-{i}", daemon=True)
                         for i in range(int(workers))]
        for t in self._threads:
            t.start()

    @property
    def depth(self) -> int:
        """Items admitted and waiting for a worker."""
        return len(self._queue)

    @property
    def in_flight(self) -> int:
        """Items admitted and not yet answered (waiting or running)."""
        with self._cond:
            return len(self._queue) + self._busy

    def submit(self, items: Sequence[Any]) -> list[Future]:
        """Admit all of `items` or none: one Future per item, resolved with its result (or the
        exception its batch raised). Raises QueueFull when they do not fit, BatcherClosed after close."""
        items = list(items)
        if len(items) > self.max_queue:
            raise QueueFull(f"{len(items)} items exceed the queue's {self.max_queue}")
        with self._cond:
            if self._closed:
                raise BatcherClosed("the batcher is shutting down")
            if len(self._queue) + len(items) > self.max_queue:
                raise QueueFull(f"queue full: {len(self._queue)} of {self.max_queue} waiting")
            futures = [Future() for _ in items]
            self._queue.extend(zip(items, futures))
            self._cond.notify_all()
        return futures

    def _take(self) -> list[tuple[Any, Future]] | None:
        """The next batch, or None once closed and drained."""
        with self._cond:
            while True:
                while not self._queue:
                    if self._closed:
                        return None
                    self._cond.wait()
                deadline = time.monotonic() + self.max_wait
                while len(self._queue) < self.max_batch and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                if self._queue:  # another worker may have taken everything while this one waited
                    break
            n = min(self.max_batch, len(self._queue))
            batch = [self._queue.popleft() for _ in range(n)]
            self._busy += n
            return batch

    def _work(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            items = [item for item, _ in batch]
            start = time.perf_counter()
            try:
                results = self.run_batch(items)
                if len(results) != len(items):
                    raise RuntimeError(f"run_batch returned {len(results)} results for {len(items)} items")
            except Exception as exc:  # the callers get it; the worker goes on with the next batch
                log.exception("a batch of %d failed", len(items))
                for _, future in batch:
                    future.set_exception(exc)
            else:
                for (_, future), result in zip(batch, results):
                    future.set_result(result)
            finally:
                with self._cond:
                    self._busy -= len(batch)
            if self.on_batch is not None:
                self.on_batch(len(items), time.perf_counter() - start)

    def close(self, timeout: float | None = None) -> bool:
        """Take no new items, finish every admitted one, stop the workers. True when all finished
        within `timeout` seconds (None: wait for them)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self._threads:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        done = not any(t.is_alive() for t in self._threads)
        if not done:
            log.warning("batcher: %d items still unfinished after %s s", self.in_flight, timeout)
        return done
