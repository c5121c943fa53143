import numpy as np
import pytest

from posekit.ops.boxes import batched_nms, box_iou, nms
from posekit.ops.oks import oks, oks_nms


@pytest.mark.parametrize(
    "a, b, expected",
    [
        ([0, 0, 10, 10], [0, 0, 10, 10], 1.0),
        ([0, 0, 10, 10], [5, 0, 15, 10], 50 / 150),
        ([0, 0, 10, 10], [20, 20, 30, 30], 0.0),
        ([0, 0, 0, 0], [0, 0, 0, 0], 0.0),  # degenerate boxes never divide by zero
    ],
)
def test_box_iou(a, b, expected):
    assert box_iou(np.array([a]), np.array([b]))[0, 0] == pytest.approx(expected, abs=1e-6)


def test_nms_keeps_best_of_overlaps_and_separate_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 10.5]])
    scores = np.array([0.8, 0.9, 0.5, 0.1])
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    assert nms(boxes, scores, 0.5, max_det=1).tolist() == [1]
    assert nms(np.zeros((0, 4)), np.zeros(0)).tolist() == []
    # same boxes, different classes: nothing suppressed across classes
    assert sorted(batched_nms(boxes[:2], scores[:2], np.array([0, 1]), 0.5).tolist()) == [0, 1]


def test_batched_nms_keeps_classes_apart_with_negative_coordinates():
    # boxes off the top-left edge: an offset of class * max() would make classes overlap
    boxes = np.array([[-50, -50, -10, -10], [-49, -49, -9, -9], [-40, -40, 0, 0]], np.float32)
    scores = np.array([0.9, 0.8, 0.7])
    assert sorted(batched_nms(boxes, scores, np.array([0, 1, 2]), 0.5).tolist()) == [0, 1, 2]
    assert batched_nms(boxes, scores, np.array([0, 0, 1]), 0.5).tolist() == [0, 2]


def test_oks_matches_pycocotools(coco_annotations):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    anns = [a for a in coco_annotations["annotations"] if a["num_keypoints"] > 5][:4]
    gt = np.array([a["keypoints"] for a in anns], np.float32).reshape(-1, 17, 3)
    rng = np.random.default_rng(0)
    pred = gt[:, :, :2] + rng.normal(0, 4, gt[:, :, :2].shape)
    ours = oks(pred, gt[:, :, :2], np.array([a["area"] for a in anns]), gt[:, :, 2] > 0)

    # pycocotools' own computeOks on the same poses, for one image at a time
    coco = COCO()
    coco.dataset = {**coco_annotations}
    coco.createIndex()
    for i, ann in enumerate(anns):
        dets = coco.loadRes([{"image_id": ann["image_id"], "category_id": 1, "score": 1.0,
                              "keypoints": np.concatenate([pred[i], np.ones((17, 1))], 1).ravel().tolist()}])
        ev = COCOeval(coco, dets, "keypoints")
        ev.params.imgIds = [ann["image_id"]]
        ev._prepare()
        ref = ev.computeOks(ann["image_id"], 1)  # (dets, gts of that image)
        gt_ids = [g["id"] for g in ev._gts[ann["image_id"], 1]]
        assert ours[i, i] == pytest.approx(ref[0, gt_ids.index(ann["id"])], abs=1e-5)


def test_oks_nms_drops_duplicate_pose():
    rng = np.random.default_rng(1)
    a = rng.uniform(0, 100, (17, 2))
    kpts = np.stack([a, a + 0.5, a + 300])
    keep = oks_nms(kpts, np.array([0.9, 0.8, 0.7]), areas=np.full(3, 100.0 * 100.0), threshold=0.9)
    assert keep.tolist() == [0, 2]


def _greedy_oks_nms(kpts, scores, areas, threshold, visible=None):
    """Pose NMS one kept pose at a time (the definition oks_nms computes from one OKS matrix)."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(int(i))
        sim = oks(kpts[rest], kpts[i:i + 1], areas[i:i + 1], None if visible is None else visible[i:i + 1])[:, 0]
        order = rest[sim <= threshold]
    return keep


@pytest.mark.parametrize("people, jitter, threshold, with_visibility", [
    (0, 1.0, 0.8, False), (1, 1.0, 0.8, False), (2, 0.5, 0.9, False),
    (12, 3.0, 0.8, False), (12, 3.0, 0.8, True), (40, 10.0, 0.5, True), (40, 1.0, 0.9, False),
])
def test_oks_nms_equals_greedy_one_pose_at_a_time(people, jitter, threshold, with_visibility):
    rng = np.random.default_rng(people)
    base = rng.uniform(0, 500, (max(people // 2, 1), 1, 2)) + rng.uniform(-40, 40, (max(people // 2, 1), 17, 2))
    kpts = (base[rng.integers(0, len(base), people)] + rng.normal(0, jitter, (people, 17, 2))).astype(np.float32)
    scores = rng.choice([0.3, 0.5, 0.9], people).astype(np.float32)  # ties keep input order
    areas = rng.uniform(500, 20000, people)
    visible = rng.random((people, 17)) > 0.3 if with_visibility else None
    keep = oks_nms(kpts, scores, areas, threshold, keypoint_scores=None if visible is None else visible.astype(float),
                   keypoint_threshold=0.5)
    expected = _greedy_oks_nms(kpts, scores, areas, threshold, visible)
    assert keep.dtype == np.int64 and keep.tolist() == expected
    assert people < 12 or len(expected) < people  # the crowds have duplicates to drop
