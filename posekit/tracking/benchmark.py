"""Trackers compared on the same detections: each sequence's detections are computed once (or
loaded from `posekit.tracking.detections` files) and replayed into every tracker, whose output is
scored against the sequence's MOTChallenge ground truth (box IoU 0.5) and timed.

`posekit bench --stage track` prints the table; `tracker_speed` times a tracker alone on a
synthetic crowd (the "20 people" figure).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from posekit.structures import Poses

logger = logging.getLogger(__name__)

COLUMNS = ("MOTA", "IDF1", "HOTA", "IDSW", "FP", "FN", "ms_per_frame")  # ms: tracker CPU time a frame


def replay(tracker: Any, frames: Sequence[Poses], fps: float = 30.0) -> tuple[dict[int, Poses], float]:
    """Run `tracker` (reset first) over the frames; returns ({frame index: tracked Poses}, tracker
    CPU milliseconds per frame). CPU time of this process, not wall time, so that other work on
    a shared machine does not count; the trackers compared are single-threaded."""
    tracker.reset()
    out: dict[int, Poses] = {}
    start = time.process_time()
    for f, poses in enumerate(frames):
        out[f] = tracker.update(poses, timestamp=f / fps)
    ms = (time.process_time() - start) * 1000 / max(1, len(frames))
    return out, ms


def default_trackers(fps: float, bytetrack: bool = True) -> dict[str, Callable[[], Any]]:
    """name -> factory of the trackers compared: posekit's default `PoseTracker`, greedy IoU and,
    when supervision is installed (`posekit[bench]`), ByteTrack with its default settings."""
    from posekit.tracking.baselines import ByteTrackBaseline, GreedyIouTracker
    from posekit.tracking.tracker import PoseTracker

    trackers: dict[str, Callable[[], Any]] = {
        "posekit": lambda: PoseTracker(frame_rate=fps),
        "greedy IoU": lambda: GreedyIouTracker(),
    }
    if bytetrack:
        try:
            import supervision
        except ImportError:
            logger.warning("supervision is not installed: no ByteTrack row (pip install 'posekit[bench]')")
        else:
            trackers[f"ByteTrack (supervision {supervision.__version__})"] = \
                lambda: ByteTrackBaseline(frame_rate=fps)
    return trackers


def score_trackers(frames: Sequence[Poses], gt: Mapping[int, Poses], trackers: Mapping[str, Callable[[], Any]],
                   fps: float = 30.0, threshold: float = 0.5) -> dict[str, dict[str, float]]:
    """{tracker name: MOTA, IDF1, HOTA, IDSW, FP, FN, ms_per_frame, ...} on one sequence."""
    from posekit.tracking.metrics import evaluate_tracking

    rows = {}
    for name, make in trackers.items():
        tracked, ms = replay(make(), frames, fps)
        metrics = evaluate_tracking(gt, tracked, match="iou", threshold=threshold)
        rows[name] = {**metrics, "ms_per_frame": ms}
    return rows


def read_seqinfo(folder: str | Path) -> dict[str, str]:
    """A MOTChallenge sequence's seqinfo.ini [Sequence] section (empty when there is none)."""
    import configparser

    path = Path(folder) / "seqinfo.ini"
    if not path.is_file():
        return {}
    parser = configparser.ConfigParser()
    parser.read(path)
    return dict(parser["Sequence"]) if parser.has_section("Sequence") else {}


def format_table(report: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
    """report: {sequence: {tracker: metrics}} -> a Markdown table."""
    lines = ["| sequence | tracker | " + " | ".join(COLUMNS) + " |", "| --- | --- |" + " --- |" * len(COLUMNS)]
    for seq, rows in report.items():
        for name, m in rows.items():
            cells = [f"{m[c]:.3f}" if c in ("MOTA", "IDF1", "HOTA", "ms_per_frame") else str(int(m[c]))
                     for c in COLUMNS]
            lines.append(f"| {seq} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def synthetic_crowd(people: int = 20, frames: int = 200, size: tuple[int, int] = (1920, 1080),
                    seed: int = 0) -> list[Poses]:
    """`people` walkers with keypoints moving across a frame, boxes jittered, for timing a tracker."""
    rng = np.random.default_rng(seed)
    w, h = size
    start = rng.uniform([0, 0], [w - 100, h - 250], (people, 2))
    velocity = rng.normal(0, 3, (people, 2))
    template = rng.uniform([0, 0], [80, 220], (17, 2))
    out = []
    for f in range(frames):
        corner = np.mod(start + velocity * f, [w - 100, h - 250])
        boxes = np.concatenate([corner, corner + [80, 220]], 1) + rng.normal(0, 2, (people, 4))
        kpts = corner[:, None] + template[None] + rng.normal(0, 2, (people, 17, 2))
        out.append(Poses(boxes=boxes.astype(np.float32), box_scores=rng.uniform(0.3, 0.9, people).astype(np.float32),
                         keypoints=kpts.astype(np.float32),
                         keypoint_scores=rng.uniform(0.2, 0.9, (people, 17)).astype(np.float32)))
    return out


def tracker_speed(make: Callable[[], Any], people: int = 20, frames: int = 300, repeat: int = 3) -> float:
    """Median over `repeat` runs of a tracker's milliseconds per frame on `synthetic_crowd`."""
    crowd = synthetic_crowd(people, frames)
    times = [replay(make(), crowd)[1] for _ in range(repeat)]
    return float(np.median(times))


def sequence_detections(folder: str | Path, make_estimator: Callable[[], Any],
                        cache: str | Path | None = None) -> tuple[list[Poses], float]:
    """A MOTChallenge sequence's detections (its <name>.mp4 through the estimator), and its frame
    rate; kept in / reused from `cache`/<name>.detections.npz when a cache folder is given."""
    from posekit.tracking.detections import detect_video, load_detections, save_detections

    folder = Path(folder)
    info = read_seqinfo(folder)
    name = info.get("name", folder.name)
    fps = float(info.get("framerate", 30.0))
    cached = Path(cache) / f"{name}.detections.npz" if cache else None
    if cached is not None and cached.is_file():
        logger.info("%s: detections from %s", name, cached)
        return load_detections(cached), fps
    videos = sorted(folder.glob("*.mp4"))
    if len(videos) != 1:
        raise FileNotFoundError(f"{folder}: expected one <sequence>.mp4 beside gt/gt.txt, found "
                                f"{[v.name for v in videos] or 'none'}")
    frames = list(detect_video(str(videos[0]), make_estimator()))
    if cached is not None:
        save_detections(cached, frames, source=videos[0], fps=fps)
    return frames, fps


def bench_tracking(sequences: Sequence[str | Path], make_estimator: Callable[[], Any],
                   cache: str | Path | None = None, people: int = 20) -> dict:
    """{"sequences": {name: {tracker: metrics}}, "speed": {tracker: ms per frame at `people`}}."""
    from posekit.tracking.mot import read_mot

    report: dict = {"sequences": {}, "speed": {}, "people": people}
    for folder in sequences:
        folder = Path(folder)
        gt_path = folder / "gt" / "gt.txt"
        if not gt_path.is_file():
            raise FileNotFoundError(f"{gt_path}: no such file (expected a MOTChallenge sequence folder)")
        frames, fps = sequence_detections(folder, make_estimator, cache)
        name = read_seqinfo(folder).get("name", folder.name)
        report["sequences"][name] = score_trackers(frames, read_mot(gt_path, ground_truth=True),
                                                   default_trackers(fps), fps=fps)
    if people:
        for name, make in default_trackers(30.0).items():
            report["speed"][name] = tracker_speed(make, people)
    return report


def format_report(report: Mapping) -> str:
    text = format_table(report["sequences"])
    if report.get("speed"):
        text += f"\n\ntracker alone, {report['people']} people a frame (synthetic walkers), CPU ms per frame:\n"
        text += "\n".join(f"  {name}: {ms:.2f}" for name, ms in report["speed"].items())
    return text
