"""What `posekit infer`, `eval` and `track` run: one factory from the command line's choices
(models, backend, precision, device) to an estimator.

Every estimator has the same interface: ``estimator(image) -> Poses``, ``estimate_batch(images)``,
``stream(frames)``, ``estimate_boxes(images, people)`` (top-down only) and ``detector(image)``.
Model names are resolved here, once; everything inward takes registry entries.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Iterable

from posekit import families, registry
from posekit.runtime import default_precision

log = logging.getLogger(__name__)


def _estimator_pipeline(det: registry.ModelSpec | None, pose: registry.ModelSpec, device: str, backend: str,
                        precision: str, **options: Any) -> Any:
    if families.of(pose).kind == "bottom-up":
        from posekit.bottomup import BottomUpEstimator

        return BottomUpEstimator(pose, device=device, backend=backend, precision=precision, **options)
    from posekit.pipeline import PoseEstimator

    return PoseEstimator(det=det, pose=pose, device=device, backend=backend, precision=precision, **options)


def _gpu_pipeline(det: registry.ModelSpec | None, pose: registry.ModelSpec, device: str, backend: str, precision: str, det_score_threshold: float | None = None,
                  oks_threshold: float | None = 0.8, min_score: float = 0.0, frames_per_batch: int | None = None,
                  **ignored: Any) -> Any:
    from posekit.gpu_pipeline import GpuPoseEstimator, GpuPosePipeline

    if ignored.pop("flip", False):
        raise ValueError(f"the {backend} pipeline has no flip test; use --backend onnxruntime for --flip")
    if ignored:  # CPU-pipeline knobs (batch, workers): the device pipeline batches whole chunks instead
        log.debug("the %s pipeline does not use %s", backend, ", ".join(sorted(ignored)))
    # a 64-frame chunk is ~800 crops: right for a GPU, gigabytes of activations on a CPU
    frames_per_batch = frames_per_batch or (GPU_FRAMES_PER_BATCH if device.startswith("cuda") else 4)
    # Inductor compiles one graph per batch size: few sizes (a partial chunk and a photo are padded
    # up), so a run compiles a handful of graphs once, and the persistent cache serves later runs.
    # The detector has one, the chunk: a graph costs 4-5 s of every start even from a warm cache
    # (H200 logs, 2026-12-01), padding a photo to a 64-frame chunk at most the 5.8 ms that chunk's
    # detection took there.
    sizes = {}
    if backend == "inductor":
        sizes = dict(det_batch_sizes=_batch_sizes("POSEKIT_GPU_DET_BATCHES", (frames_per_batch,)),
                     pose_batch_sizes=_batch_sizes("POSEKIT_GPU_POSE_BATCHES", GPU_POSE_BATCHES))
    start = time.perf_counter()
    pipeline = GpuPosePipeline(det=det, pose=pose, device=device, backend=backend, precision=precision,
                               score_threshold=0.3 if det_score_threshold is None else det_score_threshold, **sizes)
    # (start-up is what users wait for: weights, conversion, device set-up, apart from compiling)
    log.info("%s + %s built on %s in %.1f s", det.name, pose.name, device, time.perf_counter() - start)
    if backend == "inductor":
        log.info("compiling %s + %s for %s %s (first use of these settings; later runs load the cache)",
                 det.name, pose.name, device, precision)
        pipeline.warmup()
    return GpuPoseEstimator(pipeline, frames_per_batch=frames_per_batch, oks_threshold=oks_threshold,
                            min_score=min_score)


def _batch_sizes(variable: str, default: Any) -> Any:
    """The compiled batch sizes: `variable` from the environment ("dynamic", or sizes such as
    "128,512") when set, else `default`."""
    import os

    text = os.environ.get(variable, "").strip()
    if not text:
        return default
    if text == "dynamic":
        return text
    try:
        return tuple(int(b) for b in text.split(","))
    except ValueError:
        raise ValueError(f"{variable}={text!r}: expected 'dynamic' or batch sizes such as 128,512") from None


# frames per device batch, and the pose batch sizes compiled: a 64-frame chunk of a busy street
# (~10 people a frame) runs its ~660 crops as 512 + 128 + 128 (posekit.engines.inductor.batch_plan)
GPU_FRAMES_PER_BATCH = 64
GPU_POSE_BATCHES = (128, 512)


# backend -> (precisions the commands offer, default detector, default pose model, the pipeline it runs, what it is)
PIPELINE_BACKENDS: dict[str, tuple[tuple[str, ...], str, str, Callable[..., Any], str]] = {
    "onnxruntime": (("fp32", "int8"), "picodet-s-320-pedestrian", "tinypose-256x192", _estimator_pipeline,
                    "ONNX Runtime, CPU (or CUDA with onnxruntime-gpu); int8: a cached calibrated build"),
    "tensorrt": (("fp32", "fp16", "int8"), "picodet-s-320-pedestrian", "tinypose-256x192", _estimator_pipeline,
                 "TensorRT plans from the build cache, CUDA only"),
    "torch": (("fp32", "fp16", "bf16"), "yolox-nano", "movenet-thunder", _gpu_pipeline,
              "the all-torch pipeline (detector + pose model on the device), eager"),
    "inductor": (("fp32", "fp16", "bf16"), "yolox-nano", "movenet-thunder", _gpu_pipeline,
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
    return "\n".join(f"  {name:<12} {'/'.join(p):<15} {what}" for name, (p, _, _, _, what) in PIPELINE_BACKENDS.items())


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


def make_estimator(det: str | None = None, pose: str | None = None, device: str = "cpu",
                   backend: str = "onnxruntime", precision: str | None = None, **options: Any) -> Any:
    """The pose pipeline for `backend` and `precision` (what `posekit infer`, `eval` and `track` run).

    onnxruntime / tensorrt: `PoseEstimator`, its pose model on that engine (int8 and the other
    non-default builds come from posekit.build's cache: built on first use, reused after), the
    detector on the same backend in fp32. torch / inductor: `GpuPosePipeline` (YOLOX + MoveNet by
    default, every step a torch op on `device`) behind the same interface. A bottom-up pose model
    (movenet-multipose) runs alone: `posekit.bottomup.BottomUpEstimator`.
    det, pose: None picks the backend's defaults (PicoDet-S-320 + PP-TinyPose-256x192 on
    onnxruntime/tensorrt; YOLOX-nano + MoveNet-Thunder for torch/inductor).
    precision: None picks `posekit.runtime.default_precision` for the pose model.
    options: PoseEstimator's keyword arguments (det_score_threshold, oks_threshold, min_score, batch,
    workers, ...); the torch pipeline takes det_score_threshold, oks_threshold, min_score and
    frames_per_batch.
    """
    if backend not in PIPELINE_BACKENDS:
        check_backend(backend, "fp32")  # fails naming what is available
    _precisions, default_det, default_pose, make, _what = PIPELINE_BACKENDS[backend]
    pose_spec = registry.resolve(pose or default_pose)
    if pose_spec.task != "pose":
        raise ValueError(f"{pose_spec.name} is a {pose_spec.task} model, not a pose model; pose models: "
                         f"{', '.join(registry.names('pose'))}")
    precision = precision or default_precision(backend, device, pose_spec)
    check_backend(backend, precision)
    det_spec = None if families.of(pose_spec).kind == "bottom-up" else registry.resolve(det or default_det)
    return make(det_spec, pose_spec, device, backend, precision, **options)
