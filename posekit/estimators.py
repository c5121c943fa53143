"""What `posekit infer`, `eval` and `track` run: one factory from the command line's choices
(models, backend, precision, device) to an estimator.

Every estimator has the same interface: ``estimator(image) -> Poses``, ``estimate_batch(images)``,
``stream(frames)``, ``estimate_boxes(images, people)`` (top-down only) and ``detector(image)``.
Model names are resolved here, once; everything inward takes registry entries.
"""

from __future__ import annotations

import logging
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


def _gpu_pipeline(det: registry.ModelSpec | None, pose: registry.ModelSpec, device: str, backend: str, precision: str, det_score_threshold: float = 0.3,
                  oks_threshold: float | None = 0.8, min_score: float = 0.0, frames_per_batch: int | None = None,
                  **ignored: Any) -> Any:
    from posekit.gpu_pipeline import GpuPoseEstimator, GpuPosePipeline

    if ignored.pop("flip", False):
        raise ValueError(f"the {backend} pipeline has no flip test; use --backend onnxruntime for --flip")
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
    pose_spec = registry.resolve(pose)
    precision = precision or default_precision(backend, device, pose_spec)
    check_backend(backend, precision)
    if pose_spec.task != "pose":
        raise ValueError(f"{pose_spec.name} is a {pose_spec.task} model, not a pose model; pose models: "
                         f"{', '.join(registry.names('pose'))}")
    _precisions, default_det, make, _what = PIPELINE_BACKENDS[backend]
    det_spec = None if families.of(pose_spec).kind == "bottom-up" else registry.resolve(det or default_det)
    return make(det_spec, pose_spec, device, backend, precision, **options)
