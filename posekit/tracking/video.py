"""Track the people of a video or camera end to end: pose estimation on every frame, then
`PoseTracker`, then per-frame JSON Lines, PoseTrack JSON, MOTChallenge text (any of the three)
and a rendered video with a stable colour per track ID and a short trail behind each person.

Every output is written under a temporary name and renamed when the video ends, however it
ends: at its last frame, at --max-frames, on Ctrl-C/SIGTERM or an error (truncated file), the
outputs hold every frame done and nothing half-written is left; a video with no frame leaves
none. The JSON Lines follow `posekit.schema` (the same records as `posekit infer`), with the
container's timestamps (variable frame rates too).

The render (drawing and trails) and then the records and the video encode run on two threads of
their own (`WriterThread`), a few frames behind the tracker, so the caller's thread only decodes
(or feeds the estimator) and tracks; a signal still lands between frames, every output holding
the same frames.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from posekit.io import JsonLinesWriter
from posekit.journal import signals_held
from posekit.streams import video_poses
from posekit.structures import Poses
from posekit.schema import frame_record
from posekit.tracking.mot import MotWriter
from posekit.tracking.posetrack import PoseTrackWriter
from posekit.tracking.tracker import PoseTracker
from posekit.tracking.writer import WriterThread

logger = logging.getLogger(__name__)

FORMATS = ("jsonl", "posetrack", "mot")


@dataclass
class TrackResult:
    """What `track_video` wrote and saw."""

    source: str
    frames: int
    tracks: int  # distinct track IDs reported
    jsonl: Path | None
    posetrack: Path | None
    video: Path | None
    resolution_changes: int = 0
    mot: Path | None = None
    detections: Path | None = None
    codec: str | None = None  # the render's codec ("h264", "mp4v")
    seconds: float = 0.0  # from opening the video to every output written

    @property
    def rate(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def outputs(self) -> list[Path]:
        return [p for p in (self.jsonl, self.posetrack, self.mot, self.detections, self.video) if p]


@dataclass
class _Tracked:
    """One tracked frame on its way to the outputs."""

    index: int
    image: np.ndarray
    poses: Poses
    source: str
    timestamp: float | None
    size: tuple[int, int]  # this frame's (width, height)
    render_size: tuple[int, int]  # the first frame's: one video file has one frame size
    file_name: str
    rescale: tuple[float, float] | None  # the resolution changed here: (sx, sy) for the trails
    rendered: np.ndarray | None = None  # the drawn frame, once the render thread has drawn it


class Trails:
    """The last `length` positions (hip centre, else box bottom centre) of every track."""

    def __init__(self, length: int = 20) -> None:
        self.length = length
        self._points: dict[int, deque] = {}

    def add(self, poses: Poses, keypoint_threshold: float = 0.3) -> None:
        seen = set()
        for i in range(len(poses)):
            tid = int(poses.track_ids[i])
            seen.add(tid)
            hips = poses.keypoints[i, 11:13][poses.keypoint_scores[i, 11:13] > keypoint_threshold]
            x0, _, x1, y1 = poses.boxes[i]
            point = hips.mean(0) if len(hips) else np.array([(x0 + x1) / 2, y1])
            self._points.setdefault(tid, deque(maxlen=self.length)).append(point)
        for tid in list(self._points):  # a trail fades by one point a frame once its person is gone
            if tid not in seen:
                self._points[tid].popleft()
                if not self._points[tid]:
                    del self._points[tid]

    def rescale(self, sx: float, sy: float) -> None:
        for trail in self._points.values():
            for n, p in enumerate(trail):
                trail[n] = p * [sx, sy]

    def draw(self, image: np.ndarray) -> np.ndarray:
        import cv2

        from posekit.draw import track_colour

        thickness = max(1, int(round(max(image.shape[:2]) / 500)))
        for tid, trail in self._points.items():
            if len(trail) > 1:
                points = np.round(np.stack(trail)).astype(np.int32).reshape(-1, 1, 2)
                cv2.polylines(image, [points], False, track_colour(tid), thickness, cv2.LINE_AA)
        return image


def track_video(source: str | int, out_dir: str | os.PathLike, *, estimator: Any, tracker: PoseTracker | None = None,
                render: bool = True, trail: int = 20, fps: float | None = None, stem: str | None = None,
                vid_id: int = 0, max_frames: int | None = None, formats: tuple[str, ...] = ("jsonl", "posetrack"),
                save_detections: bool = False, vis_threshold: float = 0.0, progress: bool = False,
                write_ahead: int = 8) -> TrackResult:
    """Estimate and track every person in a video file or camera (an int index).

    estimator: a `posekit.PoseEstimator` (anything with ``stream(images) -> iterator of Poses``)
    tracker:   a `PoseTracker` (a fresh default one when None; it is reset first)
    out_dir:   receives <stem>.jsonl, <stem>.posetrack.json, <stem>.txt (as `formats` asks: "jsonl",
               "posetrack", "mot" for MOTChallenge results), <stem>.detections.npz when
               `save_detections` (every frame's untracked poses, for `posekit.tracking.detections`)
               and, when `render`, <stem>.mp4
    fps:       frame rate for timestamps and the rendered video (default: the file's own rate for
               the render, the container's timestamps for the records)
    max_frames: stop after this many frames (for cameras, which never end by themselves)
    vis_threshold: the render draws tracked people whose detector box score reaches it
    progress:  a per-frame progress bar on stderr
    write_ahead: the render, and the records and encode, run on two threads of their own, each at
               most this many frames behind (so the estimator and the tracker never wait on
               them); 0 does all of it on the caller's thread
    Raises `posekit.io.InputError` for a missing, empty (0 frames) or truncated video; the
    outputs then hold the frames decoded before the problem (none when there were none). An
    interrupt (KeyboardInterrupt, posekit.journal.Terminated) passes through likewise, after
    the outputs are completed with every frame done.
    """
    from posekit.io import InputError, VideoReader, VideoSink

    out_dir = Path(out_dir)
    name = f"camera{source}" if isinstance(source, int) else Path(source).stem
    stem = stem or name
    if not isinstance(source, int) and not Path(source).is_file():
        raise InputError(f"{source}: no such file (expected a video)")
    ids: set[int] = set()
    trails = Trails(trail)
    size: tuple[int, int] | None = None
    first_size: tuple[int, int] | None = None
    changes = 0
    unknown = set(formats) - set(FORMATS)
    if unknown or not formats:
        raise ValueError(f"expected formats among {', '.join(FORMATS)}, got {', '.join(formats) or 'none'}")
    jsonl_path = out_dir / f"{stem}.jsonl" if "jsonl" in formats else None
    posetrack_path = out_dir / f"{stem}.posetrack.json" if "posetrack" in formats else None
    mot_path = out_dir / f"{stem}.txt" if "mot" in formats else None
    detections_path = out_dir / f"{stem}.detections.npz" if save_detections else None
    detections: list[Poses] = []
    video_path = out_dir / f"{stem}.mp4" if render else None
    frames = 0
    codec = None
    start = time.perf_counter()
    with VideoReader(source, max_frames) as reader:
        rate = float(fps) if fps else (reader.fps or 30.0)
        tracker = tracker or PoseTracker(frame_rate=rate)
        tracker.reset()
        bar = _progress(progress, reader, max_frames)
        posetrack = PoseTrackWriter(posetrack_path, vid_id=vid_id) if posetrack_path else None
        mot = MotWriter(mot_path).__enter__() if mot_path else None
        render_to = VideoSink(video_path, fps=rate) if render else contextlib.nullcontext()
        writer: WriterThread | None = None
        renderer: WriterThread | None = None
        # (frame, size, poses); on several devices the workers decode the frames themselves, and
        # this process decodes them again only for the render
        stream = video_poses(estimator, reader, images=render)
        try:
            # The render closes before the JSON files; each keeps the frames done however this ends.
            with contextlib.ExitStack() as stack:
                jsonl = stack.enter_context(JsonLinesWriter(jsonl_path)) if jsonl_path else None
                sink = stack.enter_context(render_to)

                def render_frame(item: _Tracked) -> np.ndarray:
                    if item.rescale is not None:
                        trails.rescale(*item.rescale)
                    return _render(item.image, item.poses, trails, item.render_size, vis_threshold)

                def write(item: _Tracked) -> None:
                    """One frame to every output (on the writer thread, in frame order)."""
                    rendered = None
                    if sink is not None:
                        rendered = item.rendered if item.rendered is not None else render_frame(item)
                    record = frame_record(item.index, item.poses, source=item.source, timestamp=item.timestamp,
                                          image_size=item.size, file_name=item.file_name) if jsonl else None
                    with signals_held():  # (the caller's thread when write_ahead is 0)
                        if jsonl is not None:
                            jsonl.write(record)
                        if posetrack is not None:
                            posetrack.add(item.poses, file_name=item.file_name, image_size=item.size)
                        if mot is not None:
                            mot.add(item.index, item.poses)
                        if sink is not None:
                            sink.write(rendered)

                def render_then_write(item: _Tracked) -> None:
                    item.rendered = render_frame(item)
                    writer.put(item)

                writer = WriterThread(write, write_ahead, name="posekit-track-writer")
                # the render (drawing, trails) on a thread of its own ahead of the writer's records and
                # encode, when there is a render and threads at all: two threads share a frame's work
                renderer = (WriterThread(render_then_write, write_ahead, name="posekit-track-render")
                            if sink is not None and write_ahead else None)
                feed = renderer or writer
                queued = 0
                try:
                    for frame, (w, h), poses in stream:
                        if save_detections:
                            detections.append(poses)
                        rescale = None
                        if size is not None and (w, h) != size:
                            changes += 1
                            logger.warning("%s: frame %d is %dx%d, earlier frames %dx%d; rescaling the tracks",
                                           source, queued, w, h, *size)
                            rescale = (w / size[0], h / size[1])
                        size = (w, h)
                        first_size = first_size or size
                        timestamp = queued / float(fps) if fps else frame.timestamp
                        tracked = tracker.update(poses, timestamp=timestamp, image_size=size)
                        ids.update(tracked.track_ids.tolist())
                        feed.put(_Tracked(queued, frame.image, tracked, frame.source, timestamp, size, first_size,
                                            f"{name}/{queued:06d}.jpg", rescale))
                        queued += 1
                        bar.update(1)
                finally:
                    try:
                        stream.close()  # joins the estimator's threads before the files are closed
                        bar.close()
                    finally:
                        try:
                            if renderer is not None:
                                renderer.close()  # renders what is queued, handing it to the writer
                        finally:
                            writer.close()  # the frames queued are written; the files close after it
                        frames = writer.written
                        codec = getattr(sink, "codec", None)
        finally:
            for thread in (renderer, writer):  # (already ended unless closing them was interrupted)
                if thread is not None:
                    thread.abort()
            if writer is not None:
                frames = writer.written
            if posetrack is not None and frames:
                _keep(posetrack)
            if mot is not None:  # the rows of the frames done are kept, as by the writers above
                if frames:
                    mot.__exit__(None, None, None)
                else:  # deletes its temporary
                    mot.__exit__(ValueError, ValueError("no frame"), None)
            if save_detections and frames:
                from posekit.tracking.detections import save_detections as write_detections

                # the frames written to the other outputs (an interrupt may leave some estimated, not written)
                write_detections(detections_path, detections[:frames], source=source, fps=rate)
    logger.info("%s: %d frames, %d tracks -> %s", source, frames, len(ids), out_dir)
    return TrackResult(str(source), frames, len(ids), jsonl_path, posetrack_path, video_path, changes,
                       mot=mot_path, detections=detections_path, codec=codec, seconds=time.perf_counter() - start)


def _keep(posetrack: PoseTrackWriter) -> None:
    """Write the PoseTrack JSON of the frames done (atomically); when the video ended with an
    error, failing to write it (a full disk) is logged and does not hide that error."""
    import sys

    from posekit.io import describe_os_error

    failing = sys.exc_info()[1]
    try:
        posetrack.close()
    except OSError as exc:
        if failing is None:
            raise
        logger.error("%s: not written (%s)", posetrack.path, describe_os_error(exc))


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(enabled: bool, reader: Any, max_frames: int | None) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    total = min(reader.declared, max_frames or reader.declared) or None
    return tqdm(total=total, unit="frame", desc=Path(reader.name).name, dynamic_ncols=True, mininterval=0.5)


def _render(image: np.ndarray, tracked: Poses, trails: Trails, size: tuple[int, int],
            vis_threshold: float = 0.0) -> np.ndarray:
    from posekit.draw import draw_poses

    trails.add(tracked)
    # in place: the frame is the render's alone by now (the estimator and tracker are done with it)
    canvas = draw_poses(image, tracked, min_box_score=vis_threshold, copy=False)
    trails.draw(canvas)
    if (canvas.shape[1], canvas.shape[0]) != size:  # one video file has one frame size
        import cv2

        canvas = cv2.resize(canvas, size, interpolation=cv2.INTER_AREA)
    return canvas
