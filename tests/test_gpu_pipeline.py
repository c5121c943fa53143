"""The GPU pipeline's torch code, run on the CPU in fp32, against the numpy/ONNX pipeline."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from posekit.gpu_pipeline import (GpuPosePipeline, box_iou_torch, cluster_nms, crop_people, crop_windows,
                                  letterbox_torch)
from posekit.ops.boxes import box_iou, nms
from posekit.ops.crop import affine_crop, letterbox
from paths import COCO_IMAGES, DEMO_VIDEO


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    cap = cv2.VideoCapture(str(DEMO_VIDEO))
    ok, image = cap.read()
    cap.release()
    assert ok
    return image


@pytest.mark.parametrize("seed, n, threshold", [(0, 1, 0.5), (1, 30, 0.5), (2, 200, 0.65), (3, 200, 0.3), (4, 50, 0.0)])
def test_cluster_nms_equals_greedy_nms(seed, n, threshold):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 200, (n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 80, (n, 2))], 1).astype(np.float32)
    scores = rng.uniform(0.01, 1, n).astype(np.float32)
    order = np.argsort(-scores)
    keep = cluster_nms(torch.from_numpy(boxes[order])[None], torch.from_numpy(scores[order])[None],
                       torch.ones(1, n, dtype=torch.bool), threshold)[0].numpy()
    assert sorted(order[keep].tolist()) == sorted(nms(boxes, scores, threshold).tolist())


def test_box_iou_matches_numpy():
    rng = np.random.default_rng(5)
    a = np.concatenate([rng.uniform(0, 50, (6, 2)), rng.uniform(60, 90, (6, 2))], 1).astype(np.float32)
    np.testing.assert_allclose(box_iou_torch(torch.from_numpy(a), torch.from_numpy(a)).numpy(), box_iou(a, a), atol=1e-6)


def test_letterbox_matches_opencv(frame):
    want, transform = letterbox(frame, (416, 416))
    got, scale = letterbox_torch(torch.from_numpy(frame)[None], (416, 416))
    assert scale == pytest.approx(transform.scale)
    diff = np.abs(got[0].permute(1, 2, 0).numpy() - want.astype(np.float32))
    assert diff.mean() < 1.0 and np.percentile(diff, 99) < 8


@pytest.mark.parametrize("box", [[300, 100, 380, 330], [-20, -10, 60, 200], [900, 400, 1000, 560], [500, 300, 504, 303]],
                         ids=["inside", "off-top-left", "off-bottom-right", "tiny"])
def test_grid_sample_crops_match_affine_crop(frame, box):
    boxes = np.array([box], np.float32)
    want, transform = affine_crop(frame, boxes, (256, 256), 1.25)
    scales, origins = crop_windows(torch.from_numpy(boxes), (256, 256), 1.25)
    np.testing.assert_allclose(scales.numpy(), transform.scales, rtol=1e-6)
    np.testing.assert_allclose(origins.numpy(), transform.origins, atol=1e-3)
    blank = np.zeros_like(frame)
    volume = torch.from_numpy(np.stack([blank, frame, blank])).permute(3, 0, 1, 2).float()  # crop frame 1 of 3
    got = crop_people(volume, torch.ones(1, dtype=torch.long), scales, origins, (256, 256))
    diff = np.abs(got[0].permute(1, 2, 0).numpy() - want[0].astype(np.float32))
    assert diff.mean() < 1.0 and np.percentile(diff, 99) < 10


@pytest.fixture(scope="module")
def gpu_path(shared_env):
    return GpuPosePipeline(device="cpu", backend="torch", precision="fp32")


def test_gpu_pipeline_on_cpu_agrees_with_onnx_pipeline(gpu_path, frame, shared_env):
    from posekit.build import source_onnx
    from posekit.engines.onnxruntime import OnnxRuntimeEngine
    from posekit.detectors import Detector
    from posekit.pipeline import PoseEstimator
    from posekit.pose_models import TopDownModel

    got = gpu_path([frame])[0]
    detector = Detector("yolox-nano", score_threshold=0.3, iou_threshold=0.65)
    cpu = PoseEstimator(det=detector, workers=1, oks_threshold=None,
                        pose=TopDownModel(OnnxRuntimeEngine(source_onnx("movenet-thunder"))))
    want = cpu.estimate_boxes([frame], [detector(frame)])[0]
    assert len(got) == len(want) >= 8  # a crowded street
    iou = box_iou(got.boxes, want.boxes)
    match = iou.argmax(1)
    assert iou.max(1).min() > 0.98 and len(set(match.tolist())) == len(got)
    np.testing.assert_allclose(got.box_scores, want.box_scores[match], atol=0.01)
    d = np.linalg.norm(got.keypoints - want.keypoints[match], axis=-1)
    assert np.median(d) < 1.0 and (d < 3).mean() > 0.9  # image pixels; a few argmax ties may flip


def test_gpu_pipeline_frames_in_a_batch_and_nobody(gpu_path, frame):
    blank = np.zeros_like(frame)
    out = gpu_path([frame, blank, frame])
    assert len(out) == 3 and len(out[1]) == 0 and out[1].keypoints.shape == (0, 17, 2)
    np.testing.assert_allclose(out[0].keypoints, out[2].keypoints, atol=1e-3)


def test_gpu_pipeline_stream_keeps_order(gpu_path, frame):
    flipped = np.ascontiguousarray(frame[:, ::-1])
    out = list(gpu_path.stream(iter([frame, flipped, frame]), frames_per_batch=2))
    assert len(out) == 3
    np.testing.assert_allclose(out[0].boxes, out[2].boxes, atol=1e-3)
    assert len(out[1]) > 0


def _photos_of_several_sizes() -> list[np.ndarray]:
    """COCO photos of four sizes (landscape, portrait, small, a crop) and a grayscale-sized odd one."""
    photos = [cv2.imread(str(COCO_IMAGES / f"{n:012d}.jpg")) for n in (785, 40083, 163746, 6012)]
    photos.append(np.ascontiguousarray(photos[1][37:301, 55:390]))  # a crop: people cut by its edges
    assert len({p.shape for p in photos}) >= 4, [p.shape for p in photos]
    return photos


@pytest.mark.parametrize("family", ["letterbox", "stretch"])
def test_photos_of_several_sizes_in_one_batch_give_the_poses_each_gives_alone(family, shared_env, monkeypatch):
    """A folder of photos batches on one canvas (one compiled graph, full batches): each photo is
    letterboxed (YOLOX) or stretched (PicoDet) from its own size, and its crops read zeros beyond
    its edges as alone. The same people and keypoints as one photo at a time."""
    det = "yolox-nano" if family == "letterbox" else "picodet-s-320-pedestrian"
    pipeline = GpuPosePipeline(det=det, device="cpu", backend="torch", precision="fp32")
    photos = _photos_of_several_sizes()
    together = pipeline(photos)
    assert sum(len(p) for p in together) >= 8
    for n, (photo, got) in enumerate(zip(photos, together)):
        alone = pipeline([photo])[0]
        assert len(got) == len(alone), f"photo {n} {photo.shape}: {len(got)} people batched, {len(alone)} alone"
        np.testing.assert_allclose(got.boxes, alone.boxes, atol=1e-2, err_msg=f"photo {n}")
        np.testing.assert_allclose(got.box_scores, alone.box_scores, atol=1e-4, err_msg=f"photo {n}")
        np.testing.assert_allclose(got.keypoints, alone.keypoints, atol=1e-2, err_msg=f"photo {n}")
        np.testing.assert_allclose(got.keypoint_scores, alone.keypoint_scores, atol=1e-4, err_msg=f"photo {n}")


@pytest.mark.parametrize("shapes, size, chunks", [
    ([(540, 960)] * 5, 2, [2, 2, 1]),                                   # one size: full chunks
    ([(480, 640), (640, 480), (427, 640), (640, 427)], 8, [4]),         # COCO's shapes share a canvas
    ([(480, 640), (4000, 6000), (480, 640), (480, 640)], 8, [2, 2]),    # a large photo is not every frame's size
    ([(100, 1000), (1000, 100)], 8, [1, 1]),                            # a canvas 5x its frames' pixels: cut
    ([], 8, []),
])
def test_canvas_chunks_keep_order_and_bound_the_canvas(shapes, size, chunks):
    from posekit.gpu_pipeline import canvas_chunks

    frames = [np.full((h, w, 3), i, np.uint8) for i, (h, w) in enumerate(shapes)]
    got = list(canvas_chunks(iter(frames), size))
    assert [len(c) for c in got] == chunks
    assert [int(f[0, 0, 0]) for c in got for f in c] == list(range(len(shapes)))
    for c in got:
        area = max(f.shape[0] for f in c) * max(f.shape[1] for f in c) * len(c)
        assert area <= 2 * sum(f.shape[0] * f.shape[1] for f in c)


def test_canvas_stacks_one_size_and_pads_several(frame):
    from posekit.gpu_pipeline import canvas

    stacked, sizes = canvas([frame, frame], pinned=False)
    assert sizes is None and stacked.shape == (2, *frame.shape) and np.array_equal(stacked[1].numpy(), frame)
    small = np.full((10, 700, 3), 7, np.uint8)
    padded, sizes = canvas([small, frame], pinned=False)
    assert padded.shape == (2, frame.shape[0], 960, 3) and sizes == [(10, 700), frame.shape[:2]]
    assert np.array_equal(padded[0, :10, :700].numpy(), small) and not padded[0, 10:].any() and not padded[0, :, 700:].any()
    with pytest.raises(ValueError, match=r"expected \(H, W, 3\) uint8 frames, got shapes \[\(5, 5\)"):
        canvas([np.zeros((5, 5), np.uint8)], pinned=False)


def test_gpu_pipeline_needs_torch_decoders(shared_env):
    with pytest.raises(ValueError, match="that have torch decoders, got rtmdet-nano-person"):
        GpuPosePipeline(det="rtmdet-nano-person", device="cpu")


def test_gpu_estimator_stream_with_detections(gpu_path, frame):
    """eval's one detector pass on the torch pipeline: the detections that come with each frame
    are the pipeline's people before pose NMS, the poses those people finished."""
    from posekit.gpu_pipeline import GpuPoseEstimator

    estimator = GpuPoseEstimator(gpu_path, frames_per_batch=2)
    frames = [frame, np.zeros_like(frame)]
    streamed = list(estimator.stream(iter(frames), with_detections=True))
    raw = gpu_path(frames)
    assert len(streamed) == 2 and len(streamed[0][1]) > 0 and len(streamed[1][1]) == 0
    for i, ((poses, found), direct, finished) in enumerate(zip(streamed, raw, estimator._finish(raw))):
        np.testing.assert_allclose(found.boxes, direct.boxes, atol=1e-3, err_msg=f"frame {i}: detections")
        np.testing.assert_allclose(poses.keypoints, finished.keypoints, atol=1e-3, err_msg=f"frame {i}: keypoints")
        assert len(found) >= len(poses) == len(finished)


@pytest.mark.skipif(not __import__("os").environ.get("POSEKIT_SLOW"),
                    reason="compiles two AOTInductor packages on the CPU (1-2 min); set POSEKIT_SLOW=1 to run")
def test_gpu_pipeline_on_aotinductor_packages_agrees_with_eager(gpu_path, frame, shared_env, tmp_path, monkeypatch):
    """The pipeline on AOTInductor packages from posekit.build's cache (a dynamic batch, split past
    its largest; crops reach the package as a permuted view, which it must read as such)."""
    monkeypatch.setenv("POSEKIT_CACHE", str(tmp_path / "cache"))
    aot = GpuPosePipeline(device="cpu", backend="aotinductor", precision="fp32", det_batch_sizes=(2,),
                          pose_batch_sizes=(4,))
    got, want = aot([frame, frame, frame]), gpu_path([frame, frame, frame])
    for g, w in zip(got, want):
        assert len(g) == len(w) >= 8
        np.testing.assert_allclose(g.boxes, w.boxes, atol=1e-2)
        np.testing.assert_allclose(g.keypoints, w.keypoints, atol=1e-2)
