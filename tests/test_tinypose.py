"""PP-TinyPose from its OpenVINO IR: the torch network and its dynamic-batch ONNX export against the
independent reference ONNX on real person crops, heatmap decoding (numpy, torch, PaddleDetection's
loop), and accuracy with ground-truth boxes on the COCO mini set."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ir_models import (coco, coco_images, export_dynamic, max_rel_error, person_crops, run_onnx, run_reference,
                       run_torch)
from paths import session_cache
from posekit.ops.heatmaps import COCO_FLIP_PAIRS, decode_heatmaps, flip_heatmaps_back

SIZES = {"tinypose-256x192": (256, 192), "tinypose-128x96": (128, 96)}
TOL = 1e-3  # relative to the output's largest magnitude


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    folder = session_cache(tmp_path_factory) / "ir-onnx"
    folder.mkdir(exist_ok=True)
    return lambda name: export_dynamic(name, folder)


@pytest.mark.parametrize("name", SIZES)
def test_torch_matches_reference_batch_of_7(name):
    crops = person_crops(SIZES[name])[:7]
    (want,) = run_reference(name, crops)
    (got,) = run_torch(name, crops)  # one batch of 7 against 7 batch-1 references
    assert got.shape == (7, 17, SIZES[name][0] // 4, SIZES[name][1] // 4)
    assert max_rel_error(got, want) < TOL
    (one,) = run_torch(name, crops[3:4])
    assert max_rel_error(one, want[3:4]) < TOL
    # real crops give real heatmaps: a clear peak per keypoint, not noise
    assert (want.reshape(7, 17, -1).max(-1) > 0.2).mean() > 0.7


@pytest.mark.parametrize("name, batch", [("tinypose-256x192", 1), ("tinypose-256x192", 7),
                                         ("tinypose-128x96", 1), ("tinypose-128x96", 7), ("tinypose-128x96", 64)])
def test_exported_dynamic_batch(exported, name, batch):
    crops = person_crops(SIZES[name])
    idx = np.arange(batch) % len(crops)  # 64: the 49 mini-set people, then again
    unique = np.unique(idx)
    (ref,) = run_reference(name, crops[unique])
    (got,) = run_onnx(exported(name), crops[idx])
    assert got.shape[0] == batch
    assert max_rel_error(got, ref[np.searchsorted(unique, idx)]) < TOL


def test_decoded_keypoints_match_reference():
    name, size = "tinypose-256x192", SIZES["tinypose-256x192"]
    crops = person_crops(size)[:7]
    (ref,) = run_reference(name, crops)
    (got,) = run_torch(name, crops)
    k_ref, s_ref = decode_heatmaps(ref, size)
    k_got, s_got = decode_heatmaps(got, size)
    assert np.abs(k_got - k_ref).max() < 0.5
    assert np.abs(s_got - s_ref).max() < TOL
    assert (k_ref >= 0).all() and (k_ref[..., 0] <= size[1]).all() and (k_ref[..., 1] <= size[0]).all()


def _paddle_decode_loop(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PaddleDetection's HRNetPostProcess(use_dark=True) steps one keypoint at a time, with OpenCV's
    blur: heatmap cells (x, y), not yet scaled to the input."""
    hm = heatmaps.astype(np.float32).copy()
    n, k, h, w = hm.shape
    flat = hm.reshape(n, k, -1)
    best = flat.max(-1)
    cells = np.stack([flat.argmax(-1) % w, flat.argmax(-1) // w], -1).astype(np.float64) * (best > 0)[..., None]
    for i in range(n):
        for j in range(k):
            padded = np.zeros((h + 2, w + 2))
            padded[1:-1, 1:-1] = hm[i, j]
            blurred = cv2.GaussianBlur(padded, (3, 3), 0)[1:-1, 1:-1]
            hm[i, j] = blurred * (heatmaps[i, j].max() / blurred.max())
    logs = np.log(np.maximum(hm, 1e-10))
    for i in range(n):
        for j in range(k):
            m, (px, py) = logs[i, j].astype(np.float64), cells[i, j].astype(int)
            if 1 < px < w - 2 and 1 < py < h - 2:
                grad = np.array([m[py, px + 1] - m[py, px - 1], m[py + 1, px] - m[py - 1, px]]) / 2
                dxy = (m[py + 1, px + 1] - m[py - 1, px + 1] - m[py + 1, px - 1] + m[py - 1, px - 1]) / 4
                hess = np.array([[(m[py, px + 2] - 2 * m[py, px] + m[py, px - 2]) / 4, dxy],
                                 [dxy, (m[py + 2, px] - 2 * m[py, px] + m[py - 2, px]) / 4]])
                if np.linalg.det(hess) != 0:
                    cells[i, j] -= np.linalg.solve(hess, grad)
    return cells, best


@pytest.fixture(scope="module")
def real_heatmaps():
    crops = person_crops((128, 96))[:12]
    (plain,) = run_reference("tinypose-128x96", crops)
    (mirrored,) = run_reference("tinypose-128x96", np.ascontiguousarray(crops[:, :, :, ::-1]))
    return np.concatenate([plain, 0.5 * (plain + flip_heatmaps_back(mirrored))])


def test_decode_matches_paddle_loop(real_heatmaps):
    keypoints, scores = decode_heatmaps(real_heatmaps, (128, 96))
    cells, best = _paddle_decode_loop(real_heatmaps)
    np.testing.assert_allclose(keypoints, cells * 4 + 0.5, atol=1e-3)
    np.testing.assert_array_equal(scores, best)
    moved = np.abs(keypoints - (np.round((keypoints - 0.5) / 4) * 4 + 0.5)).max()
    assert moved > 0.5  # DARK moved keypoints off the integer cells


def test_decode_numpy_matches_torch(real_heatmaps):
    torch = pytest.importorskip("torch")
    from posekit.models.heatmaps_torch import decode_heatmaps_torch, flip_heatmaps_back_torch

    keypoints, scores = decode_heatmaps(real_heatmaps, (128, 96))
    kt, st = decode_heatmaps_torch(torch.from_numpy(real_heatmaps), (128, 96))
    assert np.abs(kt.numpy() - keypoints).max() < 1e-3
    np.testing.assert_array_equal(st.numpy(), scores)
    for dark in (False,):
        np.testing.assert_array_equal(decode_heatmaps_torch(torch.from_numpy(real_heatmaps), (128, 96), dark=dark)[0].numpy(),
                                      decode_heatmaps(real_heatmaps, (128, 96), dark=dark)[0])
    np.testing.assert_array_equal(flip_heatmaps_back_torch(torch.from_numpy(real_heatmaps)).numpy(),
                                  flip_heatmaps_back(real_heatmaps))


def _one_peak(h, w, y, x, value=1.0):
    hm = np.zeros((1, 1, h, w), np.float32)
    hm[0, 0, y, x] = value
    return hm


@pytest.mark.parametrize("heatmaps, input_size, keypoints, scores", [
    (np.zeros((0, 17, 64, 48), np.float32), (256, 192), np.zeros((0, 17, 2)), np.zeros((0, 17))),
    (np.full((1, 1, 8, 6), -0.5, np.float32), None, [[[0.5, 0.5]]], [[-0.5]]),   # nothing above 0: cell (0, 0)
    (_one_peak(8, 6, 0, 5), None, [[[20.5, 0.5]]], [[1.0]]),                        # peak on the border: no DARK
    (_one_peak(8, 6, 4, 3), None, [[[12.5, 16.5]]], [[1.0]]),                       # symmetric peak: DARK moves nothing
    (_one_peak(8, 6, 4, 3), (64, 48), [[[24.5, 32.5]]], [[1.0]]),                   # stride from the input size
])
def test_decode_edges(heatmaps, input_size, keypoints, scores):
    got_k, got_s = decode_heatmaps(heatmaps, input_size)
    np.testing.assert_allclose(got_k, np.asarray(keypoints, np.float32).reshape(got_k.shape), atol=1e-5)
    np.testing.assert_allclose(got_s, np.asarray(scores, np.float32).reshape(got_s.shape))


def test_decode_rejects_bad_shape():
    with pytest.raises(ValueError, match=r"expected \(N, K, h, w\) heatmaps, got shape \(17, 64, 48\)"):
        decode_heatmaps(np.zeros((17, 64, 48), np.float32))


def test_flip_back():
    rng = np.random.default_rng(0)
    hm = rng.random((2, 17, 6, 5)).astype(np.float32)
    back = flip_heatmaps_back(hm, shift=False)
    for a, b in COCO_FLIP_PAIRS:
        np.testing.assert_array_equal(back[:, a], hm[:, b, :, ::-1])
        np.testing.assert_array_equal(back[:, b], hm[:, a, :, ::-1])
    np.testing.assert_array_equal(back[:, 0], hm[:, 0, :, ::-1])
    np.testing.assert_array_equal(flip_heatmaps_back(back, shift=False), hm)
    shifted = flip_heatmaps_back(hm)
    np.testing.assert_array_equal(shifted[..., 1:], back[..., :-1])
    np.testing.assert_array_equal(shifted[..., 0], back[..., 0])


@pytest.fixture(scope="module")
def gt_box_results(exported):
    """COCO results of TinyPose-256x192 (the exported ONNX through ONNX Runtime) on the mini set's
    ground-truth boxes, without and with the flip test."""
    from posekit.evaluate import gt_boxes
    from posekit.io import poses_to_coco
    from posekit.ops.topdown import clean_boxes, heatmap_poses

    path = exported("tinypose-256x192")
    run = lambda images: run_onnx(path, images)[0]  # noqa: E731
    results = {False: [], True: []}
    for image_id, image in coco_images():
        boxes = clean_boxes(gt_boxes(coco(), image_id).boxes, image.shape)
        for flip in results:
            results[flip] += poses_to_coco(
                heatmap_poses(run, image, boxes, (256, 192), flip=flip), image_id)
    return results


@pytest.mark.parametrize("flip, minimum", [(False, 0.80), (True, 0.815)])
def test_gt_box_ap(gt_box_results, flip, minimum):
    from posekit.evaluate import coco_eval

    stats, table = coco_eval(coco(), gt_box_results[flip], "keypoints")
    assert len(gt_box_results[flip]) == 48  # 49 annotations, one crowd
    assert stats["AP"] >= minimum, f"flip={flip}: AP {stats['AP']:.4f} < {minimum} (reference 0.816 / 0.826)\n{table}"


def test_unsupported_layer_names_the_file(tmp_path):
    import shutil

    from ir_models import IR_XML
    from posekit.models.openvino_ir import IRNetwork, UnsupportedLayer

    xml = tmp_path / "model.xml"
    xml.write_text(IR_XML["tinypose-128x96"].read_text().replace('type="ReLU"', 'type="Mish"', 1))
    shutil.copy(IR_XML["tinypose-128x96"].with_suffix(".bin"), tmp_path / "model.bin")
    with pytest.raises(UnsupportedLayer, match=r"type Mish \(opset1\), which posekit's IR interpreter does not implement") as info:
        IRNetwork.from_files(xml)
    assert str(xml) in str(info.value) and "\n" not in str(info.value)
