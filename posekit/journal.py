"""Keeping finished work: a results journal appended as each input is done, signals turned into
interrupts that the writers survive, and the final files written with a second Ctrl-C held off.

The journal (``results.journal.jsonl`` in the output folder) holds one JSON object a line, one
per finished (or failed) input, written and flushed whole. It is valid up to its last complete
line: a line cut by a kill or a full disk is ignored on reading and cut off before appending.
`posekit infer --resume` reads it to skip the inputs already done.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any, Iterator

import orjson

log = logging.getLogger(__name__)

JOURNAL_NAME = "results.journal.jsonl"


class Terminated(KeyboardInterrupt):
    """SIGTERM (or SIGHUP), raised in the main thread the way Ctrl-C raises KeyboardInterrupt, so
    the same code keeps finished work for both."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def interrupt_name(exc: BaseException) -> str:
    """'SIGTERM', 'SIGHUP' or 'SIGINT' for an interrupt."""
    return str(exc) if isinstance(exc, Terminated) else "SIGINT"


def exit_code(exc: BaseException) -> int:
    """The shell's convention: 128 + the signal number (130 for Ctrl-C, 143 for SIGTERM)."""
    return 128 + (exc.signum if isinstance(exc, Terminated) else signal.SIGINT)


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated(signum)


@contextlib.contextmanager
def signals_as_interrupts() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise `Terminated` in the main thread (SIGINT already
    raises KeyboardInterrupt). Does nothing outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _raise_terminated) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Within the block a SIGINT/SIGTERM/SIGHUP is noted, not acted on (the final files are being
    written); after it, the first one noted is raised."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    signums = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, lambda signum, frame: received.append(signum)) for s in signums}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if received:
        raise KeyboardInterrupt() if received[0] == signal.SIGINT else Terminated(received[0])


class ResultsJournal:
    """An append-only JSON Lines log of finished inputs, keyed by output name.

    Records are dicts with at least "name" (the input's output name), "input" and "status"
    ("done" or "failed"); the last record of a name wins. `append` may be called from several
    threads.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._file: Any = None
        self._lock = threading.Lock()

    def read(self) -> tuple[dict[str, dict], int]:
        """(records by name, the byte length of the valid part). Stops at the first line that is
        cut or not a JSON object; a missing journal is empty."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return {}, 0
        records: dict[str, dict] = {}
        valid = 0
        for line in data.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                break
            if not isinstance(record, dict) or "name" not in record:
                break
            records[record["name"]] = record
            valid += len(line)
        if valid < len(data):
            log.warning("%s: ignoring %d bytes after the last complete record (an interrupted write)",
                        self.path, len(data) - valid)
        return records, valid

    def open(self, fresh: bool) -> dict[str, dict]:
        """Open for appending; returns the records kept. fresh=True starts an empty journal;
        otherwise the records are kept and a cut last line is removed."""
        records, valid = ({}, 0) if fresh else self.read()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "r+b" if self.path.exists() else "wb", buffering=0)
        self._file.truncate(valid)
        self._file.seek(valid)
        return records

    def append(self, record: dict) -> None:
        line = orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
        with self._lock:
            if self._file is None:  # closed: a reader thread finishing after the run ended
                log.debug("%s: closed, not recording %s", self.path, record.get("name"))
                return
            view = memoryview(line)
            while view:  # unbuffered: each record reaches the file now, whole or (on a full disk) cut
                view = view[self._file.write(view):]

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                try:
                    self._file.close()
                except OSError as exc:  # the last flush hit a full disk: the journal is valid up to there
                    log.error("%s: %s", self.path, exc)
                self._file = None

    def remove(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)
