"""`posekit infer --ray`: the same inference spread over a Ray cluster with Ray Data.

The inputs are planned as *units* of work: a few images, or a range of a video's frames (so one
long video spreads over every actor). Ray Data sends the units to a pool of actors (one per GPU,
or per `cpus_per_actor` CPUs), each of which builds the pose pipeline once with
`posekit.estimators.make_estimator` and then, per unit, reads and decodes its own images or
seeks to its frame range and decodes those frames. The poses come back to the driver (this
process) as plain numbers, at full float32 precision.

The driver writes each image's and each frame range's poses to a *part* file in a hidden folder
``DIR/.posekit-ray/parts`` (a temporary name renamed into place, so a part is whole or absent,
and written once: a unit that Ray retries finds its parts there), and at the end merges the
parts into the outputs `posekit infer` writes, named the same way and holding the same records:
``DIR/results.json`` and ``DIR/results.images.json`` for the images, ``DIR/<video>.jsonl`` per
video (each written whole under a temporary name, then renamed). It writes no renders.

Tracking (`tracker`) runs in the driver after the merge, once per video, over its frames in
order: the same tracker on the same poses as `posekit infer --track`, so the same track IDs.

Re-running the same command continues: units whose parts exist are not run again, and when every
output is complete (a stamp in the hidden folder records what was merged) nothing runs at all.
A part is named by a digest of its input (path, size, modification time), its frame range and the
pipeline's settings, so a changed input or setting is run again. An actor that dies mid-run is
replaced by Ray Data (actors restart without limit and their tasks are retried: the defaults of
Ray Data's actor pools), and its units run again; nothing is lost or written twice.

Inputs are local paths (files, folders, globs, as `posekit infer` takes them; on a cluster of
several machines every node must see them at the same path, e.g. a shared file system) or URIs
that `pyarrow.fs` reads (``s3://bucket/images/``, ``gs://...``, ``hdfs://...``, ``file:///...``),
listed by the driver and read by the actors; a video given as a URI is copied to the actor's
temporary folder and runs as one unit.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from posekit.infer import IMAGES_NAME, RESULTS_NAME, InferSummary, assign_image_ids, plural, images_document, InferItem
from posekit.io import (IMAGE_SUFFIXES, INDEXED_CONTAINERS, VIDEO_SUFFIXES, InputError, OutputError, Source,
                        read_frame_range,
                        atomic_path, expand_inputs, image_ids, output_names, poses_to_coco, prepare_out,
                        json_line, remove_stale_parts, write_json)
from posekit.schema import frame_record
from posekit.structures import Poses

log = logging.getLogger(__name__)

STATE_NAME = ".posekit-ray"  # the hidden folder under --out: parts and the merge stamp
STAMP_NAME = "merged.json"
IMAGES_PER_UNIT = 4  # images per Ray task: enough to keep an actor's pipeline busy, small enough to spread
FRAMES_PER_UNIT = 300  # frames per video range


# -- planning -----------------------------------------------------------------------------------


def is_uri(text: str) -> bool:
    """Whether an input names a file through a file system URI (s3://, gs://, hdfs://, file://)."""
    scheme, sep, _ = str(text).partition("://")
    return bool(sep) and scheme.isalnum() and len(scheme) > 1


def _uri_sources(uri: str) -> tuple[list[Source], list[str]]:
    """The image and video files a URI names (a file, or a folder listed recursively)."""
    from pyarrow import fs as pafs

    scheme = uri.split("://", 1)[0]
    try:
        filesystem, root = pafs.FileSystem.from_uri(uri)
        info = filesystem.get_file_info(root)
        if info.type == pafs.FileType.Directory:
            infos = filesystem.get_file_info(pafs.FileSelector(root, recursive=True))
        elif info.type == pafs.FileType.File:
            infos = [info]
        else:
            return [], [f"{uri}: no such file or folder"]
    except (OSError, ValueError) as exc:  # pyarrow raises these for unknown schemes, missing buckets, no access
        return [], [f"{uri}: cannot list ({exc})"]

    def kind(name: str, named: bool) -> str | None:
        suffix = os.path.splitext(name)[1].lower()
        if suffix in IMAGE_SUFFIXES or suffix in VIDEO_SUFFIXES:
            return "image" if suffix in IMAGE_SUFFIXES else "video"
        return "image" if named else None  # a file named explicitly is tried as an image, as infer does

    named = info.type == pafs.FileType.File
    found = sorted((i.path for i in infos if i.type == pafs.FileType.File and kind(i.path, named)))
    sources = [Source(kind(p, named), f"{scheme}://{p}") for p in found]
    return sources, ([] if sources else [f"{uri}: folder holds no image or video files"])


def list_inputs(inputs: Sequence[str]) -> tuple[list[Source], list[str]]:
    """`posekit.io.expand_inputs` for local paths, `pyarrow.fs` listings for URIs, in order.
    Cameras cannot be spread over a cluster and are refused as problems."""
    sources: list[Source] = []
    problems: list[str] = []
    for item in inputs:
        found, trouble = _uri_sources(str(item)) if is_uri(str(item)) else expand_inputs([str(item)])
        for source in found:
            if source.kind == "camera":
                trouble.append(f"{source.path}: a camera cannot be read by a Ray cluster; run `posekit infer` on it")
            else:
                sources.append(source)
        problems += trouble
    return sources, problems


def _file_identity(path: str) -> list:
    """What makes a part stale when it changes: size and modification time (ns)."""
    if is_uri(path):
        from pyarrow import fs as pafs

        filesystem, inner = pafs.FileSystem.from_uri(path)
        info = filesystem.get_file_info(inner)
        return [info.size, info.mtime_ns]
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns]


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _video_frame_count(path: str) -> tuple[int, bool]:
    """(frames the header declares, whether the container indexes its frames so the count is exact
    and a frame number can be sought); (0, False) for URIs (not opened by the driver). InputError,
    as `VideoReader` words it, for a local file OpenCV cannot open."""
    if is_uri(path):
        return 0, False
    import cv2

    capture = cv2.VideoCapture(path)
    try:
        if not capture.isOpened():
            raise InputError(f"{path}: cannot open as a video (OpenCV could not read its container)")
        declared = max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
    finally:
        capture.release()
    return declared, Path(path).suffix.lower() in INDEXED_CONTAINERS


@dataclass
class _Input:
    """One input of the run and the parts that hold its results."""

    item: InferItem
    parts: list[str]  # part keys, in order (one per image; one per frame range for a video)
    ranges: list[tuple[int, int | None]] = field(default_factory=list)  # videos: [start, stop) per part
    exact: int = 0  # videos: the exact frame count of an indexed container, else 0
    frames: int = 0  # videos: frames planned (for the progress bar)


def _plan(items: list[InferItem], settings: str, frames_per_unit: int, max_frames: int | None
          ) -> tuple[list[_Input], list[str]]:
    planned: list[_Input] = []
    problems: list[str] = []
    for item in items:
        path = item.source.path
        try:
            identity = _file_identity(path)
        except OSError as exc:
            problems.append(f"{path}: cannot read ({exc})")
            continue
        if item.source.kind == "image":
            planned.append(_Input(item, [_digest("image", path, identity, settings)]))
            continue
        try:
            declared, indexed = _video_frame_count(path)
        except InputError as exc:  # reported without starting the cluster
            problems.append(str(exc))
            continue
        limit = min(declared, max_frames) if max_frames and declared else declared
        if declared and indexed and limit > 0:
            starts = list(range(0, limit, frames_per_unit))
            stops: list[int | None] = starts[1:] + [max_frames]  # the last range reads to the end (or max_frames)
            ranges = list(zip(starts, stops))
        else:  # no index to seek by (or a URI): the whole video is one unit
            ranges = [(0, max_frames)]
        parts = [_digest("frames", path, identity, start, stop, settings) for start, stop in ranges]
        planned.append(_Input(item, parts, ranges, declared if indexed else 0, limit or frames_per_unit))
    return planned, problems


def _units(planned: list[_Input], have: set[str], images_per_unit: int) -> list[dict]:
    """The work still to do, as Ray Data rows: image groups and video frame ranges whose parts are missing."""
    units: list[dict] = []
    group: list[list[str]] = []
    queued = set(have)  # the same file given twice is run once (its part serves both names)
    for inp in planned:
        if inp.item.source.kind == "image":
            if inp.parts[0] not in queued:
                group.append([inp.parts[0], inp.item.source.path])
                queued.add(inp.parts[0])
            if len(group) == images_per_unit:
                units.append({"kind": "images", "images": group})
                group = []
            continue
        for part, (start, stop) in zip(inp.parts, inp.ranges):
            if part not in queued:
                queued.add(part)
                units.append({"kind": "frames", "part": part, "path": inp.item.source.path, "start": start,
                              "stop": stop, "seek": len(inp.ranges) > 1})
    if group:
        units.append({"kind": "images", "images": group})
    return units


# -- the actors ---------------------------------------------------------------------------------


def poses_to_plain(poses: Poses) -> dict:
    """Poses as JSON-ready lists at full float32 precision (float32 -> float64 -> text is exact)."""
    return {"boxes": poses.boxes.tolist(), "box_scores": poses.box_scores.tolist(),
            "keypoints": poses.keypoints.tolist(), "keypoint_scores": poses.keypoint_scores.tolist(),
            "scores": poses.scores.tolist()}


def poses_from_plain(data: dict) -> Poses:
    n = len(data["boxes"])
    k = len(data["keypoints"][0]) if n else 17
    return Poses(boxes=np.asarray(data["boxes"], np.float32).reshape(n, 4),
                 box_scores=np.asarray(data["box_scores"], np.float32).reshape(n),
                 keypoints=np.asarray(data["keypoints"], np.float32).reshape(n, k, 2),
                 keypoint_scores=np.asarray(data["keypoint_scores"], np.float32).reshape(n, k),
                 scores=np.asarray(data["scores"], np.float32).reshape(n))


class _Fetched:
    """A local path for an input: the path itself, or a URI copied to the actor's temporary folder
    (kept for the next unit of the same input, then replaced)."""

    def __init__(self) -> None:
        self._folder = tempfile.mkdtemp(prefix="posekit-ray-")
        self._uri: str | None = None
        self._local: str | None = None

    def local(self, path: str) -> str:
        if not is_uri(path):
            return path
        if path != self._uri:
            from pyarrow import fs as pafs

            if self._local:
                os.unlink(self._local)
                self._uri = self._local = None
            filesystem, inner = pafs.FileSystem.from_uri(path)
            local = os.path.join(self._folder, "input" + os.path.splitext(inner)[1])
            with filesystem.open_input_stream(inner) as src, open(local, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            self._uri, self._local = path, local
        return self._local

    def close(self) -> None:
        shutil.rmtree(self._folder, ignore_errors=True)


class PoseActor:
    """A Ray Data actor: builds the pose pipeline once, then runs units (rows of JSON text) and
    returns one row per part: {"part", "payload" (JSON text), "pid", "host", "cpu_s" (the actor
    process's CPU seconds for it)}."""

    def __init__(self, options: dict[str, Any]) -> None:
        import socket

        from posekit.estimators import make_estimator

        self.estimator = make_estimator(**options)
        self.fetched = _Fetched()
        self.pid = os.getpid()
        self.host = socket.gethostname()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        parts: list[str] = []
        payloads: list[str] = []
        cpu: list[float] = []
        for text in batch["unit"]:
            unit = json.loads(str(text))
            started = time.process_time()  # this process's CPU time, every thread
            done = self._images(unit["images"]) if unit["kind"] == "images" else [(unit["part"], self._frames(unit))]
            spent = (time.process_time() - started) / max(len(done), 1)
            for part, payload in done:
                parts.append(part)
                payloads.append(json.dumps(payload))
                cpu.append(spent)
        n = len(parts)
        return {"part": np.array(parts, dtype=object), "payload": np.array(payloads, dtype=object),
                "pid": np.full(n, self.pid, np.int64), "host": np.array([self.host] * n, dtype=object),
                "cpu_s": np.array(cpu, np.float64)}

    def _read(self, path: str) -> np.ndarray:
        from posekit.io import read_image

        local = self.fetched.local(path)
        try:
            return read_image(local)
        except InputError as exc:
            raise InputError(str(exc).replace(local, path)) from None

    def _images(self, images: list[list[str]]) -> list[tuple[str, dict]]:
        out: list[tuple[str, dict]] = []
        ready: list[tuple[str, np.ndarray]] = []
        for part, path in images:
            try:
                ready.append((part, self._read(path)))
            except (InputError, OSError) as exc:
                out.append((part, {"kind": "image", "error": str(exc)}))
        found = self.estimator.stream(image for _, image in ready)
        for (part, image), poses in zip(ready, found):
            h, w = image.shape[:2]
            out.append((part, {"kind": "image", "size": [w, h], "poses": poses_to_plain(poses)}))
        return out

    def _frames(self, unit: dict) -> dict:
        try:
            frames = list(read_frame_range(self.fetched.local(unit["path"]), unit["start"], unit["stop"],
                                           seek=unit["seek"], name=unit["path"]))
        except (InputError, OSError) as exc:
            return {"kind": "frames", "error": str(exc)}
        records = []
        for (index, timestamp, image), poses in zip(frames, self.estimator.stream(f[2] for f in frames)):
            h, w = image.shape[:2]
            records.append({"index": index, "timestamp": timestamp, "size": [w, h], "poses": poses_to_plain(poses)})
        return {"kind": "frames", "start": unit["start"], "frames": records}

    def __del__(self) -> None:
        fetched = getattr(self, "fetched", None)
        if fetched is not None:
            fetched.close()


# -- the driver ---------------------------------------------------------------------------------


@dataclass
class RaySummary(InferSummary):
    """`InferSummary` and what the cluster did: units planned and run, the actor processes that
    returned results (host:pid -> parts), the cluster's address."""

    units: int = 0
    units_run: int = 0
    parts_skipped: int = 0  # parts found from an earlier run
    actors: dict[str, int] = field(default_factory=dict)
    address: str | None = None
    merged: bool = False  # the outputs were (re)written by this run

    def text(self) -> str:
        if not self.merged and not self.failures and self.inputs:
            return (f"{plural(self.inputs, 'input')} ({plural(self.images, 'image')}, {plural(self.videos, 'video')}): "
                    f"every output was already complete ({plural(len(self.outputs), 'file')} in "
                    f"{Path(self.outputs[0]).parent if self.outputs else '?'}): nothing to do")
        lines = [super().text()]
        if self.units_run or self.parts_skipped:
            workers = plural(len(self.actors), "actor process", "actor processes")
            if self.actors:  # host:pid -> parts it returned
                workers += " (" + ", ".join(f"{k}: {v}" for k, v in sorted(self.actors.items())) + ")"
            lines.append(f"  ray: {plural(self.units_run, 'unit')} run on {workers}, "
                         f"{plural(self.parts_skipped, 'part')} kept from an earlier run")
        return "\n".join(lines)


class _Parts:
    """The part files of a run: one JSON file per image or frame range, written once, atomically."""

    def __init__(self, out: Path) -> None:
        self.folder = out / STATE_NAME / "parts"

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def present(self) -> set[str]:
        return {p.stem for p in self.folder.glob("*.json")} if self.folder.is_dir() else set()

    def write(self, key: str, payload: str) -> bool:
        """Write a part unless it exists (a retried unit); False when it was there."""
        path = self.path(key)
        if path.exists():
            return False
        with atomic_path(path) as tmp:
            tmp.write_text(payload, encoding="utf-8")
        return True

    def read(self, key: str) -> dict:
        return json.loads(self.path(key).read_text(encoding="utf-8"))


def _final_outputs(out: Path, planned: list[_Input]) -> list[Path]:
    paths = [out / RESULTS_NAME, out / IMAGES_NAME] if any(p.item.source.kind == "image" for p in planned) else []
    return paths + [out / f"{os.path.splitext(p.item.name)[0]}.jsonl" for p in planned if p.item.source.kind == "video"]


def estimator_settings(options: dict[str, Any]) -> dict[str, Any]:
    """The make_estimator arguments that change results, in one form however they were given (the
    parts' names depend on them): the command line's explicit defaults and the Python API's
    omitted ones agree; thread counts, which do not change results, are left out."""
    import inspect

    from posekit import __version__
    from posekit.estimators import PIPELINE_BACKENDS
    from posekit.pipeline import PoseEstimator

    backend = options.get("backend") or "onnxruntime"
    defaults = {name: p.default for name, p in inspect.signature(PoseEstimator).parameters.items()
                if p.default is not inspect.Parameter.empty and name not in ("det", "pose")}
    settings = {"posekit": __version__, "backend": backend, "device": options.get("device") or "cpu"}
    if backend in PIPELINE_BACKENDS:
        _, default_det, default_pose, _, _ = PIPELINE_BACKENDS[backend]
        settings.update(det=options.get("det") or default_det, pose=options.get("pose") or default_pose)
    for key, value in sorted(options.items()):
        if key not in settings and key not in ("workers", "threads") and value is not None \
                and not (key in defaults and defaults[key] == value):
            settings[key] = value
    return settings


def infer(inputs: Sequence[str], out: str | os.PathLike, *, address: str | None = None, actors: int | None = None,
          cpus_per_actor: float = 1.0, gpus_per_actor: float | None = None, ann: str | os.PathLike | None = None,
          tracker: Callable[[float], Any] | None = None, max_frames: int | None = None, overwrite: bool = False,
          frames_per_unit: int = FRAMES_PER_UNIT, images_per_unit: int = IMAGES_PER_UNIT, progress: bool = False,
          on_result: Callable[[dict], None] | None = None, **estimator_options: Any) -> RaySummary:
    """Estimate poses in every input on a Ray cluster and write what `posekit infer` writes (no renders).

    address: the cluster: None starts a local one for the run (unless RAY_ADDRESS names one, or
      this process is already connected to one: then that one), "auto" the one `ray start` runs
      on this machine, "ray://host:10001" through Ray Client, "host:6379" a head node's address.
    actors: actors in the pool (default: the cluster's GPUs / gpus_per_actor on CUDA, else its CPUs
      / cpus_per_actor). cpus_per_actor, gpus_per_actor: each actor's resources (gpus_per_actor
      defaults to 1 when estimator_options' device is CUDA, else 0).
    tracker: None, or ``tracker(fps) -> PoseTracker``: each video is tracked in the driver after
      its frames are merged (a re-run with every part present tracks again, without inference).
      max_frames: stop each video after this many frames.
    overwrite: start afresh, replacing outputs and parts in `out`. Without it a folder holding
      `posekit infer` outputs but no parts of an earlier Ray run is refused (`OutputError`);
      with parts, the run continues from them.
    frames_per_unit, images_per_unit: the size of a unit of work.
    on_result: called in the driver with each part's {"part", "pid", "host", "frames", "cpu_s"} as it
      arrives (a part of an image group carries its share of the group's CPU time).
    estimator_options: `posekit.estimators.make_estimator`'s arguments (det, pose, backend,
      precision, device, det_score_threshold, ...), used by every actor.
    """
    start_time = time.perf_counter()
    _check_installed()  # before anything is written
    summary = RaySummary()
    sources, problems = list_inputs(inputs)
    for problem in problems:
        log.warning("%s", problem)
        summary.failures.append(problem)
    summary.inputs = len(sources)
    if not sources:
        summary.seconds = time.perf_counter() - start_time
        return summary
    out = prepare_out(out)
    state = out / STATE_NAME
    if overwrite and state.exists():
        shutil.rmtree(state)
    remove_stale_parts(out)
    items = [InferItem(s, n) for s, n in zip(sources, output_names(sources))]
    assign_image_ids(items, image_ids(ann) if ann is not None else {}, ann)
    options = {"device": "cpu", **estimator_options}
    if not str(options["device"]).startswith("cuda"):  # an actor runs as many frames at once as it has CPUs
        options.setdefault("workers", max(1, int(cpus_per_actor)))
        options.setdefault("threads", 1)
    settings = _digest(estimator_settings(options))
    planned, trouble = _plan(items, settings, frames_per_unit, max_frames)
    for problem in trouble:
        log.warning("%s", problem)
        summary.failures.append(problem)
    summary.images = sum(it.source.kind == "image" for it in items)
    summary.videos = len(items) - summary.images
    finals = _final_outputs(out, planned)
    if not overwrite and not state.exists():
        existing = [p for p in finals if p.exists()]
        if existing:
            more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
            raise OutputError(f"{existing[0]}: already exists{more} and was not written by a Ray run here; pass "
                              f"--overwrite to replace it")
    parts = _Parts(out)
    have = parts.present()
    wanted = {key for p in planned for key in p.parts}
    summary.parts_skipped = len(wanted & have)
    units = _units(planned, have, images_per_unit)
    summary.units = len(units)
    merge_key = _digest([[p.item.name, p.item.image_id, p.parts] for p in planned])
    stamp = state / STAMP_NAME
    # a tracked run merges again (tracking from the parts, no inference): its settings are the factory's
    if not units and not trouble and tracker is None and _stamp(stamp) == merge_key and all(p.exists() for p in finals):
        summary.outputs = [str(p) for p in finals]
        summary.seconds = time.perf_counter() - start_time
        return summary
    if units:
        _run_units(units, planned, parts, summary, address, actors, cpus_per_actor, gpus_per_actor, options,
                   progress, on_result)
    _merge(out, planned, parts, summary, tracker)
    if not summary.failures:
        write_json(stamp, {"merged": merge_key})
        for key in parts.present() - wanted:  # parts of other inputs or settings, from earlier runs here
            parts.path(key).unlink(missing_ok=True)
    summary.merged = True
    summary.seconds = time.perf_counter() - start_time
    return summary


def _stamp(path: Path) -> str | None:
    try:
        return json.loads(path.read_text()).get("merged")
    except (OSError, ValueError, AttributeError):
        return None


def _check_installed() -> None:
    """MissingExtra naming `pip install 'posekit[ray]'` when ray is not installed (without importing it)."""
    import importlib.util

    try:
        found = importlib.util.find_spec("ray") is not None
    except ValueError:  # in sys.modules as None: unimportable
        found = False
    if not found:
        from posekit.extras import require

        require("ray", "posekit infer --ray")


def _connect(address: str | None) -> tuple[Any, bool]:
    """(the ray module, whether this call started the connection and should end it)."""
    from posekit.extras import require

    ray = require("ray", "posekit infer --ray")
    require("ray.data", "posekit infer --ray")
    if ray.is_initialized():
        return ray, False
    import signal
    import threading

    main = threading.current_thread() is threading.main_thread()
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
    if address is None and os.environ.get("RAY_ADDRESS"):
        address = os.environ["RAY_ADDRESS"]  # Ray's own convention for naming the cluster
    if address in (None, "local"):  # a new cluster for this run, even where `ray start` runs one (or left a record)
        ray.init(address="local", include_dashboard=False, logging_level=logging.WARNING)
    else:
        ray.init(address=address, logging_level=logging.WARNING)
    for signum, handler in handlers.items():  # Ray's driver exits on SIGTERM; posekit's handler stops the run
        if handler is not None:  # cleanly instead (the parts stay, the cluster is shut down, exit 143)
            signal.signal(signum, handler)
    return ray, True


def _run_units(units: list[dict], planned: list[_Input], parts: _Parts, summary: RaySummary, address: str | None,
               actors: int | None, cpus_per_actor: float, gpus_per_actor: float | None, options: dict[str, Any],
               progress: bool, on_result: Callable[[dict], None] | None) -> None:
    ray, started = _connect(address)
    try:
        import ray.data

        summary.address = ray.get_runtime_context().gcs_address
        cuda = str(options.get("device", "cpu")).startswith("cuda")
        if gpus_per_actor is None:
            gpus_per_actor = 1.0 if cuda else 0.0
        resources = ray.cluster_resources()
        if actors is None:
            actors = int(resources.get("GPU", 0) // gpus_per_actor) if gpus_per_actor else \
                int(resources.get("CPU", 1) // cpus_per_actor)
        actors = max(1, min(actors, len(units)))
        if actors * cpus_per_actor > resources.get("CPU", 0) or actors * gpus_per_actor > resources.get("GPU", 0):
            log.warning("%d actors x (%s CPU, %s GPU) is more than the cluster has now (%s CPU, %s GPU): the pool "
                        "waits for the cluster to grow", actors, cpus_per_actor, gpus_per_actor,
                        resources.get("CPU", 0), resources.get("GPU", 0))
        if cuda and gpus_per_actor:
            options = {**options, "device": "cuda"}  # Ray gives each actor its own GPU(s) as cuda:0
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # posekit's own bar, in frames
        if progress:  # the command line: the bar and the summary say what Ray Data's lines would
            logging.getLogger("ray.data").setLevel(logging.WARNING)
        total = sum(1 for u in units if u["kind"] == "images" for _ in u["images"]) + \
            sum(_range_frames(u, planned) for u in units if u["kind"] == "frames")
        bar = _bar(progress, total)
        log.info("%d units on %d actors (%s CPU, %s GPU each) at %s", len(units), actors, cpus_per_actor,
                 gpus_per_actor, summary.address)
        dataset = ray.data.from_items([{"unit": json.dumps(u)} for u in units], override_num_blocks=len(units))
        results = dataset.map_batches(PoseActor, fn_constructor_kwargs={"options": options}, batch_size=1,
                                      compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=cpus_per_actor,
                                      num_gpus=gpus_per_actor or None)
        try:
            for row in _rows(results, ray):
                payload = str(row["payload"])
                key = str(row["part"])
                data = json.loads(payload)
                worker = f"{row['host']}:{row['pid']}"
                frames = 1 if data["kind"] == "image" else len(data.get("frames", ()))
                if "error" in data:  # not written: a re-run tries this input again
                    summary.failures.append(data["error"])
                    log.warning("%s", data["error"])
                elif parts.write(key, payload):
                    summary.actors[worker] = summary.actors.get(worker, 0) + 1
                bar.update(frames)
                if on_result is not None:
                    on_result({"part": key, "pid": int(row["pid"]), "host": str(row["host"]), "frames": frames,
                               "cpu_s": float(row["cpu_s"])})
        finally:
            bar.close()
        summary.units_run = len(units)
    finally:
        if started:
            ray.shutdown()


def _rows(results: Any, ray: Any) -> Iterable[dict]:
    """The dataset's rows; a failure on the cluster (a model that cannot be built, an error in the
    pipeline) becomes one RuntimeError line, the parts written so far staying for a re-run."""
    try:
        yield from results.iter_rows()
    except ray.exceptions.RayError as exc:
        lines = [line for line in str(exc).splitlines() if line.strip()]
        raise RuntimeError(f"the Ray run stopped: {lines[-1] if lines else type(exc).__name__} (the parts "
                           f"finished are kept: re-run to continue)") from exc


def _range_frames(unit: dict, planned: list[_Input]) -> int:
    if unit["stop"] is not None:
        return unit["stop"] - unit["start"]
    inp = next(p for p in planned if unit["part"] in p.parts)
    return max(inp.frames - unit["start"], 0)


def _merge(out: Path, planned: list[_Input], parts: _Parts, summary: RaySummary, tracker: Any) -> None:
    """Write results.json (+ its image list) and each video's JSON Lines from the parts present."""
    have = parts.present()
    images = [p for p in planned if p.item.source.kind == "image"]
    if images:
        results, listed = [], []
        for inp in images:
            if inp.parts[0] not in have:
                continue
            data = parts.read(inp.parts[0])
            poses = poses_from_plain(data["poses"])
            results += poses_to_coco(poses, inp.item.image_id, inp.item.name)
            w, h = data["size"]
            listed.append({"id": inp.item.image_id, "file_name": inp.item.name, "width": w, "height": h})
            summary.frames += 1
            summary.people += len(poses)
        write_json(out / RESULTS_NAME, results)
        write_json(out / IMAGES_NAME, images_document(listed))
        summary.add_output(out / RESULTS_NAME)
        summary.add_output(out / IMAGES_NAME)
    for inp in planned:
        if inp.item.source.kind == "video" and all(key in have for key in inp.parts):
            _merge_video(out, inp, parts, summary, tracker)


def _merge_video(out: Path, inp: _Input, parts: _Parts, summary: RaySummary, make_tracker: Any) -> None:
    frames = [frame for key in inp.parts for frame in parts.read(key)["frames"]]
    source = inp.item.source.path
    numbers = [f["index"] for f in frames]
    if numbers != list(range(len(frames))):
        gap = next(i for i, n in enumerate(numbers) if n != i) if numbers else 0
        message = f"{source}: frame ranges do not join (frame {gap} is missing or repeated); not written"
        log.warning("%s", message)
        summary.failures.append(message)
        return
    if not frames:
        message = f"{source}: no decodable frame"
        log.warning("%s", message)
        summary.failures.append(message)
        return
    if inp.exact and not inp.ranges[-1][1] and len(frames) < inp.exact:
        message = f"{source}: truncated video, decoded {len(frames)} of the {inp.exact} frames its header declares"
        log.warning("%s", message)
        summary.failures.append(message)
    tracker = None
    if make_tracker is not None:
        from posekit.io import video_fps

        tracker = make_tracker(video_fps(source) if not is_uri(source) else 25.0)
    path = out / f"{os.path.splitext(inp.item.name)[0]}.jsonl"
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        for frame in frames:
            poses = poses_from_plain(frame["poses"])
            w, h = frame["size"]
            if tracker is not None:
                poses = tracker.update(poses, timestamp=frame["timestamp"], image_size=(w, h))
            record = frame_record(frame["index"], poses, source=source, timestamp=frame["timestamp"], image_size=(w, h))
            f.write(json_line(record))
            summary.people += len(poses)
    summary.frames += len(frames)
    summary.add_output(path)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(enabled: bool, total: int) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", desc="posekit infer --ray", dynamic_ncols=True, mininterval=0.5)
