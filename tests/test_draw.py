"""draw_poses: skeletons and boxes land where the poses are; colours follow track ids."""

from __future__ import annotations

import numpy as np
import pytest

from posekit.draw import PALETTE, draw_poses, track_colour
from posekit.structures import Poses


def _person(x0: float, track: int | None = None) -> Poses:
    keypoints = np.stack([np.full(17, x0 + 20.0), np.linspace(20, 180, 17)], 1)[None]
    return Poses(boxes=[[x0, 10, x0 + 40, 190]], box_scores=[0.9], keypoints=keypoints,
                 keypoint_scores=np.full((1, 17), 0.9),
                 track_ids=None if track is None else np.array([track]))


@pytest.mark.parametrize("poses, changed", [
    (Poses.empty(), False),
    (_person(50), True),
    (_person(50).replace(keypoint_scores=np.zeros((1, 17))), True),  # box only: keypoints hidden
])
def test_draw_changes_pixels_only_where_people_are(poses, changed):
    image = np.zeros((200, 300, 3), np.uint8)
    out = draw_poses(image, poses)
    assert out is not image and (image == 0).all()  # copy=True leaves the input alone
    assert (out != 0).any() == changed
    if changed:
        ys, xs = np.nonzero(out.any(2))
        assert xs.min() >= 40 and xs.max() <= 100  # around the box x 50..90 (label text included)


def test_hidden_keypoints_are_not_drawn():
    shown = draw_poses(np.zeros((200, 300, 3), np.uint8), _person(50), boxes=False)
    hidden = draw_poses(np.zeros((200, 300, 3), np.uint8),
                        _person(50).replace(keypoint_scores=np.zeros((1, 17))), boxes=False)
    assert shown[100, 70].any() and not hidden.any()


def test_track_ids_pick_colours():
    a = draw_poses(np.zeros((200, 300, 3), np.uint8), _person(50, track=1), boxes=False)
    b = draw_poses(np.zeros((200, 300, 3), np.uint8), _person(50, track=2), boxes=False)
    assert tuple(a[100, 70]) == track_colour(1) != tuple(b[100, 70]) == track_colour(2)
    assert track_colour(1 + len(PALETTE)) == track_colour(1)


def test_draw_rejects_non_images():
    with pytest.raises(ValueError, match=r"expected an \(H, W, 3\) uint8 image, got \(10, 10\) uint8"):
        draw_poses(np.zeros((10, 10), np.uint8), Poses.empty())
