"""YOLOX numpy decode and postprocess on hand-built predictions whose answer is known."""

import numpy as np
import pytest

from posekit.ops.yolox import Detections, decode_yolox, postprocess_yolox, yolox_grid

SIZE = (64, 96)  # height, width: grids 8x12, 4x6, 2x3 -> 96 + 24 + 6 anchors
N = 96 + 24 + 6


def anchor(level: int, x: int, y: int, size=SIZE) -> int:
    """Index of grid cell (x, y) of stride level 0, 1, 2 in the flattened predictions."""
    h, w = size
    start = sum((h // s) * (w // s) for s in (8, 16, 32)[:level])
    return start + y * (w // (8 << level)) + x


def predictions(*rows, size=SIZE):
    """Raw (1, N, 85) with the given anchors set: (index, dx, dy, w_px, h_px, obj, {class: score})."""
    n = sum((size[0] // s) * (size[1] // s) for s in (8, 16, 32))
    raw = np.zeros((1, n, 85), np.float32)
    for index, dx, dy, w_cells, h_cells, obj, cls in rows:
        raw[0, index, :4] = dx, dy, np.log(w_cells), np.log(h_cells)
        raw[0, index, 4] = obj
        for c, s in cls.items():
            raw[0, index, 5 + c] = s
    return raw


def test_grid_order_is_stride_then_row_major():
    cells, strides = yolox_grid(SIZE)
    assert cells.shape == (N, 2) and strides.shape == (N, 1)
    assert cells[anchor(0, 5, 2)].tolist() == [5, 2] and strides[anchor(0, 5, 2), 0] == 8
    assert cells[anchor(1, 3, 1)].tolist() == [3, 1] and strides[anchor(1, 3, 1), 0] == 16
    assert cells[anchor(2, 2, 1)].tolist() == [2, 1] and strides[anchor(2, 2, 1), 0] == 32


@pytest.mark.parametrize(
    "level, x, y, dx, dy, w, h, expected",
    [
        # centre = (cell + d) * stride, size = exp(log size) * stride
        (0, 2, 3, 0.5, 0.5, 4, 4, [4, 12, 36, 44]),
        (1, 0, 0, 0.0, 0.0, 1, 2, [-8, -16, 8, 16]),  # box off the top-left edge stays as decoded
        (2, 2, 1, 0.25, -0.5, 0.5, 1, [64, 0, 80, 32]),
    ],
)
def test_decode_known_box(level, x, y, dx, dy, w, h, expected):
    i = anchor(level, x, y)
    boxes, scores = decode_yolox(predictions((i, dx, dy, w, h, 0.5, {0: 0.8, 3: 0.4})), SIZE)
    assert boxes.shape == (1, N, 4) and scores.shape == (1, N, 80)
    np.testing.assert_allclose(boxes[0, i], expected, atol=1e-4)
    np.testing.assert_allclose(scores[0, i, [0, 3, 1]], [0.4, 0.2, 0.0], atol=1e-7)


@pytest.mark.parametrize(
    "shape, size, message",
    [
        ((1, N + 1, 85), SIZE, "expected 126 predictions"),
        ((1, N, 5), SIZE, r"5 \+ classes\), got \(1, 126, 5\)"),
        ((2, 3, 4, 85), SIZE, r"got \(2, 3, 4, 85\)"),
        ((1, N, 85), (60, 96), "not a multiple of stride"),
    ],
)
def test_decode_rejects_bad_shapes(shape, size, message):
    with pytest.raises(ValueError, match=message):
        decode_yolox(np.zeros(shape, np.float32), size)


def person(index, obj=0.9, score=0.9, w=4, h=8, dx=0.0, dy=0.0):
    return (index, dx, dy, w, h, obj, {0: score})


@pytest.mark.parametrize(
    "rows, kwargs, expected_scores, expected_labels",
    [
        ([], {}, [], []),  # nobody there
        ([person(anchor(0, 4, 4))], {}, [0.81], [0]),  # one person
        # two overlapping persons (one cell apart, 8x16 cells) -> the better one
        ([person(anchor(0, 4, 4), score=0.5), person(anchor(0, 5, 4))], {}, [0.81], [0]),
        # same two with a looser IoU threshold: both kept, best first
        ([person(anchor(0, 4, 4), score=0.5), person(anchor(0, 5, 4))], {"iou_threshold": 0.9}, [0.81, 0.45], [0, 0]),
        # a dog at the same place: filtered by classes=(0,), kept (not suppressed) with classes=None
        ([person(anchor(0, 4, 4)), (anchor(0, 4, 4) + 1, 0, 0, 4, 8, 0.9, {16: 0.7})], {}, [0.81], [0]),
        ([person(anchor(0, 4, 4)), (anchor(0, 5, 4), 0, 0, 4, 8, 0.9, {16: 0.7})], {"classes": None},
         [0.81, 0.63], [0, 16]),
        # an anchor whose best class is not person is not a person, as in the official postprocess
        ([(anchor(0, 4, 4), 0, 0, 4, 8, 0.9, {0: 0.5, 16: 0.7})], {}, [], []),
        # threshold is inclusive: 0.5 * 0.5 == 0.25 kept, just below dropped
        ([person(anchor(0, 1, 1), obj=0.5, score=0.5), person(anchor(2, 2, 1), obj=0.5, score=0.49)], {}, [0.25], [0]),
        # crowd of separate persons limited by max_det, highest scores first
        ([person(anchor(0, x, 0), score=0.5 + 0.04 * x, w=1, h=1) for x in range(12)], {"max_det": 3},
         [0.9 * (0.5 + 0.04 * x) for x in (11, 10, 9)], [0, 0, 0]),
    ],
)
def test_postprocess(rows, kwargs, expected_scores, expected_labels):
    (det,) = postprocess_yolox(predictions(*rows), SIZE, **kwargs)
    assert isinstance(det, Detections)
    assert det.boxes.shape == (len(expected_scores), 4) and det.boxes.dtype == np.float32
    assert det.scores.dtype == np.float32 and det.labels.dtype == np.int64
    np.testing.assert_allclose(det.scores, expected_scores, atol=1e-6)
    assert det.labels.tolist() == expected_labels


def test_postprocess_is_batched_and_keeps_images_apart():
    one = predictions(person(anchor(0, 4, 4)))
    nobody = predictions()
    dets = postprocess_yolox(np.concatenate([one, nobody, one]), SIZE)
    assert [len(d.scores) for d in dets] == [1, 0, 1]
    np.testing.assert_allclose(dets[0].boxes, [[16, 0, 48, 64]], atol=1e-4)  # centre (32, 32), 32x64
    np.testing.assert_array_equal(dets[0].boxes, dets[2].boxes)
