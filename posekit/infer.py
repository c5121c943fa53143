"""`infer`: run a PoseEstimator over many inputs and write what it found (what `posekit infer` calls)."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from posekit.io import (Frame, InputError, JsonLinesWriter, VideoSink, expand_inputs, image_ids, iter_video,
                        output_names, poses_to_coco, read_image, video_fps, write_image, write_json)

log = logging.getLogger(__name__)


@dataclass
class InferSummary:
    """What a run did: inputs seen, frames and people found, failures (one message each), seconds."""

    inputs: int = 0
    images: int = 0
    videos: int = 0
    frames: int = 0
    people: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)

    def text(self) -> str:
        rate = self.frames / self.seconds if self.seconds > 0 else 0.0
        lines = [f"{_count(self.inputs, 'input')} ({_count(self.images, 'image')}, {_count(self.videos, 'video')}): "
                 f"{_count(self.frames, 'frame')}, {_count(self.people, 'person', 'people')}, {len(self.failures)} "
                 f"failed, {self.seconds:.1f} s ({rate:.1f} frames/s)"]
        lines += [f"  failed: {f}" for f in self.failures]
        lines += [f"  wrote {o}" for o in self.outputs]
        return "\n".join(lines)


def _count(n: int, one: str, many: str | None = None) -> str:
    """'1 video', '2 videos', '1 person', '0 people'."""
    return f"{n} {one if n == 1 else many or one + 's'}"


def infer(inputs: Sequence[str], out: str | os.PathLike, ann: str | os.PathLike | None = None, vis: bool = True,
          estimator: Any = None, progress: bool = False, tracker: Any = None,
          **estimator_options: Any) -> InferSummary:
    """Estimate poses in every input and write results under `out` (see `posekit infer --help`).

    tracker: None, or a factory ``tracker(fps) -> PoseTracker`` called once per video: its
    people then carry a "track_id" in the JSON Lines and one colour per ID in the render.

    Unreadable inputs are logged as warnings and listed in the summary's failures; the rest are
    processed. Every file is written to a temporary name and renamed when complete.
    """
    start = time.perf_counter()
    out = Path(out)
    summary = InferSummary()
    sources, problems = expand_inputs(inputs)
    for problem in problems:
        log.warning("%s", problem)
        summary.failures.append(problem)
    summary.inputs = len(sources)
    ids = image_ids(ann) if ann is not None else {}
    if not sources:
        summary.seconds = time.perf_counter() - start
        return summary
    if estimator is None:
        from posekit.pipeline import PoseEstimator

        estimator = PoseEstimator(**estimator_options)
    out.mkdir(parents=True, exist_ok=True)
    bar = _progress_bar(progress, len(sources))

    # output names: distinct even when two folders hold the same file name
    named = list(zip(sources, output_names(sources)))
    images = [(s, name) for s, name in named if s.kind == "image"]
    videos = [(s, name) for s, name in named if s.kind != "image"]
    if images:
        results: list[dict] = []
        for name, frame, poses in _run(estimator, _read_images(images, summary)):
            summary.images += 1
            summary.frames += 1
            summary.people += len(poses)
            image_id = ids.get(Path(name).name)
            if ann is not None and image_id is None:
                log.warning("%s: not named in %s; written without image_id", frame.source, ann)
            results.extend(poses_to_coco(poses, image_id, name))
            if vis:
                _write_render(out / "vis" / name, frame.image, poses)
            bar.update(1)
        summary.outputs.append(str(write_json(out / "results.json", results)))
    for source, name in videos:
        summary.videos += 1
        try:
            summary.outputs.extend(_infer_video(estimator, source, name, out, vis, summary, tracker))
        except InputError as exc:
            log.warning("%s", exc)
            summary.failures.append(str(exc))
        bar.update(1)
    bar.close()
    summary.seconds = time.perf_counter() - start
    return summary


def _run(estimator: Any, tagged: Iterator[tuple[Any, Frame]]) -> Iterator[tuple[Any, Frame, Any]]:
    """(tag, frame, poses) for each (tag, frame); frames are read (and decoded) in the estimator's
    prefetch thread."""
    pending: deque[tuple[Any, Frame]] = deque()

    def images() -> Iterator[Any]:
        for tag, frame in tagged:
            pending.append((tag, frame))
            yield frame.image

    for poses in estimator.stream(images()):
        yield (*pending.popleft(), poses)


def _read_images(images: list, summary: InferSummary) -> Iterator[tuple[str, Frame]]:
    """(output name, frame) for each readable (source, output name); the others are logged and
    counted as failures."""
    for source, name in images:
        try:
            yield name, Frame(source.path, 0, read_image(source.path))
        except InputError as exc:
            log.warning("%s", exc)
            summary.failures.append(str(exc))


def _infer_video(estimator: Any, source: Any, name: str, out: Path, vis: bool, summary: InferSummary,
                 make_tracker: Any = None) -> list[str]:
    is_camera = source.kind == "camera"
    handle = int(source.path) if is_camera else source.path
    stem = name if is_camera else os.path.splitext(name)[0]
    written = []
    fps = video_fps(handle)
    tracker = make_tracker(fps) if make_tracker is not None else None
    render = VideoSink(out / "vis" / f"{stem}.mp4", fps) if vis else contextlib.nullcontext()
    # The JSON Lines file and the render are renamed into place only if the whole video decodes;
    # a truncated video raises InputError out of both contexts, which delete their temporaries.
    with JsonLinesWriter(out / f"{stem}.jsonl") as lines, render as sink:
        for _, frame, poses in _run(estimator, ((None, frame) for frame in iter_video(handle))):
            if tracker is not None:
                h, w = frame.image.shape[:2]
                poses = tracker.update(poses, timestamp=frame.index / fps, image_size=(w, h))
            summary.frames += 1
            summary.people += len(poses)
            lines.write({"frame": frame.index, "source": frame.source,
                         "people": poses_to_coco(poses)})
            if sink is not None:
                from posekit.draw import draw_poses

                sink.write(draw_poses(frame.image, poses, copy=False))
    if sink is not None:
        written.append(str(sink.path))
    written.append(str(lines.path))
    return written


def _write_render(path: Path, image: Any, poses: Any) -> None:
    from posekit.draw import draw_poses

    write_image(path, draw_poses(image, poses, copy=False))


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(enabled: bool, total: int) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit="input", desc="posekit infer", dynamic_ncols=True)
