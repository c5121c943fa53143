"""What `posekit track` costs beyond the pose pipeline: `track_video` run with an estimator that
replays precomputed poses, so every millisecond measured is the track loop's own (decode,
tracker, JSON Lines / PoseTrack / MOT records, render, video encode).

    PYTHONPATH=$PWD POSEKIT_MODELS=../shared/models python scripts/track_overhead.py \
        --video ../shared/media/demo.mp4 --frames 300

The video's frames are looped into a --frames-long temporary video (mp4v, as the GPU figure's);
its poses come from the CPU default pipeline run once on the original frames (or from a
`--save-detections` npz given with --detections) and are replayed in the same loop. Prints, per
frame: the whole `track_video` wall time, the caller thread's share (what bounds the frames/s a
pipeline on other threads can reach), the decode time, and each component's thread CPU and wall
time by thread (tracker.update, records, render, encode), for a run with the render and one with
--no-video. On a shared machine the CPU times are the steadier figures.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


class Timings:
    """Wall seconds and the thread's CPU seconds per (component, thread name). On a shared
    machine the CPU time is the steadier figure: it leaves out the time other work held the core."""

    def __init__(self) -> None:
        self.seconds: dict[tuple[str, str], float] = collections.defaultdict(float)
        self.cpu: dict[tuple[str, str], float] = collections.defaultdict(float)
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def measure(self, name: str) -> Iterator[None]:
        start, cpu = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            key = (name, threading.current_thread().name)
            with self._lock:
                self.seconds[key] += time.perf_counter() - start
                self.cpu[key] += time.thread_time() - cpu

    def wrap(self, name: str, fn: Any) -> Any:
        def timed(*args: Any, **kw: Any) -> Any:
            with self.measure(name):
                return fn(*args, **kw)

        timed.__wrapped__ = fn
        return timed


@contextlib.contextmanager
def instrumented(timings: Timings) -> Iterator[None]:
    """Time the track loop's components where `posekit.tracking.video` calls them."""
    import posekit.io as pio
    import posekit.tracking.video as video
    from posekit.tracking.mot import MotWriter
    from posekit.tracking.posetrack import PoseTrackWriter

    patches = [
        (video, "_render", "render (draw + trails)"),
        (video, "frame_record", "JSON Lines record"),
        (pio.JsonLinesWriter, "write", "JSON Lines write"),
        (PoseTrackWriter, "add", "PoseTrack add"),
        (PoseTrackWriter, "close", "PoseTrack write (at the end)"),
        (MotWriter, "add", "MOT add"),
        (pio.VideoSink, "write", "encode (VideoSink.write)"),
        (pio.VideoSink, "_release", "encode flush (at the end)"),
    ]
    saved = []
    for owner, attr, name in patches:
        if not hasattr(owner, attr):
            continue
        original = owner.__dict__[attr] if isinstance(owner, type) else getattr(owner, attr)
        saved.append((owner, attr, original))
        setattr(owner, attr, timings.wrap(name, original))
    try:
        yield
    finally:
        for owner, attr, original in saved:
            setattr(owner, attr, original)


class TimedTracker:
    """A `PoseTracker` whose updates are timed (track_video calls reset() and update())."""

    def __init__(self, tracker: Any, timings: Timings) -> None:
        self._tracker = tracker
        self._timings = timings

    def reset(self) -> None:
        self._tracker.reset()

    def update(self, poses: Any, **kw: Any) -> Any:
        with self._timings.measure("tracker.update"):
            return self._tracker.update(poses, **kw)


class ReplayEstimator:
    """An estimator whose `stream` yields precomputed poses, frame n getting poses[n % len]; the
    time spent pulling the next image (decoding) is recorded as "decode"."""

    def __init__(self, poses: list, timings: Timings) -> None:
        self.poses = poses
        self.timings = timings

    def stream(self, images: Iterator[np.ndarray]) -> Iterator[Any]:
        n = 0
        it = iter(images)
        while True:
            with self.timings.measure("decode"):
                try:
                    next(it)
                except StopIteration:
                    return
            yield self.poses[n % len(self.poses)]
            n += 1


def looped_video(source: Path, frames: int, folder: Path) -> Path:
    """`source`'s frames repeated up to `frames` frames, written as mp4v at its frame rate."""
    from posekit.io import video_fps
    from posekit.product_bench import make_looped_video

    return make_looped_video(source, frames, folder / f"{source.stem}-x{frames}.mp4", fps=video_fps(str(source)))


def source_poses(video: Path, detections: Path | None, cache: Path, models: list[str]) -> list:
    """The poses of every frame of `video` from `posekit track`'s pipeline on the CPU with the
    model options `models` (computed once, kept in `cache`), or loaded from a `--save-detections` npz."""
    from posekit.tracking.detections import detect_video, load_detections, save_detections

    if detections is not None:
        return load_detections(detections)
    tag = "-".join(m.lstrip("-") for m in models) or "default"
    cached = cache / f"{video.stem}.{tag}.detections.npz"
    if cached.is_file():
        return load_detections(cached)
    from posekit.cli import build_parser
    from posekit.commands import make_estimator

    args = build_parser().parse_args(["track", "-", "--out", "-", *models])
    estimator = make_estimator(args, det_score_threshold=args.det_threshold, oks_threshold=args.oks_threshold)
    poses = list(detect_video(str(video), estimator))
    cache.mkdir(parents=True, exist_ok=True)
    save_detections(cached, poses, source=video)
    return poses


def run_once(video: Path, poses: list, out: Path, render: bool, formats: tuple[str, ...], fps: float,
             write_ahead: int | None) -> dict:
    from posekit.tracking.tracker import PoseTracker
    from posekit.tracking.video import track_video

    timings = Timings()
    tracker = TimedTracker(PoseTracker(frame_rate=fps), timings)
    estimator = ReplayEstimator(poses, timings)
    main = threading.current_thread().name
    with instrumented(timings):
        cpu0, caller0, start = time.process_time(), time.thread_time(), time.perf_counter()
        result = track_video(str(video), out, estimator=estimator, tracker=tracker, render=render, formats=formats,
                             vis_threshold=0.5, **({"write_ahead": write_ahead} if write_ahead is not None else {}))
        wall, cpu, caller = (time.perf_counter() - start, time.process_time() - cpu0, time.thread_time() - caller0)
    frames = result.frames

    def label(name: str, thread: str) -> str:
        return f"{name} [{'caller' if thread == main else thread}]"

    decode = sum(s for (name, _), s in timings.seconds.items() if name == "decode")
    decode_cpu = sum(s for (name, _), s in timings.cpu.items() if name == "decode")
    return {"render": render, "frames": frames, "tracks": result.tracks, "codec": result.codec,
            "ms_per_frame_wall": 1000 * wall / frames,
            "ms_per_frame_wall_without_decode": 1000 * (wall - decode) / frames,
            "ms_per_frame_process_cpu": 1000 * cpu / frames,
            # what bounds the frames/s of a pipeline whose estimator runs on other threads
            "ms_per_frame_caller_cpu_without_decode": 1000 * (caller - decode_cpu) / frames,
            "components_wall_ms_per_frame": {label(*k): 1000 * s / frames for k, s in sorted(timings.seconds.items())},
            "components_cpu_ms_per_frame": {label(*k): 1000 * s / frames for k, s in sorted(timings.cpu.items())}}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--video", type=Path, default=SHARED / "media" / "demo.mp4")
    p.add_argument("--frames", type=int, default=300, help="frames of the looped video (default 300)")
    p.add_argument("--detections", type=Path, help="a --save-detections npz of the video (else computed once)")
    p.add_argument("--models", default="--det yolox-nano --pose movenet-thunder --precision fp32",
                   help="`posekit track` model options the poses are computed with, on the CPU (default: the "
                        "GPU pipeline's models, %(default)s; '' for the CPU default)")
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "posekit-track-overhead",
                   help="where computed poses and the looped video are kept")
    p.add_argument("--formats", default="jsonl,posetrack", help="track_video formats (default jsonl,posetrack)")
    p.add_argument("--repeat", type=int, default=1, help="runs of each setting; the least CPU is reported")
    p.add_argument("--write-ahead", type=int, help="track_video's write_ahead (default: its own; 0: serial)")
    p.add_argument("--json", type=Path, help="also write the report here")
    args = p.parse_args()

    os.environ.setdefault("POSEKIT_MODELS", str(SHARED / "models"))
    poses = source_poses(args.video, args.detections, args.cache, args.models.split())
    looped = looped_video(args.video, args.frames, args.cache)
    import cv2

    capture = cv2.VideoCapture(str(looped))
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    capture.release()
    people = float(np.mean([len(x) for x in poses]))
    formats = tuple(args.formats.split(","))
    runs = []
    for render in (True, False):
        best = None
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as out:
                row = run_once(looped, poses, Path(out), render, formats, fps, args.write_ahead)
            if best is None or row["ms_per_frame_process_cpu"] < best["ms_per_frame_process_cpu"]:
                best = row
        runs.append(best)
    report = {"video": str(args.video), "frames": args.frames, "size": size, "people_per_frame": round(people, 2),
              "formats": formats, "machine": f"{platform.node()} ({os.cpu_count()} CPUs, {platform.processor()})",
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "python": sys.version.split()[0],
              "runs": runs}
    print(f"{args.video.name} looped to {args.frames} frames, {size[0]}x{size[1]}, {people:.1f} people a frame "
          f"(detections), formats {','.join(formats)}")
    for row in runs:
        label = "with render" if row["render"] else "--no-video"
        print(f"\n{label} ({row['codec'] or 'no video'}), ms per frame: wall {row['ms_per_frame_wall']:.2f} "
              f"({row['ms_per_frame_wall_without_decode']:.2f} without decode), process CPU "
              f"{row['ms_per_frame_process_cpu']:.2f}, caller thread CPU without decode "
              f"{row['ms_per_frame_caller_cpu_without_decode']:.2f}")
        print("      CPU     wall  component [thread]")
        walls = row["components_wall_ms_per_frame"]
        for name, ms in sorted(row["components_cpu_ms_per_frame"].items(), key=lambda kv: -kv[1]):
            print(f"  {ms:7.3f}  {walls[name]:7.3f}  {name}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
