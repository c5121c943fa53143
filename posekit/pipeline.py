"""`PoseEstimator`: detector -> affine crops -> top-down pose model -> keypoints in image pixels.

The crops of one frame, and of several frames, go to the pose engine as one batch; in
`stream`, frames are decoded in a prefetch thread and `workers` threads each run whole chunks
of frames (detect, crop, pose), so that on a 2-core CPU both cores stay busy even though a
single small ONNX Runtime call does not use two threads well.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from posekit import registry
from posekit.ops.crop import affine_crop, crop_to_image, fit_input_sizes
from posekit.ops.oks import oks_nms
from posekit.structures import NUM_KEYPOINTS, Poses

log = logging.getLogger(__name__)


# MoveNet's raw heads in decode_movenet's argument order; taken by name when the export names them.
_MOVENET_HEADS = ("centre", "heatmaps", "regression", "offsets")
# What posekit.export records and the runner builds its preprocessing from.
_REQUIRED_META = ("posekit.input_size", "posekit.colour", "posekit.mean", "posekit.std")


class MoveNetOnnx:
    """posekit's own MoveNet export on an engine, any batch size.

    The ONNX file comes from `posekit.export.ensure_onnx(name)` and records its preprocessing
    (input size, colour order, mean/std) in its metadata; decoding is `decode_movenet`.
    ``model(crops)``: (N, S, S, 3) uint8 BGR -> keypoints (N, 17, 2) crop pixels, scores (N, 17).
    """

    colour = "BGR"
    max_batch = None

    def __init__(self, name: str = "movenet-thunder", path: str | os.PathLike | None = None, device: str = "cpu",
                 backend: str = "onnxruntime", threads: int | None = None, engine: Any = None) -> None:
        from posekit.engines import load_engine

        if engine is None:
            if path is None:
                from posekit.export import ensure_onnx

                path = ensure_onnx(name)
            options = {} if threads is None else {"threads": threads}
            engine = load_engine(Path(path), backend, device, **options)
        path = path or getattr(engine, "path", None) or repr(engine)
        self.engine = engine
        meta = self.engine.metadata
        if meta.get("posekit.model", name) != name:
            raise ValueError(f"{path}: expected an export of {name}, its metadata says {meta['posekit.model']}")
        missing = [k for k in _REQUIRED_META if k not in meta]
        if missing:
            raise ValueError(f"{path}: expected posekit export metadata {', '.join(_REQUIRED_META)}; missing {', '.join(missing)}")
        self.input_size = tuple(int(v) for v in json.loads(meta["posekit.input_size"]))  # height, width
        self.model_colour = meta["posekit.colour"].upper()
        self.mean = np.asarray(json.loads(meta["posekit.mean"]), np.float32)
        self.std = np.asarray(json.loads(meta["posekit.std"]), np.float32)
        self._normalise = bool(np.any(self.mean != 0) or np.any(self.std != 1))
        self.name = name

    @property
    def any_size(self) -> bool:
        """Whether the engine takes any input height and width (a `spatial="dynamic"` export)."""
        shape = self.engine.inputs[0].shape
        return len(shape) == 4 and shape[2] is None and shape[3] is None

    def __call__(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from posekit.ops.movenet import decode_movenet

        if len(crops) == 0:
            return np.zeros((0, 17, 2), np.float32), np.zeros((0, 17), np.float32)
        x = crops[..., ::-1] if self.model_colour == "RGB" else crops
        x = x.transpose(0, 3, 1, 2).astype(np.float32)  # one copy: NHWC uint8 -> NCHW float32
        if self._normalise:
            x -= self.mean[None, :, None, None]
            x /= self.std[None, :, None, None]
        outputs = self.engine(x)
        named = dict(zip(self.engine.output_names, outputs))
        heads = [named[n] for n in _MOVENET_HEADS] if all(n in named for n in _MOVENET_HEADS) else outputs
        keypoints, scores = decode_movenet(*heads, input_size=crops.shape[1:3])
        return np.asarray(keypoints, np.float32), np.asarray(scores, np.float32)


# how PoseEstimator shapes person crops (see its docstring)
CROP_SHAPES = ("fit", "square")


def _box_score(poses: Poses, visible: np.ndarray) -> np.ndarray:
    return poses.box_scores


def _keypoint_score(poses: Poses, visible: np.ndarray) -> np.ndarray:
    s = np.where(visible, poses.keypoint_scores, 0).sum(1)
    return (s / np.maximum(visible.sum(1), 1)).astype(np.float32)


def _box_times_keypoint_score(poses: Poses, visible: np.ndarray) -> np.ndarray:
    return poses.box_scores * _keypoint_score(poses, visible)


# person score -> fn(poses, visible keypoints (N, K) bool) -> (N,)
PERSON_SCORES: dict[str, Callable[[Poses, np.ndarray], np.ndarray]] = {
    "box": _box_score,
    "keypoints": _keypoint_score,
    "box*keypoints": _box_times_keypoint_score,
}


def engine_options(backend: str, threads: int | None) -> dict[str, Any]:
    """`threads` for the engines that take it (ONNX Runtime); the others choose their own."""
    import inspect

    from posekit.engines import engine_class

    takes = inspect.signature(engine_class(backend)).parameters
    return {"threads": threads} if threads is not None and "threads" in takes else {}


def _pose_model(pose: Any, device: str, backend: str, precision: str, threads: int | None) -> Any:
    """The pose model on the engine `posekit.compare.make_engine` picks: the float export for
    onnxruntime fp32, a cached build (posekit.build) for the other backends and precisions."""
    if not isinstance(pose, str):
        return pose  # an object with input_size, max_batch and __call__(crops)
    from posekit.compare import EnginePoseModel, make_engine

    spec = registry.get(pose)
    if spec.task != "pose":
        raise ValueError(f"{pose} is a {spec.task} model, not a pose model; pose models: {', '.join(registry.names('pose'))}")
    if spec.family != "movenet":
        raise ValueError(f"{pose}: no top-down runner for family {spec.family!r}")
    engine = make_engine(pose, backend, precision, device, **engine_options(backend, threads))
    # ONNX artefacts carry posekit's export record (preprocessing, output names); a TensorRT plan
    # or a compiled package does not, and runs with the registry entry's preprocessing.
    if all(k in engine.metadata for k in _REQUIRED_META):
        return MoveNetOnnx(pose, engine=engine)
    return EnginePoseModel(pose, engine)


def finish_poses(poses: Poses, person_score: str = "box*keypoints", keypoint_threshold: float = 0.2,
                 oks_threshold: float | None = 0.8, min_score: float = 0.0) -> Poses:
    """Person scores, pose NMS (OKS) and the score floor: the last step of every pipeline."""
    if len(poses) == 0:
        return poses
    visible = poses.keypoint_scores > keypoint_threshold
    poses = poses.replace(scores=PERSON_SCORES[person_score](poses, visible))
    if oks_threshold is not None and len(poses) > 1:
        wh = poses.boxes[:, 2:] - poses.boxes[:, :2]
        keep = oks_nms(poses.keypoints, poses.scores, wh.prod(1) * 0.53, oks_threshold)
        poses = poses[np.sort(keep)]
    if min_score > 0:
        poses = poses[poses.scores >= min_score]
    return poses


class PoseEstimator:
    """Multi-person pose estimation: ``estimator(image) -> Poses`` in image pixels.

    det:                 detector registry name (or a Detector)
    pose:                pose registry name (or a model object: ``model(crops) -> (keypoints, scores)``)
    det_score_threshold: detector boxes below are dropped
    crop_scale:          crop side = `crop_scale` x the box's longer side (after matching the input aspect)
    crop_shape:          "fit": each crop shaped and sized like its person (a standing person runs at
                         256x128, about half the work of 256x256; a small one at 192 rather than
                         blown up to 256; see `fit_input_sizes`), for pose models on engines that
                         take any input size (ONNX Runtime); "square": every crop at the model's size.
                         "fit" falls back to "square" on engines with a fixed input size.
    person_score:        "box", "keypoints" (mean visible keypoint score) or "box*keypoints"
    keypoint_threshold:  a keypoint scoring above this counts as visible for the person score
    oks_threshold:       pose NMS: drop a person whose OKS with a better one is above; None: off
    backend, precision:  the pose model's engine: "onnxruntime" fp32 (the float export) or int8
                         (a cached build, calibrated on the crops shipped in posekit/assets), or any
                         backend/precision posekit.build makes. precision None: `default_precision`,
                         int8 for ONNX Runtime on the CPU (AP 0.698 vs fp32's 0.708 on the shared
                         COCO images, 1.6x the speed; BENCHMARKS.md), fp32 elsewhere
    det_precision:       the detector's precision on the same backend (default fp32: INT8 RTMDet
                         measured slower and less accurate than fp32)
    batch:               most crops per pose engine call (None: 2 on the CPU, 32 on a GPU)
    frames_per_batch:    frames grouped into one detector call and one pose batch in `stream`
                         (None: 1 on the CPU, 4 on a GPU)

    On the CPU, big batches cost more per crop (MoveNet-Thunder, 1 ORT thread: 20 ms CPU per
    crop at batch 1-2, 30 ms at 16, measured here), so the CPU defaults keep batches small and
    get their speed from `workers` single-threaded calls running at once; batching pays on GPUs.
    workers:             threads running chunks of frames at once in `stream` (3: on 2 cores, 2
                         workers kept 1.6 cores busy and 3 kept 1.95, measured with bench_pipeline)
    threads:             ONNX Runtime intra-op threads per engine (None: 1 when workers > 1)
    """

    def __init__(self, det: Any = "rtmdet-nano-person", pose: Any = "movenet-thunder", device: str = "cpu",
                 backend: str = "onnxruntime", precision: str | None = None, det_precision: str = "fp32",
                 det_score_threshold: float = 0.2, det_iou_threshold: float = 0.65,
                 crop_scale: float = 1.25, crop_shape: str = "fit", person_score: str = "box*keypoints",
                 keypoint_threshold: float = 0.2,
                 oks_threshold: float | None = 0.8, min_score: float = 0.0, batch: int | None = None,
                 frames_per_batch: int | None = None, workers: int = 3, threads: int | None = None) -> None:
        from posekit.detectors import Detector

        if person_score not in PERSON_SCORES:
            raise ValueError(f"unknown person_score {person_score!r}; use one of {', '.join(PERSON_SCORES)}")
        if crop_shape not in CROP_SHAPES:
            raise ValueError(f"unknown crop_shape {crop_shape!r}; use one of {', '.join(CROP_SHAPES)}")
        on_cpu = device == "cpu"
        batch = batch if batch is not None else (2 if on_cpu else 32)
        frames_per_batch = frames_per_batch if frames_per_batch is not None else (1 if on_cpu else 4)
        if workers < 1 or batch < 1 or frames_per_batch < 1:
            raise ValueError(f"workers, batch and frames_per_batch must be >= 1, got {workers}, {batch}, {frames_per_batch}")
        if threads is None and workers > 1:
            threads = 1
        self.detector = det if isinstance(det, Detector) else Detector(
            det, device=device, backend=backend, precision=det_precision, score_threshold=det_score_threshold,
            iou_threshold=det_iou_threshold, threads=threads)
        self.precision = precision or default_precision(backend, device)
        self.pose = _pose_model(pose, device, backend, self.precision, threads)
        self.crop_scale = float(crop_scale)
        self.crop_shape = crop_shape if getattr(self.pose, "any_size", False) else "square"
        if crop_shape != self.crop_shape:
            log.debug("%s takes one input size: square crops", self.pose)
        self.person_score = person_score
        self.keypoint_threshold = float(keypoint_threshold)
        self.oks_threshold = oks_threshold
        self.min_score = float(min_score)
        self.batch = int(batch)
        self.frames_per_batch = int(frames_per_batch)
        self.workers = int(workers)

    # -- one frame / a list of frames ---------------------------------------------------------

    def __call__(self, image: np.ndarray | str | os.PathLike) -> Poses:
        if not isinstance(image, np.ndarray):
            from posekit.io import read_image

            image = read_image(image)
        return self.estimate_batch([image])[0]

    def estimate_batch(self, images: Sequence[np.ndarray]) -> list[Poses]:
        """Detect people in every image, then run all their crops through the pose model together."""
        images = [_as_bgr(im) for im in images]
        return self.estimate_boxes(images, self.detector.detect_batch(images))

    def estimate_boxes(self, images: Sequence[np.ndarray], people: Sequence[Poses]) -> list[Poses]:
        """Keypoints for given person boxes (e.g. ground-truth boxes): the crops of all images
        together, one pose batch per crop shape."""
        images = [_as_bgr(image) for image in images]
        shapes = [self._input_shapes(found.boxes) for found in people]
        keypoints = [np.zeros((len(found), NUM_KEYPOINTS, 2), np.float32) for found in people]
        scores = [np.zeros((len(found), NUM_KEYPOINTS), np.float32) for found in people]
        distinct = {tuple(int(v) for v in row) for s in shapes for row in s}
        for shape in sorted(distinct, reverse=True):
            crops, owners = [], []
            for i, (image, found, s) in enumerate(zip(images, people, shapes)):
                rows = np.flatnonzero((s == shape).all(1))
                if len(rows):
                    c, transform = affine_crop(image, found.boxes[rows], shape, self.crop_scale)
                    crops.append(c)
                    owners.append((i, rows, transform))
            k, p = self._run_pose(np.concatenate(crops))
            start = 0
            for i, rows, transform in owners:
                end = start + len(rows)
                keypoints[i][rows] = crop_to_image(k[start:end], transform)
                scores[i][rows] = p[start:end]
                start = end
        return [self._finish(found.replace(keypoints=k, keypoint_scores=p))
                for found, k, p in zip(people, keypoints, scores)]

    def _input_shapes(self, boxes: np.ndarray) -> np.ndarray:
        """(N, 2) pose input (height, width) per box: the model's size, or shaped like the box."""
        if self.crop_shape == "fit":
            return fit_input_sizes(boxes, self.pose.input_size, self.crop_scale)
        return np.tile(np.asarray(self.pose.input_size, int), (len(boxes), 1))

    def _run_pose(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        step = min(self.batch, self.pose.max_batch or self.batch)
        if len(crops) <= step:
            return self.pose(crops)
        parts = [self.pose(crops[i : i + step]) for i in range(0, len(crops), step)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _finish(self, poses: Poses) -> Poses:
        return finish_poses(poses, self.person_score, self.keypoint_threshold, self.oks_threshold, self.min_score)

    # -- many frames ------------------------------------------------------------------------

    def stream(self, frames: Iterable[Any], prefetch: int = 8) -> Iterator[Poses]:
        """Poses for each frame, in order. Frames are (H, W, 3) uint8 BGR arrays, or paths.

        A prefetch thread pulls (and decodes) frames from `frames`; chunks of
        `frames_per_batch` frames run on `workers` threads; at most 2 x workers chunks are in
        flight, so memory stays bounded on long videos.
        """
        chunks = _chunked(_prefetch(iter(frames), prefetch), self.frames_per_batch)
        if self.workers == 1:
            for chunk in chunks:
                yield from self.estimate_batch(chunk)
            return
        with ThreadPoolExecutor(self.workers, thread_name_prefix="posekit") as pool:
            pending: deque = deque()
            for chunk in chunks:
                pending.append(pool.submit(self.estimate_batch, chunk))
                if len(pending) >= 2 * self.workers:
                    yield from pending.popleft().result()
            while pending:
                yield from pending.popleft().result()


def _as_bgr(image: Any) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        from posekit.io import read_image

        image = read_image(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 BGR image, got {image.shape} {image.dtype}")
    return image


def _chunked(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


_DONE = object()


def _prefetch(items: Iterator[Any], depth: int) -> Iterator[Any]:
    """Pull from `items` in a background thread, at most `depth` ahead; re-raise its errors here."""
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def pull() -> None:
        try:
            for item in items:
                if isinstance(item, (str, os.PathLike)):
                    from posekit.io import read_image

                    item = read_image(item)
                if not put(item):
                    return
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            put(exc)

    thread = threading.Thread(target=pull, name="posekit-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


# --- one factory for infer / eval / track -------------------------------------------------------

def default_precision(backend: str, device: str = "cpu") -> str:
    """The pose model's precision when none is asked for: int8 for ONNX Runtime on the CPU (the
    cached calibrated build), fp32 everywhere else."""
    return "int8" if backend == "onnxruntime" and device == "cpu" else "fp32"


def _estimator_pipeline(det: str, pose: str, device: str, backend: str, precision: str, **options: Any) -> Any:
    return PoseEstimator(det=det, pose=pose, device=device, backend=backend, precision=precision, **options)


def _gpu_pipeline(det: str, pose: str, device: str, backend: str, precision: str, det_score_threshold: float = 0.3,
                  oks_threshold: float | None = 0.8, min_score: float = 0.0, frames_per_batch: int | None = None,
                  **ignored: Any) -> Any:
    from posekit.gpu_pipeline import GpuPoseEstimator, GpuPosePipeline

    if ignored:  # CPU-pipeline knobs (batch, workers): the device pipeline batches whole chunks instead
        log.debug("the %s pipeline does not use %s", backend, ", ".join(sorted(ignored)))
    pipeline = GpuPosePipeline(det=det, pose=pose, device=device, backend=backend, precision=precision,
                               score_threshold=det_score_threshold)
    return GpuPoseEstimator(pipeline, frames_per_batch=frames_per_batch or 16, oks_threshold=oks_threshold,
                            min_score=min_score)


# backend -> (precisions the commands offer, default detector, the pipeline it runs, what it is)
PIPELINE_BACKENDS: dict[str, tuple[tuple[str, ...], str, Callable[..., Any], str]] = {
    "onnxruntime": (("fp32", "int8"), "rtmdet-nano-person", _estimator_pipeline,
                    "ONNX Runtime, CPU (or CUDA with onnxruntime-gpu); int8: the cached calibrated MoveNet build"),
    "tensorrt": (("fp32", "fp16", "int8"), "rtmdet-nano-person", _estimator_pipeline,
                 "TensorRT plans from the build cache, CUDA only"),
    "torch": (("fp32", "fp16", "bf16"), "yolox-nano", _gpu_pipeline,
              "the all-torch pipeline (YOLOX + MoveNet on the device), eager"),
    "inductor": (("fp32", "fp16", "bf16"), "yolox-nano", _gpu_pipeline,
                 "the all-torch pipeline compiled by torch.compile (slow first batch)"),
}


def available_backends() -> list[str]:
    """PIPELINE_BACKENDS whose runtime is installed here."""
    from posekit.engines import BackendUnavailable, engine_class

    out = []
    for name in PIPELINE_BACKENDS:
        try:
            engine_class(name)
        except BackendUnavailable:
            continue
        out.append(name)
    return out


def describe_backends() -> str:
    """One line per backend, for `--help`."""
    return "\n".join(f"  {name:<12} {'/'.join(p):<15} {what}" for name, (p, _, _, what) in PIPELINE_BACKENDS.items())


def _offer(names: Iterable[str]) -> str:
    return ", ".join(f"{n} ({'/'.join(PIPELINE_BACKENDS[n][0])})" for n in names)


def check_backend(backend: str, precision: str) -> None:
    """A ValueError naming what is available when `backend` x `precision` cannot run here."""
    from posekit.engines import BackendUnavailable, engine_class

    if backend not in PIPELINE_BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; available here: {_offer(available_backends())}")
    precisions = PIPELINE_BACKENDS[backend][0]
    if precision not in precisions:
        raise ValueError(f"backend {backend} runs {'/'.join(precisions)}, not {precision!r}; "
                         f"available here: {_offer(available_backends())}")
    try:
        engine_class(backend)
    except BackendUnavailable as exc:
        raise ValueError(f"backend {backend} is not installed here ({exc.__cause__}); "
                         f"available here: {_offer(available_backends())}") from None


def make_estimator(det: str | None = None, pose: str = "movenet-thunder", device: str = "cpu",
                   backend: str = "onnxruntime", precision: str | None = None, **options: Any) -> Any:
    """The pose pipeline for `backend` and `precision` (what `posekit infer`, `eval` and `track` run).

    onnxruntime / tensorrt: `PoseEstimator`, its pose model on that engine (int8 and the other
    non-default builds come from posekit.build's cache: built on first use, reused after), the
    detector on the same backend in fp32. torch / inductor: `GpuPosePipeline` (YOLOX + MoveNet,
    every step a torch op on `device`) behind the same interface.
    det: None picks the backend's default detector (rtmdet-nano-person; yolox-nano for torch/inductor).
    options: PoseEstimator's keyword arguments (det_score_threshold, oks_threshold, min_score, batch,
    workers, ...); the torch pipeline takes det_score_threshold, oks_threshold, min_score and
    frames_per_batch.
    """
    precision = precision or default_precision(backend, device)
    check_backend(backend, precision)
    _precisions, default_det, make, _what = PIPELINE_BACKENDS[backend]
    return make(det or default_det, pose, device, backend, precision, **options)
