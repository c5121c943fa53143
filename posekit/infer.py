"""`infer`: run a PoseEstimator over many inputs and write what it found (what `posekit infer` calls).

Nothing finished is lost: each image's people go to the results journal as soon as they are
found; `results.json` (and its image list) is written from the journal at the end, and also
when the run is interrupted (SIGINT, SIGTERM), stopped by a full disk or by an error; a video's
JSON Lines and render keep the frames done. `resume=True` skips the inputs the journal lists as
done.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from posekit.streams import stream_tagged, video_poses
from posekit.io import (Frame, InputError, JsonLinesWriter, OutputError, VideoReader, VideoSink, describe_os_error,
                        expand_inputs, image_ids, is_disk_full, output_names, poses_to_coco, prepare_out,
                        read_image, remove_stale_parts, render_name, write_image, write_json)
from posekit.journal import JOURNAL_NAME, ResultsJournal, interrupt_name, signals_as_interrupts, signals_held
from posekit.schema import frame_record

log = logging.getLogger(__name__)

RESULTS_NAME = "results.json"
IMAGES_NAME = "results.images.json"  # results.json's image ids: a COCO file pycocotools' loadRes takes
# Renders draw people whose detector box score reaches this: the default is the score a new
# track needs (PoseTracker's new_track_score, `track --track-birth`), so `infer` and `track` draw
# the same people of a video once tracks have started.
VIS_THRESHOLD = 0.5


@dataclass
class InferSummary:
    """What a run did: inputs seen, frames and people found, failures (one message each),
    seconds, files written (each once), and how the run ended (interrupted by a signal, stopped
    by a full disk, or complete)."""

    inputs: int = 0
    images: int = 0
    videos: int = 0
    frames: int = 0
    people: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    resumed: int = 0  # inputs the journal listed as done, skipped
    interrupted: str | None = None  # "SIGINT" / "SIGTERM" when a signal stopped the run
    stopped: str | None = None  # why the batch stopped early (a full disk)
    journal: str | None = None  # the journal kept for --resume
    vis_threshold: float | None = None

    def add_output(self, path: str | os.PathLike) -> None:
        if str(path) not in self.outputs:
            self.outputs.append(str(path))

    def text(self) -> str:
        rate = self.frames / self.seconds if self.seconds > 0 else 0.0
        lines = [f"{plural(self.inputs, 'input')} ({plural(self.images, 'image')}, {plural(self.videos, 'video')}): "
                 f"{plural(self.frames, 'frame')}, {plural(self.people, 'person', 'people')}, {len(self.failures)} "
                 f"failed, {self.seconds:.2f} s ({rate:.1f} frames/s)"]
        if self.resumed:
            lines.append(f"  resumed: {plural(self.resumed, 'input')} already done, skipped")
        if self.interrupted:
            lines.append(f"  interrupted by {self.interrupted}: kept everything finished")
        if self.stopped:
            lines.append(f"  stopped: {self.stopped}; kept everything finished")
        lines += [f"  failed: {f}" for f in self.failures]
        lines += [f"  wrote {o}" for o in self.outputs]
        if self.journal:
            lines.append(f"  journal {self.journal}: rerun with --resume to finish the rest")
        if self.vis_threshold is not None and self.outputs:
            lines.append(f"  renders draw people whose box score is >= {self.vis_threshold:g} (--vis-threshold); "
                         f"the results hold everyone found")
        return "\n".join(lines)


def plural(n: int, one: str, many: str | None = None) -> str:
    """'1 video', '2 videos', '1 person', '0 people'."""
    return f"{n} {one if n == 1 else many or one + 's'}"


@dataclass
class InferItem:
    source: Any  # posekit.io.Source
    name: str  # output name
    image_id: int | None = None


def infer(inputs: Sequence[str], out: str | os.PathLike, ann: str | os.PathLike | None = None, vis: bool = True,
          estimator: Any = None, progress: bool = False, tracker: Any = None, *, max_frames: int | None = None,
          vis_threshold: float = VIS_THRESHOLD, resume: bool = False, overwrite: bool = False,
          **estimator_options: Any) -> InferSummary:
    """Estimate poses in every input and write results under `out` (see `posekit infer --help`).

    tracker: None, or a factory ``tracker(fps) -> PoseTracker`` called once per video: its
    people then carry a "track_id" in the JSON Lines and one colour per ID in the render.
    max_frames: stop each video or camera after this many frames.
    vis_threshold: renders draw the people whose detector box score reaches it (results keep all).
    resume: skip the inputs the journal of an earlier, interrupted run lists as done.
    overwrite: replace outputs already in `out` (without it or `resume`, existing outputs are
    refused with an `OutputError` before anything runs).

    Unreadable inputs and renders that cannot be written are logged as warnings and listed in
    the summary's failures; the rest are processed. A full disk stops the batch
    (summary.stopped); SIGINT/SIGTERM stop it too (summary.interrupted) and the function returns
    normally; in every case results.json holds every image finished.
    """
    start = time.perf_counter()
    summary = InferSummary(vis_threshold=vis_threshold if vis else None)
    sources, problems = expand_inputs(inputs)
    for problem in problems:
        log.warning("%s", problem)
        summary.failures.append(problem)
    summary.inputs = len(sources)
    ids = image_ids(ann) if ann is not None else {}
    if not sources:
        summary.seconds = time.perf_counter() - start
        return summary
    out = prepare_out(out)
    remove_stale_parts(out)
    items = [InferItem(s, n) for s, n in zip(sources, output_names(sources))]
    assign_image_ids(items, ids, ann)
    journal = ResultsJournal(out / JOURNAL_NAME)
    if resume and not journal.path.exists():
        log.warning("%s: no journal to resume from; starting from the first input", out)
    if not resume and not overwrite:
        _refuse_existing(out, items, vis)
    if estimator is None:
        from posekit.pipeline import PoseEstimator

        estimator = PoseEstimator(**estimator_options)
    done = journal.open(fresh=not resume)
    done = {name: r for name, r in done.items() if r.get("status") == "done"}
    images = [it for it in items if it.source.kind == "image"]
    videos = [it for it in items if it.source.kind != "image"]
    summary.resumed = sum(it.name in done for it in items)
    bar = _progress_bar(progress, sum(it.name not in done for it in images))
    fatal: BaseException | None = None
    with signals_as_interrupts():
        try:
            _infer_images([it for it in images if it.name not in done], estimator, out, vis, vis_threshold,
                          journal, done, summary, bar)
            for item in videos:
                if item.name not in done:
                    _infer_one_video(item, estimator, out, vis, vis_threshold, journal, done, summary, tracker,
                                     max_frames, bar)
        except KeyboardInterrupt as exc:  # SIGINT, or SIGTERM raised as Terminated
            summary.interrupted = interrupt_name(exc)
            log.warning("interrupted by %s: writing what is finished", summary.interrupted)
        except OSError as exc:
            if not is_disk_full(exc):
                fatal = exc
            else:
                summary.stopped = describe_os_error(exc)
                summary.failures.append(summary.stopped)
                log.error("%s: stopping, keeping what is finished", summary.stopped)
        except BaseException as exc:  # a fatal error: keep what is finished, then let it through
            fatal = exc
        finally:
            bar.close()
            _finish(out, images, items, done, journal, summary, complete=fatal is None)
    summary.seconds = time.perf_counter() - start
    if fatal is not None:
        raise fatal
    return summary


def assign_image_ids(items: list[InferItem], ids: dict[str, int], ann: Any) -> None:
    """Each image's COCO image_id: from --ann by file name; otherwise (or when --ann does not
    name it) derived from its place among the inputs, stable for the same inputs, and listed
    with its file name in results.images.json."""
    base = max(ids.values(), default=0)
    for n, item in enumerate(items, 1):
        if item.source.kind != "image":
            continue
        found = ids.get(Path(item.name).name)
        if ann is not None and found is None:
            log.warning("%s: not named in %s; given the derived image_id %d", item.source.path, ann, base + n)
        item.image_id = found if found is not None else base + n


def _planned_outputs(out: Path, item: InferItem, vis: bool) -> list[Path]:
    if item.source.kind == "image":
        return [out / "vis" / render_name(item.name)] if vis else []
    stem = _video_stem(item)
    return [out / f"{stem}.jsonl", *([out / "vis" / f"{stem}.mp4"] if vis else [])]


def _video_stem(item: InferItem) -> str:
    return item.name if item.source.kind == "camera" else os.path.splitext(item.name)[0]


def _refuse_existing(out: Path, items: list[InferItem], vis: bool) -> None:
    planned = [out / JOURNAL_NAME]
    if any(it.source.kind == "image" for it in items):
        planned += [out / RESULTS_NAME, out / IMAGES_NAME]
    for item in items:
        planned += _planned_outputs(out, item, vis)
    existing = [p for p in planned if p.exists()]
    if existing:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise OutputError(f"{existing[0]}: already exists{more}; pass --overwrite to replace, or --resume to "
                          f"continue the run that wrote it")


def _infer_images(todo: list[InferItem], estimator: Any, out: Path, vis: bool, vis_threshold: float,
                  journal: ResultsJournal, done: dict[str, dict], summary: InferSummary, bar: Any) -> None:
    if not todo:
        return
    with contextlib.closing(stream_tagged(estimator, _read_images(todo, journal, summary, bar))) as results:
        for item, frame, poses in results:
            summary.images += 1
            summary.frames += 1
            summary.people += len(poses)
            h, w = frame.image.shape[:2]
            record = {"name": item.name, "input": item.source.path, "kind": "image", "status": "done",
                      "image": {"id": item.image_id, "file_name": item.name, "width": w, "height": h},
                      "people": poses_to_coco(poses, item.image_id, item.name)}
            if vis:
                render = out / "vis" / render_name(item.name)
                try:
                    _write_render(render, frame.image, poses, vis_threshold)
                    summary.add_output(render)
                except (OSError, ValueError) as exc:
                    if is_disk_full(exc):
                        _keep(record, journal, done)  # the keypoints are found: keep them
                        raise OSError(exc.errno, exc.strerror, str(render)) from exc
                    message = f"{item.source.path}: render not written ({_reason(exc)}); its people are in {RESULTS_NAME}"
                    log.warning("%s", message)
                    summary.failures.append(message)
            _keep(record, journal, done)
            bar.update(1)


def _keep(record: dict, journal: ResultsJournal, done: dict[str, dict]) -> None:
    """An input done: in the journal and in what results.json is written from, both or neither (a
    signal between the two would list it in one only; it is raised once both are kept)."""
    with signals_held():
        journal.append(record)
        done[record["name"]] = record


def _reason(exc: BaseException) -> str:
    return describe_os_error(exc) if isinstance(exc, OSError) else str(exc)


def _read_images(items: list[InferItem], journal: ResultsJournal, summary: InferSummary,
                 bar: Any) -> Iterator[tuple[InferItem, Frame]]:
    """(item, frame) for each readable image; the others are logged, journaled and counted as
    failures. Runs in the estimator's prefetch thread."""
    for item in items:
        try:
            yield item, Frame(item.source.path, 0, read_image(item.source.path))
        except InputError as exc:
            log.warning("%s", exc)
            summary.failures.append(str(exc))
            journal.append({"name": item.name, "input": item.source.path, "kind": "image", "status": "failed",
                            "error": str(exc)})
            bar.update(1)


def _infer_one_video(item: InferItem, estimator: Any, out: Path, vis: bool, vis_threshold: float,
                     journal: ResultsJournal, done: dict[str, dict], summary: InferSummary, make_tracker: Any,
                     max_frames: int | None, bar: Any) -> None:
    summary.videos += 1
    try:
        frames = _infer_video(estimator, item, out, vis, vis_threshold, summary, make_tracker, max_frames, bar)
    except InputError as exc:
        message = str(exc)
    except (OSError, ValueError, RuntimeError) as exc:
        if is_disk_full(exc):
            raise
        message = f"{item.source.path}: {_reason(exc)}"
    else:
        record = {"name": item.name, "input": item.source.path, "kind": item.source.kind, "status": "done",
                  "frames": frames}
        _keep(record, journal, done)
        return
    log.warning("%s", message)
    summary.failures.append(message)
    journal.append({"name": item.name, "input": item.source.path, "kind": item.source.kind, "status": "failed",
                    "error": message})


def _infer_video(estimator: Any, item: InferItem, out: Path, vis: bool, vis_threshold: float, summary: InferSummary,
                 make_tracker: Any, max_frames: int | None, bar: Any) -> int:
    """Run one video; returns its frame count. Its JSON Lines and render keep the frames done
    however the run ends; they are listed in the summary as soon as they exist. The records,
    drawing and encoding run on a writer thread a few frames behind, so this thread only takes
    each frame's poses (and tracks them)."""
    from posekit.tracking.writer import WriterThread

    source = item.source
    handle = int(source.path) if source.kind == "camera" else source.path
    stem = _video_stem(item)
    lines_path, render_path = out / f"{stem}.jsonl", out / "vis" / f"{stem}.mp4"
    writer: WriterThread | None = None
    with VideoReader(handle, max_frames) as reader:
        fps = reader.fps or 25.0
        bar.add_total(min(reader.declared, max_frames or reader.declared))
        tracker = make_tracker(fps) if make_tracker is not None else None
        render = VideoSink(render_path, fps) if vis else contextlib.nullcontext()
        try:
            with JsonLinesWriter(lines_path) as lines, render as sink, \
                    contextlib.closing(video_poses(estimator, reader, vis)) as results:

                def write(done: tuple[Frame, tuple[int, int], Any]) -> None:
                    """One frame to the JSON Lines and the render (on the writer thread, in order)."""
                    frame, (w, h), poses = done
                    drawn = None
                    if sink is not None:
                        from posekit.draw import draw_poses

                        drawn = draw_poses(frame.image, poses, copy=False, min_box_score=vis_threshold)
                    record = frame_record(frame.index, poses, source=frame.source, timestamp=frame.timestamp,
                                          image_size=(w, h))
                    # (signals reach only the main thread: both outputs take the frame or neither)
                    lines.write(record)
                    if sink is not None:
                        sink.write(drawn)
                    summary.frames += 1
                    summary.people += len(poses)

                writer = WriterThread(write, name="posekit-infer-writer")
                try:
                    for frame, size, poses in results:
                        if tracker is not None:
                            poses = tracker.update(poses, timestamp=frame.timestamp, image_size=size)
                        writer.put((frame, size, poses))
                        bar.update(1)
                finally:
                    try:
                        results.close()  # joins the estimator's threads before the writer drains
                    finally:
                        writer.close()  # the frames queued are written; the files close after it
        finally:
            if writer is not None:
                writer.abort()  # (already ended unless closing it was interrupted)
            frames = writer.written if writer is not None else 0
            for path in (lines_path, render_path if vis else None):
                if path is not None and path.exists() and (frames or path == lines_path):
                    summary.add_output(path)
    return frames


def _finish(out: Path, images: list[InferItem], items: list[InferItem], done: dict[str, dict], journal: ResultsJournal,
            summary: InferSummary, complete: bool) -> None:
    """Write results.json and its image list from what is done (a second signal waits until they
    are written); drop the journal when every input is done, else keep it for --resume."""
    try:
        with signals_held():
            if images:
                finished = [done[it.name] for it in images if it.name in done]
                results = [person for record in finished for person in record["people"]]
                write_json(out / RESULTS_NAME, results)
                write_json(out / IMAGES_NAME, images_document([record["image"] for record in finished]))
                summary.add_output(out / RESULTS_NAME)
                summary.add_output(out / IMAGES_NAME)
            everything = all(it.name in done for it in items) and not summary.failures
            if everything and complete:
                journal.remove()
            else:
                journal.close()
                summary.journal = str(journal.path)
    except OSError as exc:
        journal.close()
        summary.journal = str(journal.path)
        message = f"{out / RESULTS_NAME}: not written ({describe_os_error(exc)}); the journal keeps every finished image"
        log.error("%s", message)
        summary.failures.append(message)


def images_document(images: list[dict]) -> dict:
    """results.json's images as a COCO file: `COCO(this).loadRes(results.json)` works."""
    from posekit.skeleton import COCO_KEYPOINTS, COCO_SKELETON

    return {"info": {"description": f"the images of {RESULTS_NAME} and their image_id (written by posekit infer)"},
            "images": images, "annotations": [],
            "categories": [{"id": 1, "name": "person", "supercategory": "person", "keypoints": list(COCO_KEYPOINTS),
                            "skeleton": [[a + 1, b + 1] for a, b in COCO_SKELETON]}]}


def _write_render(path: Path, image: Any, poses: Any, vis_threshold: float) -> None:
    from posekit.draw import draw_poses

    write_image(path, draw_poses(image, poses, copy=False, min_box_score=vis_threshold))


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def add_total(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


class _FrameBar:
    """Progress in frames (an image is one frame; a video adds the frames its header declares)."""

    def __init__(self, total: int) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=total, unit="frame", desc="posekit infer", dynamic_ncols=True, mininterval=0.5)

    def update(self, n: int) -> None:
        self._bar.update(n)

    def add_total(self, n: int) -> None:
        if n > 0:
            self._bar.total = (self._bar.total or 0) + n
            self._bar.refresh()

    def close(self) -> None:
        self._bar.close()


def _progress_bar(enabled: bool, total: int) -> Any:
    return _FrameBar(total) if enabled else _NoBar()
