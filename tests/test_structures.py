import numpy as np
import pytest

from posekit import Poses


def make(n: int, k: int = 17, tracked: bool = False) -> Poses:
    rng = np.random.default_rng(n)
    return Poses(
        boxes=rng.uniform(0, 100, (n, 4)),
        box_scores=np.linspace(0.1, 0.9, n),
        keypoints=rng.uniform(0, 100, (n, k, 2)),
        keypoint_scores=rng.uniform(0, 1, (n, k)),
        track_ids=np.arange(n) if tracked else None,
    )


def test_empty_has_zero_length_arrays_not_none():
    p = Poses.empty()
    assert len(p) == 0
    assert p.keypoints.shape == (0, 17, 2)
    assert p.scores.shape == (0,)
    assert p.track_ids is None
    assert Poses.empty(tracked=True).track_ids.shape == (0,)


def test_scores_default_to_box_scores_and_arrays_are_read_only():
    p = make(3)
    np.testing.assert_array_equal(p.scores, p.box_scores)
    with pytest.raises(ValueError):
        p.boxes[0, 0] = 1.0


@pytest.mark.parametrize(
    "index, expected",
    [(slice(0, 2), 2), (np.array([True, False, True, False]), 2), ([3, 0], 2), (1, 1), (slice(4, 9), 0)],
)
def test_indexing_keeps_arrays_parallel(index, expected):
    p = make(4, tracked=True)
    q = p[index]
    assert len(q) == expected
    assert q.keypoints.shape == (expected, 17, 2)
    assert q.track_ids.shape == (expected,)
    if expected:
        first = np.arange(4)[index].reshape(-1)[0]
        np.testing.assert_array_equal(q.boxes[0], p.boxes[first])
        assert q.track_ids[0] == p.track_ids[first]


def test_mask_indexing_by_score():
    p = make(5)
    kept = p[p.box_scores > 0.5]
    assert np.all(kept.box_scores > 0.5) and len(kept) == 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(boxes=np.zeros((3, 5))), r"expected a \(N, 4\) box array, got \(3, 5\)"),
        (dict(keypoints=np.zeros((2, 17, 2))), r"expected a \(3, K, 2\) keypoint array"),
        (dict(box_scores=np.zeros(4)), r"box_scores"),
        (dict(keypoint_scores=np.zeros((3, 16))), r"keypoint_scores"),
        (dict(track_ids=np.zeros(2)), r"track_ids"),
    ],
)
def test_shapes_are_checked_on_creation(kwargs, message):
    base = dict(
        boxes=np.zeros((3, 4)), box_scores=np.zeros(3), keypoints=np.zeros((3, 17, 2)),
        keypoint_scores=np.zeros((3, 17)),
    )
    base.update(kwargs)
    with pytest.raises(ValueError, match=message):
        Poses(**base)


def test_concatenate_and_replace():
    a, b = make(2), make(3)
    c = Poses.concatenate([a, b])
    assert len(c) == 5
    np.testing.assert_array_equal(c.boxes[2:], b.boxes)
    tracked = c.replace(track_ids=np.arange(5) + 10)
    assert tracked.track_ids.tolist() == [10, 11, 12, 13, 14]
    assert c.track_ids is None
    with pytest.raises(ValueError, match="tracked and untracked"):
        Poses.concatenate([a, make(1, tracked=True)])
    assert len(Poses.concatenate([])) == 0


def test_import_posekit_is_light():
    import subprocess
    import sys

    code = "import sys, posekit; bad = [m for m in ('torch', 'onnxruntime', 'tensorrt', 'cv2') if m in sys.modules]; print(bad)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
