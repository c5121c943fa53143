"""`WriterThread`: a video's per-frame outputs written in order on a thread of their own, so the
caller's thread (decoding, the pose pipeline, the tracker) never waits on a render or an encode
unless the writer falls `depth` frames behind.

Signals reach only the main thread, so a frame is written to every output whole, never cut by
Ctrl-C or SIGTERM; the outputs always hold the same frames. Closing writes what is queued (the
frames the caller finished) unless a second interrupt arrives meanwhile, which stops the writer
after the frame in hand.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Callable

logger = logging.getLogger(__name__)


class WriterThread:
    """Calls `write(item)` for every item `put`, in order, on one background thread.

    write: writes one item (a frame) to every output; an exception stops the thread and is
           raised in the caller by the next `put` or by `close`
    depth: items queued at most; `put` waits (the caller slows to the writer's pace) beyond it.
           0 writes on the caller's thread instead, in `put` (no thread: the serial path)
    `written` counts the items written whole.
    """

    def __init__(self, write: Callable[[Any], None], depth: int = 8, name: str = "posekit-writer") -> None:
        if depth < 0:
            raise ValueError(f"expected depth >= 0 frames, got {depth}")
        self._write = write
        self.written = 0
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        if depth:
            self._queue: queue.Queue = queue.Queue(maxsize=depth)
            self._closing = threading.Event()
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._run, name=name, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    item = self._queue.get(timeout=0.05)
                except queue.Empty:
                    if self._closing.is_set():
                        return
                    continue
                self._write(item)
                self.written += 1
        except BaseException as exc:  # raised in the caller by put() or close()
            self._error = exc

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def put(self, item: Any) -> None:
        """Queue one item (or, with depth 0, write it now); raises the writer's error, if any."""
        if self._thread is None:
            self._write(item)
            self.written += 1
            return
        while True:
            self._raise()
            if not self._thread.is_alive():
                raise RuntimeError("the writer thread has stopped")
            try:
                self._queue.put(item, timeout=0.05)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        """Write the items queued, then end the thread; raises the writer's error, if any. An
        interrupt while waiting stops the writer after the item it is writing, and passes on."""
        if self._thread is not None:
            self._closing.set()
            try:
                self._thread.join()
            except BaseException:
                self.abort()
                raise
        self._raise()

    def abort(self) -> None:
        """End the thread after the item it is writing, dropping the ones queued; signals wait
        until it has (the outputs must not close under it)."""
        if self._thread is None:
            return
        from posekit.journal import signals_held

        self._stop.set()
        with signals_held():
            self._thread.join()
