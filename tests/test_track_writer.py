"""`track_video`'s writer thread: the records, render and encode written off the caller's thread
give the same files as writing them on it (byte for byte; the render frame for frame), and
`WriterThread` keeps order, bounds its queue and hands its errors to the caller."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import pytest

from paths import DEMO_VIDEO
from videos import read_frames, write_avi
from posekit.tracking.writer import WriterThread


def _count_frames(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    n = 0
    while capture.read()[0]:
        n += 1
    capture.release()
    return n


@pytest.fixture(scope="module")
def looped_demo(tmp_path_factory, shared_env) -> tuple[Path, list]:
    """The demo video's 5 frames at 480x270 looped 8 times (40 frames), and every frame's
    detections from the real CPU pipeline (run once on the 5 frames, then repeated like them)."""
    from posekit.estimators import make_estimator
    from posekit.tracking.detections import detect_video

    folder = tmp_path_factory.mktemp("looped")
    frames = read_frames(DEMO_VIDEO, (480, 270))
    once = list(detect_video(str(write_avi(folder / "once.avi", frames)), make_estimator()))
    assert len(once) == 5 and sum(len(p) for p in once) >= 10, [len(p) for p in once]
    return write_avi(folder / "looped.avi", frames * 8), once * 8


@pytest.mark.parametrize("render, formats, write_ahead", [
    (True, ("jsonl", "posetrack", "mot"), 8),
    (True, ("jsonl", "posetrack", "mot"), 1),  # the tracker waits on the writer at every frame
    (False, ("jsonl", "mot"), 3),
])
def test_writer_thread_writes_what_the_serial_path_writes(looped_demo, tmp_path, render, formats, write_ahead):
    from posekit.tracking.detections import ReplayedDetections
    from posekit.tracking.video import track_video

    video, detections = looped_demo
    results = {}
    for ahead in (0, write_ahead):
        out = tmp_path / f"ahead{ahead}"
        results[ahead] = track_video(str(video), out, estimator=ReplayedDetections(detections), render=render,
                                     formats=formats, vis_threshold=0.5, write_ahead=ahead)
    serial, threaded = results[0], results[write_ahead]
    assert serial.frames == threaded.frames == 40 and serial.tracks == threaded.tracks >= 2
    assert [p.name for p in serial.outputs] == [p.name for p in threaded.outputs]
    for a, b in zip(serial.outputs, threaded.outputs):
        assert a.stat().st_size > 0
        if a.suffix == ".mp4":
            assert _count_frames(a) == _count_frames(b) == 40, f"{b}: frames"
        else:
            assert a.read_bytes() == b.read_bytes(), f"{b} differs from the serial path's {a}"


class _StopsAt:
    """Replayed detections whose stream raises `error` when frame `at` is asked for: Ctrl-C (or a
    failing model) landing while the estimator works, with frames still queued for the writers."""

    def __init__(self, frames: list, at: int, error: BaseException) -> None:
        self.frames, self.at, self.error = frames, at, error

    def stream(self, images):
        for n, _ in enumerate(images):
            if n == self.at:
                raise self.error
            yield self.frames[n]


@pytest.mark.parametrize("error", [KeyboardInterrupt(), RuntimeError("the pose model failed")])
def test_an_interrupt_keeps_every_tracked_frame_in_every_output(looped_demo, tmp_path, error):
    import json

    from posekit.tracking.video import track_video

    video, detections = looped_demo
    with pytest.raises(type(error)):
        track_video(str(video), tmp_path, estimator=_StopsAt(detections, 23, error),
                    formats=("jsonl", "posetrack", "mot"), vis_threshold=0.5, write_ahead=8)
    records = [json.loads(line) for line in (tmp_path / "looped.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(23))  # the frames queued were written too
    assert len(json.loads((tmp_path / "looped.posetrack.json").read_text())["images"]) == 23
    rows = (tmp_path / "looped.txt").read_text().splitlines()
    assert {int(row.split(",")[0]) for row in rows} <= set(range(1, 24)) and int(rows[-1].split(",")[0]) > 15
    assert _count_frames(tmp_path / "looped.mp4") == 23
    assert sorted(p.name for p in tmp_path.iterdir()) == ["looped.jsonl", "looped.mp4", "looped.posetrack.json",
                                                          "looped.txt"]


def test_writer_thread_keeps_order_and_bounds_its_queue():
    seen, most_ahead = [], [0]
    put = [0]

    def write(item: int) -> None:
        time.sleep(0.002)
        most_ahead[0] = max(most_ahead[0], put[0] - len(seen))
        seen.append((item, threading.current_thread().name))

    writer = WriterThread(write, depth=3, name="test-writer")
    for n in range(30):
        writer.put(n)
        put[0] += 1
    writer.close()
    assert [n for n, _ in seen] == list(range(30)) and writer.written == 30
    assert {name for _, name in seen} == {"test-writer"}
    assert most_ahead[0] <= 3 + 1  # the queue, plus the item being written


def test_depth_zero_writes_on_the_callers_thread():
    seen = []
    writer = WriterThread(lambda item: seen.append((item, threading.current_thread().name)), depth=0)
    for n in range(3):
        writer.put(n)
        assert len(seen) == n + 1  # written before put returns
    writer.close()
    assert seen == [(n, threading.current_thread().name) for n in range(3)] and writer.written == 3


@pytest.mark.parametrize("depth", [0, 2])
def test_a_write_error_reaches_the_caller_and_stops_the_writer(depth):
    seen = []

    def write(item: int) -> None:
        if item == 4:
            raise OSError(28, "No space left on device")
        seen.append(item)

    writer = WriterThread(write, depth=depth)
    with pytest.raises(OSError, match="No space left"):
        for n in range(50):
            writer.put(n)
        writer.close()
    writer.close()  # raised once: closing again ends quietly
    assert seen == [0, 1, 2, 3] and writer.written == 4


def test_close_writes_every_item_queued():
    gate = threading.Event()
    seen = []

    def write(item: int) -> None:
        gate.wait(5)
        seen.append(item)

    writer = WriterThread(write, depth=8)
    for n in range(6):
        writer.put(n)
    gate.set()
    writer.close()
    assert seen == list(range(6))


def test_abort_drops_what_is_queued_after_the_item_in_hand():
    started, gate = threading.Event(), threading.Event()
    seen = []

    def write(item: int) -> None:
        started.set()
        gate.wait(5)
        seen.append(item)

    writer = WriterThread(write, depth=8)
    for n in range(6):
        writer.put(n)
    started.wait(5)
    threading.Timer(0.05, gate.set).start()
    writer.abort()
    assert seen == [0] and writer.written == 1


def test_replayed_detections_refuse_a_longer_video():
    from posekit.structures import Poses
    from posekit.tracking.detections import ReplayedDetections

    stream = ReplayedDetections([Poses.empty()] * 2).stream(iter(range(3)))
    assert len(list(zip(range(2), stream))) == 2
    with pytest.raises(ValueError, match=r"expected at most 2 frames \(the detections saved\), got more"):
        next(stream)
