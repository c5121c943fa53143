"""The whole pipeline on the GPU: letterbox, detector, NMS, person crops, pose model, decode.

Any detector family with a torch network and a torch box decoder (``boxes_torch``: YOLOX) and any
top-down family with a torch network and a torch decoder (``decode_torch``: MoveNet) run here;
preprocessing (resize, colour order, mean/std) comes from their registry entries.

Frames are decoded on CPU threads; everything after the upload of the uint8 frames runs on the
device, crops of all frames in a chunk go through the pose model as one batch, and only the
keypoints (and boxes) come back to the host. Each step is a plain torch function, so the same
code runs on device="cpu" in fp32 (that is how it is tested against the ONNX pipeline).

Steps (all batched, all torch):
  letterbox_torch   (B, H, W, 3) uint8 -> (B, 3, S, S) float, resized bilinear, padded 114 right/bottom
  person_boxes      raw YOLOX (B, N, 85) -> fixed-size (B, D, 4) boxes, (B, D) scores, valid mask,
                    by YOLOX's rule (label = best class, person when label 0) and Cluster-NMS,
                    which gives exactly greedy NMS's result with matrix operations only
  crop_people       grid_sample crops (M, 3, P, P) of all frames at once (frames as a volume's
                    depth: no per-crop copy of a frame), the same windows as posekit.ops.crop
  MoveNet + decode_movenet_torch -> keypoints in crop pixels -> image pixels
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from posekit import families, registry, streams
from posekit.ops.poses import check_person_score, finish_poses
from posekit.streams import as_bgr
from posekit.structures import Poses

log = logging.getLogger(__name__)

PAD_VALUE = 114.0

# each frame's (h, w) in the top-left of its batch's canvas (`canvas`); None: every frame fills it
Sizes = Optional[Sequence[tuple[int, int]]]


def letterbox_torch(frames: torch.Tensor, size: tuple[int, int], pad_value: float = PAD_VALUE,
                    dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, float]:
    """(B, H, W, 3) uint8 frames (all one size) -> ((B, 3, h, w) `dtype` 0..255, scale).

    input_xy = image_xy * scale, as posekit.ops.crop.letterbox (padding right and bottom).
    """
    b, h, w, _ = frames.shape
    out_h, out_w = size
    scale = min(out_h / h, out_w / w)
    new_w, new_h = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
    x = frames.permute(0, 3, 1, 2).to(dtype)
    if (new_h, new_w) != (h, w):
        x = F.interpolate(x.float(), size=(new_h, new_w), mode="bilinear", align_corners=False).to(dtype)
    out = torch.full((b, 3, out_h, out_w), pad_value, dtype=dtype, device=frames.device)
    out[:, :, :new_h, :new_w] = x
    return out, new_w / w


def box_iou_torch(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(..., N, 4) x (..., M, 4) xyxy -> (..., N, M) IoU."""
    lt = torch.maximum(a[..., :, None, :2], b[..., None, :, :2])
    rb = torch.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp(min=0).prod(-1)
    union = area_a[..., :, None] + area_b[..., None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-9), torch.zeros_like(inter))


def cluster_nms(boxes: torch.Tensor, scores: torch.Tensor, valid: torch.Tensor, iou_threshold: float,
                max_iterations: int = 64) -> torch.Tensor:
    """Greedy NMS for a batch, with matrix operations (Cluster-NMS, Zheng et al. 2021).

    boxes (B, K, 4), scores (B, K) sorted high to low, valid (B, K) bool (candidates) -> keep (B, K).
    Iterating "keep j unless a kept, higher-scored box overlaps it" from all-kept converges to
    the greedy result; the loop stops when the mask no longer changes.
    """
    iou = box_iou_torch(boxes.float(), boxes.float()).triu(diagonal=1)  # iou[i, j], i scored above j
    iou = iou * valid[..., :, None] * valid[..., None, :]
    keep = valid.clone()
    for _ in range(max_iterations):
        suppressed = (iou * keep[..., :, None]).amax(dim=-2) > iou_threshold
        new_keep = valid & ~suppressed
        if torch.equal(new_keep, keep):
            break
        keep = new_keep
    return keep


def person_boxes(raw: torch.Tensor, input_size: tuple[int, int], score_threshold: float = 0.3,
                 iou_threshold: float = 0.65, max_det: int = 32, pre_nms: int = 256) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Raw YOLOX (B, N, 5 + C) -> person boxes (B, D, 4) input pixels, scores (B, D), valid (B, D).

    As posekit.ops.yolox.postprocess_yolox: label = the best class, score = objectness x that
    class's score, a person when the label is 0 and the score >= score_threshold; then NMS.
    """
    from posekit.models.yolox import decode_yolox_torch

    boxes, scores = decode_yolox_torch(raw.float(), input_size=input_size)
    best, labels = scores.max(dim=-1)
    person = torch.where((labels == 0) & (best >= score_threshold), best, torch.zeros_like(best))
    return _best_boxes(boxes, person, iou_threshold, max_det, pre_nms)


def _best_boxes(boxes: torch.Tensor, person: torch.Tensor, iou_threshold: float, max_det: int,
                pre_nms: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, N, 4) boxes and (B, N) person scores (0: not a candidate) -> the `max_det` best after
    NMS among the `pre_nms` best: boxes (B, D, 4), scores (B, D), valid (B, D)."""
    k = min(pre_nms, person.shape[1])
    top, index = person.topk(k, dim=1)  # sorted high to low
    cand = boxes.gather(1, index[..., None].expand(-1, -1, 4))
    keep = cluster_nms(cand, top, top > 0, iou_threshold)
    d = min(max_det, k)
    kept_scores, order = torch.where(keep, top, torch.full_like(top, -1.0)).topk(d, dim=1)
    out_boxes = cand.gather(1, order[..., None].expand(-1, -1, 4))
    return out_boxes, kept_scores.clamp(min=0), kept_scores > 0


def yolox_person_boxes(outputs: Sequence[torch.Tensor], input_size: tuple[int, int], score_threshold: float,
                       iou_threshold: float, max_det: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The YOLOX family's ``boxes_torch``: `person_boxes` on its one raw output."""
    return person_boxes(outputs[0], input_size, score_threshold, iou_threshold, max_det)


def picodet_person_boxes(outputs: Sequence[torch.Tensor], input_size: tuple[int, int], score_threshold: float,
                         iou_threshold: float, max_det: int, pre_nms: int = 256) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The PicoDet family's ``boxes_torch``: scores (B, 1, N) and decoded boxes (B, N, 4) ->
    person boxes (B, D, 4) input pixels, scores (B, D), valid (B, D), as posekit.ops.picodet."""
    scores, boxes = outputs[0].float().reshape(outputs[0].shape[0], -1), outputs[1].float()
    person = torch.where(scores >= score_threshold, scores, torch.zeros_like(scores))
    return _best_boxes(boxes, person, iou_threshold, max_det, pre_nms)


def stretch_torch(frames: torch.Tensor, size: tuple[int, int], dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, H, W, 3) uint8 frames -> ((B, 3, h, w) `dtype` 0..255 resized without keeping the aspect
    (bicubic, as posekit.ops.crop.stretch), (4,) x/y scales to divide xyxy input boxes by)."""
    _, h, w, _ = frames.shape
    out_h, out_w = size
    x = F.interpolate(frames.permute(0, 3, 1, 2).float(), size=(out_h, out_w), mode="bicubic", align_corners=False)
    scale = torch.tensor([out_w / w, out_h / h, out_w / w, out_h / h], device=frames.device)
    return x.clamp(0, 255).to(dtype), scale


def _normaliser(spec: registry.ModelSpec, device: torch.device, dtype: torch.dtype):
    """fn((B, 3, h, w) BGR 0..255) -> the network's colour order and normalisation (from the registry entry)."""
    mean = torch.tensor(spec.mean, device=device, dtype=dtype).view(1, 3, 1, 1)
    inv_std = (1.0 / torch.tensor(spec.std, device=device, dtype=torch.float32)).to(dtype).view(1, 3, 1, 1)
    plain = all(m == 0 for m in spec.mean) and all(v == 1 for v in spec.std)
    rgb = spec.colour.upper() == "RGB"

    def apply(x: torch.Tensor) -> torch.Tensor:
        if rgb:
            x = x.flip(1)
        return x if plain else (x - mean) * inv_std
    return apply


def crop_windows(boxes: torch.Tensor, size: tuple[int, int], scale: float = 1.25) -> tuple[torch.Tensor, torch.Tensor]:
    """As posekit.ops.crop.crop_regions: (M, 4) boxes -> scales (M,), origins (M, 2); image = crop * s + origin."""
    out_h, out_w = size
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    bw = (boxes[:, 2] - boxes[:, 0]).clamp(min=1.0)
    bh = (boxes[:, 3] - boxes[:, 1]).clamp(min=1.0)
    win_w = torch.maximum(bw, bh * out_w / out_h) * scale
    scales = win_w / out_w
    origins = centre - torch.stack([win_w, scales * out_h], 1) / 2
    return scales, origins


def crop_people(volume: torch.Tensor, frame_index: torch.Tensor, scales: torch.Tensor, origins: torch.Tensor,
                size: tuple[int, int]) -> torch.Tensor:
    """Bilinear crops of many frames in one grid_sample call, without copying a frame per crop.

    volume: (C, B, H, W) float, the B frames stacked as the depth of a volume; each crop samples
    the plane of its frame (z at that plane's centre, so the trilinear weights of the other planes
    are zero). Returns (M, C, h, w); outside the image is 0.
    """
    out_h, out_w = size
    _, b, h, w = volume.shape
    px = (torch.arange(out_w, device=volume.device, dtype=torch.float32) + 0.5)
    py = (torch.arange(out_h, device=volume.device, dtype=torch.float32) + 0.5)
    x = px[None, :] * scales[:, None] + origins[:, 0:1]  # (M, w) image continuous coordinates
    y = py[None, :] * scales[:, None] + origins[:, 1:2]  # (M, h)
    m = x.shape[0]
    gx = (2 * x / w - 1)[:, None, :].expand(m, out_h, out_w)
    gy = (2 * y / h - 1)[:, :, None].expand(m, out_h, out_w)
    gz = ((2 * frame_index.float() + 1) / b - 1)[:, None, None].expand(m, out_h, out_w)
    grid = torch.stack([gx, gy, gz], dim=-1)[None].to(volume.dtype)  # (1, M, h, w, 3)
    out = F.grid_sample(volume[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out[0].permute(1, 0, 2, 3)  # (M, C, h, w)


_DEVICE_THREAD: ThreadPoolExecutor | None = None
_DEVICE_THREAD_LOCK = threading.Lock()


def device_thread() -> ThreadPoolExecutor:
    """The process's one device thread. Inductor's CUDA graphs belong to the thread that captured
    them (and its graph trees live in that thread's locals: a second thread cannot replay or
    capture), so every pipeline's device calls run here, whichever thread asks, and the caller's
    thread stays free meanwhile."""
    global _DEVICE_THREAD
    with _DEVICE_THREAD_LOCK:
        if _DEVICE_THREAD is None:
            _DEVICE_THREAD = ThreadPoolExecutor(1, thread_name_prefix="posekit-device")
        return _DEVICE_THREAD


class GpuPosePipeline:
    """A detector and a top-down pose model (YOLOX + MoveNet by default), all on `device`.

    backend:   "torch" (eager) or "inductor" (torch.compile, static batch sizes, CUDA graphs)
    precision: "fp32", "fp16" or "bf16" for both networks (decode and NMS run in fp32)
    ``pipeline(frames)``: a list of (H, W, 3) uint8 BGR frames (or a (B, H, W, 3) uint8 tensor)
    -> one `Poses` per frame, in image pixels. Frames of different sizes go through together,
    each in the top-left corner of a zero canvas (`canvas`), with the same poses as alone.
    """

    def __init__(self, det: str = "yolox-nano", pose: str = "movenet-thunder", device: str = "cuda",
                 backend: str = "torch", precision: str = "fp32", det_batch_sizes: Sequence[int] = (1, 2, 4, 8, 16, 32),
                 pose_batch_sizes: Sequence[int] = (1, 2, 4, 8, 16, 32, 64, 128, 256), score_threshold: float = 0.3,
                 iou_threshold: float = 0.65, max_det: int = 32, crop_scale: float = 1.25, mode: str | None = None) -> None:
        from posekit.engines import engine_class

        self.device = torch.device(device)
        self.det_spec, self.pose_spec = registry.resolve(det), registry.resolve(pose)
        self.det_family, self.pose_family = families.of(self.det_spec), families.of(self.pose_spec)
        if (self.det_family.kind != "detector" or self.det_family.boxes_torch is None
                or self.pose_family.kind != "top-down" or self.pose_family.decode_torch is None):
            raise ValueError(f"the GPU pipeline runs a detector and a top-down pose model that have torch decoders, "
                             f"got {self.det_spec.name} ({self.det_family.name}) and {self.pose_spec.name} ({self.pose_family.name})")
        self._boxes = families._resolve(self.det_family.boxes_torch)
        self._decode = self.pose_family.decoder_torch()
        if backend == "aotinductor":
            self.det_engine = aot_engine(self.det_spec, self.det_family, max(det_batch_sizes), device, precision)
            self.pose_engine = aot_engine(self.pose_spec, self.pose_family, max(pose_batch_sizes), device, precision)
        else:
            cls = engine_class(backend)
            options: dict[str, Any] = {}
            if backend == "inductor":
                options = {"mode": mode}
            self.det_engine = cls(self.det_family.build_torch(self.det_spec), device=device, precision=precision,
                                  output_names=self.det_family.output_names,
                                  **({**options, "batch_sizes": det_batch_sizes} if options else {}))
            self.pose_engine = cls(self.pose_family.build_torch(self.pose_spec), device=device, precision=precision,
                                   output_names=self.pose_family.output_names,
                                   **({**options, "batch_sizes": pose_batch_sizes} if options else {}))
        self.dtype = self.pose_engine.dtype
        self._det_input = _normaliser(self.det_spec, self.device, self.dtype)
        self._pose_input = _normaliser(self.pose_spec, self.device, self.dtype)
        self.score_threshold, self.iou_threshold = score_threshold, iou_threshold
        self.max_det, self.crop_scale = max_det, crop_scale
        self._worker = device_thread()

    def on_device(self, fn: Callable[..., Any], *args: Any) -> Any:
        """fn(*args) on the pipeline's device thread; its result (or exception) here."""
        if threading.current_thread().name.startswith("posekit-device"):
            return fn(*args)
        return self._worker.submit(fn, *args).result()

    def submit(self, frames: torch.Tensor, sizes: Sizes = None) -> Future:
        """Start `self(frames)` on the device thread; the Future gives its poses."""
        return self._worker.submit(self._run, frames, sizes)

    def warmup(self) -> float:
        """Compile every batch size of both engines now (Inductor; eager engines need nothing);
        returns the seconds it took."""
        return self.on_device(self._warmup)

    def _warmup(self) -> float:
        seconds = 0.0
        for engine, spec in ((self.det_engine, self.det_spec), (self.pose_engine, self.pose_spec)):
            if hasattr(engine, "warmup"):
                seconds += engine.warmup((3, *spec.input_size))
        return seconds

    @torch.inference_mode()
    def run_device(self, frames: torch.Tensor, sizes: Sizes = None) -> dict[str, torch.Tensor]:
        """(B, H, W, 3) uint8 on the device -> tensors on the device: boxes (M, 4), box_scores (M,),
        frame_index (M,), keypoints (M, 17, 2), keypoint_scores (M, 17), all image pixels.
        sizes: each frame's (h, w) in the top-left of its zero canvas (`canvas`); None: all (H, W)."""
        boxes, scores, frame_index = self.detect_device(frames, sizes)
        # the crops sample the canvas: beyond a frame's own size it holds zeros, what grid_sample
        # reads beyond an image's edge, so a crop is the one the frame alone gives
        keypoints, kp_scores = self.keypoints_device(frames, boxes, frame_index)
        return {"boxes": boxes, "box_scores": scores, "frame_index": frame_index,
                "keypoints": keypoints, "keypoint_scores": kp_scores}

    @torch.inference_mode()
    def detect_device(self, frames: torch.Tensor, sizes: Sizes = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, H, W, 3) uint8 on the device -> person boxes (M, 4) image pixels, scores (M,), frame_index (M,).
        sizes: as `run_device`."""
        det_size = self.det_spec.input_size
        x, ratios = self._resize_for_detector(frames, sizes)
        raw = self.det_family.named(self.det_engine(self._det_input(x)), self.det_engine.output_names)
        boxes, scores, valid = self._boxes(raw, det_size, self.score_threshold, self.iou_threshold, self.max_det)
        frame_index, slot = valid.nonzero(as_tuple=True)
        return boxes[frame_index, slot] / ratios[frame_index], scores[frame_index, slot], frame_index

    def _resize_for_detector(self, frames: torch.Tensor, sizes: Sizes) -> tuple[torch.Tensor, torch.Tensor]:
        """The detector's (B, 3, h, w) input and (B, 1 or 4) ratios (input = image * ratio): each
        frame letterboxed (or stretched) from its own size, a group of frames of one size at a time."""
        det_size = self.det_spec.input_size
        if self.det_family.resize == "letterbox":
            def resize(group: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                x, ratio = letterbox_torch(group, det_size, pad_value=float(self.det_family.pad_value), dtype=self.dtype)
                return x, torch.tensor([ratio], dtype=torch.float32, device=group.device)
        else:
            def resize(group: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                return stretch_torch(group, det_size, dtype=self.dtype)
        b = frames.shape[0]
        if sizes is None:
            x, ratio = resize(frames)
            return x, ratio.expand(b, -1)
        groups: dict[tuple[int, int], list[int]] = {}  # (h, w) -> the frames of that size
        for i, (gh, gw) in enumerate(sizes):
            groups.setdefault((int(gh), int(gw)), []).append(i)
        x = torch.empty((b, 3, *det_size), dtype=self.dtype, device=frames.device)
        ratios = torch.empty((b, 1 if self.det_family.resize == "letterbox" else 4), device=frames.device)
        for (gh, gw), index in groups.items():
            rows = torch.tensor(index, device=frames.device)
            x[rows], ratio = resize(frames[rows, :gh, :gw])
            ratios[rows] = ratio
        return x, ratios

    @torch.inference_mode()
    def keypoints_device(self, frames: torch.Tensor, boxes: torch.Tensor,
                         frame_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The pose model on the crops of `boxes` (M, 4) image pixels of frames[frame_index] ->
        keypoints (M, 17, 2) image pixels, keypoint scores (M, 17)."""
        if boxes.shape[0] == 0:
            return boxes.new_zeros((0, 17, 2)), boxes.new_zeros((0, 17))
        pose_size = self.pose_spec.input_size
        volume = frames.permute(3, 0, 1, 2).to(self.dtype)  # (3, B, H, W) BGR 0..255
        s, origins = crop_windows(boxes.float(), pose_size, self.crop_scale)
        crops = self._pose_input(crop_people(volume, frame_index, s, origins, pose_size))
        heads = self.pose_family.named(self.pose_engine(crops), self.pose_engine.output_names)
        keypoints, kp_scores = self._decode(heads, pose_size)
        return keypoints * s[:, None, None] + origins[:, None, :], kp_scores

    def __call__(self, frames: Sequence[np.ndarray] | torch.Tensor) -> list[Poses]:
        return self.on_device(self._run, frames)

    def _run(self, frames: Sequence[np.ndarray] | torch.Tensor, sizes: Sizes = None) -> list[Poses]:
        if not isinstance(frames, torch.Tensor):
            frames, sizes = canvas(list(frames), pinned=False)
        n = frames.shape[0]
        frames = frames.to(self.device, non_blocking=True)
        out = {k: v.float().cpu().numpy() if v.is_floating_point() else v.cpu().numpy()
               for k, v in self.run_device(frames, sizes).items()}
        return split_poses(out, n)

    def stream(self, frames: Iterable[np.ndarray], frames_per_batch: int = 16, prefetch: int = 4) -> Iterator[Poses]:
        """Poses per frame, in order; frames are pulled (decoded) and stacked on a CPU thread and
        run through the device on another (uploaded from pinned memory), while the caller takes
        the previous chunk's poses."""
        pinned = self.device.type == "cuda"
        chunks = streams.prefetch((canvas(c, pinned) for c in canvas_chunks(iter(frames), frames_per_batch)), prefetch)
        yield from itertools.chain.from_iterable(_ahead(itertools.starmap(self.submit, chunks), 2))


def aot_engine(spec: registry.ModelSpec, family: Any, max_batch: int, device: str, precision: str) -> Any:
    """The AOTInductor package of `spec` (any batch from 1 to `max_batch`) from posekit.build's
    cache: compiled on first use (logged, with the time it took) and loaded after."""
    import time

    from posekit import build

    batch = (1, min(max_batch, 64), max(2, max_batch))
    start = time.perf_counter()
    engine = build.load(spec.name, "aotinductor", precision, batch, device, output_names=family.output_names,
                        max_batch=batch[2])
    log.info("%s: AOTInductor package (%s, batch 1..%d) ready in %.1f s", spec.name, precision, batch[2],
             time.perf_counter() - start)
    return engine


def split_poses(out: dict[str, np.ndarray], frames: int) -> list[Poses]:
    """The pipeline's flat arrays (people of every frame, frame_index ascending) -> one Poses per frame."""
    order = np.argsort(out["frame_index"], kind="stable")
    ends = np.searchsorted(out["frame_index"][order], np.arange(1, frames + 1))
    pieces = {k: np.split(out[k][order], ends[:-1]) for k in ("boxes", "box_scores", "keypoints", "keypoint_scores")}
    return [Poses(boxes=b, box_scores=s, keypoints=k, keypoint_scores=p)
            for b, s, k, p in zip(pieces["boxes"], pieces["box_scores"], pieces["keypoints"], pieces["keypoint_scores"])]


def canvas(chunk: list[np.ndarray], pinned: bool) -> tuple[torch.Tensor, Sizes]:
    """The frames as one (B, H, W, 3) uint8 tensor and their sizes: frames of one size stacked,
    frames of several (a folder of photos) each in the top-left corner of a zero canvas of the
    largest height and width, so they share one batch and one compiled graph. Written straight
    into page-locked memory (one copy) when it goes to a GPU: the upload is asynchronous and at
    full bus speed."""
    shapes = {f.shape for f in chunk}
    if not chunk or any(len(s) != 3 or s[2] != 3 for s in shapes):
        raise ValueError(f"expected (H, W, 3) uint8 frames, got shapes {sorted(shapes)}")
    h, w = max(s[0] for s in shapes), max(s[1] for s in shapes)
    out = torch.empty((len(chunk), h, w, 3), dtype=torch.uint8, pin_memory=pinned)
    if len(shapes) == 1:
        np.stack(chunk, out=out.numpy())
        return out, None
    out.zero_()
    pixels = out.numpy()
    for i, frame in enumerate(chunk):
        pixels[i, :frame.shape[0], :frame.shape[1]] = frame
    return out, [f.shape[:2] for f in chunk]


def canvas_chunks(frames: Iterator[np.ndarray], size: int, waste: float = 2.0) -> Iterator[list[np.ndarray]]:
    """Consecutive frames, at most `size` at a time, in order; a frame starts a new chunk when
    the chunk's canvas (`canvas`) would hold more than `waste` times the pixels of its frames (one
    large photo among small ones would make every frame of its chunk that large)."""
    chunk: list[np.ndarray] = []
    h = w = pixels = 0
    for frame in frames:
        fh, fw = frame.shape[:2]
        if chunk and (len(chunk) == size or
                      (len(chunk) + 1) * max(h, fh) * max(w, fw) > waste * (pixels + fh * fw)):
            yield chunk
            chunk, h, w, pixels = [], 0, 0, 0
        chunk.append(frame)
        h, w, pixels = max(h, fh), max(w, fw), pixels + fh * fw
    if chunk:
        yield chunk


class GpuPoseEstimator:
    """`GpuPosePipeline` behind `PoseEstimator`'s interface, for `posekit infer`, `eval` and `track`:
    ``stream(frames)``, ``estimate_batch(images)``, ``estimate_boxes(images, people)``,
    ``detector(image)`` and ``estimator(image)``, each returning `Poses` scored and pose-NMS'd by
    `posekit.ops.poses.finish_poses` exactly as the ONNX pipeline's are.

    Frames go to the device `frames_per_batch` at a time, photos of different sizes together
    (each on a zero canvas: `canvas`), with the poses each gives alone.
    """

    def __init__(self, pipeline: GpuPosePipeline, frames_per_batch: int = 16, person_score: str = "box*keypoints",
                 keypoint_threshold: float = 0.2, oks_threshold: float | None = 0.8, min_score: float = 0.0) -> None:
        check_person_score(person_score)
        if frames_per_batch < 1:
            raise ValueError(f"frames_per_batch must be >= 1, got {frames_per_batch}")
        self.pipeline = pipeline
        self.frames_per_batch = int(frames_per_batch)
        self.finish = dict(person_score=person_score, keypoint_threshold=keypoint_threshold,
                           oks_threshold=oks_threshold, min_score=min_score)

    def _finish(self, poses: list[Poses]) -> list[Poses]:
        return [finish_poses(p, **self.finish) for p in poses]

    def __call__(self, image: Any) -> Poses:
        return self.estimate_batch([image])[0]

    def estimate_batch(self, images: Sequence[Any]) -> list[Poses]:
        images = [as_bgr(im) for im in images]
        out: list[Poses] = []
        for chunk in canvas_chunks(iter(images), self.frames_per_batch):
            out.extend(self.pipeline(chunk))
        return self._finish(out)

    def stream(self, frames: Iterable[Any], prefetch: int = 4, with_detections: bool = False) -> Iterator[Any]:
        """Poses per frame, in order, three stages at once: a thread decodes frames and stacks runs
        of one size into (pinned) chunks, a thread runs the device pipeline on them (upload, both
        networks, download), and the caller's thread scores and pose-NMSes the previous chunk.
        with_detections: (poses, detections) per frame, detections being the pipeline's people
        before the pose NMS and score floor (their boxes are what `detector` returns)."""
        for found in self.pipeline.stream(map(as_bgr, frames), self.frames_per_batch, prefetch):
            poses = finish_poses(found, **self.finish)
            yield (poses, found) if with_detections else poses

    def estimate_boxes(self, images: Sequence[np.ndarray], people: Sequence[Poses]) -> list[Poses]:
        """Keypoints for given person boxes (e.g. ground-truth boxes), one frame at a time."""
        return self._finish(self.pipeline.on_device(self._keypoints_for, images, people))

    @torch.inference_mode()
    def _keypoints_for(self, images: Sequence[np.ndarray], people: Sequence[Poses]) -> list[Poses]:
        out = []
        device = self.pipeline.device
        for image, found in zip(images, people):
            frames = torch.from_numpy(np.ascontiguousarray(image)[None]).to(device)
            boxes = torch.from_numpy(np.array(found.boxes, np.float32)).to(device)
            keypoints, scores = self.pipeline.keypoints_device(frames, boxes, torch.zeros(len(found), dtype=torch.long,
                                                                                         device=device))
            out.append(found.replace(keypoints=keypoints.float().cpu().numpy(),
                                     keypoint_scores=scores.float().cpu().numpy()))
        return out

    def detector(self, image: np.ndarray) -> Poses:
        """The person boxes of one (H, W, 3) uint8 BGR image (keypoints zero), as `Detector` returns them."""
        return self.pipeline.on_device(self._detect, image)

    @torch.inference_mode()
    def _detect(self, image: np.ndarray) -> Poses:
        frames = torch.from_numpy(np.ascontiguousarray(image)[None]).to(self.pipeline.device)
        boxes, scores, _ = self.pipeline.detect_device(frames)
        n = boxes.shape[0]
        return Poses(boxes=boxes.float().cpu().numpy(), box_scores=scores.float().cpu().numpy(),
                     keypoints=np.zeros((n, 17, 2), np.float32), keypoint_scores=np.zeros((n, 17), np.float32))


def _ahead(futures: Iterable[Future], depth: int) -> Iterator[Any]:
    """The results of `futures` in order, keeping `depth` of them submitted ahead of the one taken."""
    pending: deque = deque()
    for future in futures:
        pending.append(future)
        if len(pending) > depth:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()
