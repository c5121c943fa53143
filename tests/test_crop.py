"""letterbox, affine_crop and the mapping back to image pixels, on real and synthetic images."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from posekit.ops.crop import affine_crop, crop_regions, crop_to_image, letterbox, fit_input_sizes

from paths import COCO_IMAGES


@pytest.mark.parametrize("shape, size, centre, expected_scale, expected_offset", [
    ((480, 640, 3), (320, 320), False, 0.5, (0, 0)),        # landscape: pad bottom
    ((640, 480, 3), (320, 320), False, 0.5, (0, 0)),        # portrait: pad right
    ((480, 640, 3), (320, 320), True, 0.5, (0, 40)),        # centred padding
    ((100, 100, 3), (416, 416), False, 4.16, (0, 0)),       # upscaling
    ((1, 1, 3), (320, 320), False, 320.0, (0, 0)),          # a 1x1 image
])
def test_letterbox_scale_offset_and_padding(shape, size, centre, expected_scale, expected_offset):
    image = np.full(shape, 7, np.uint8)
    out, t = letterbox(image, size, pad_value=114, centre=centre)
    assert out.shape == (*size, 3)
    assert t.scale == pytest.approx(expected_scale, rel=1e-3)
    assert t.offset == expected_offset
    h, w = round(shape[0] * t.scale), round(shape[1] * t.scale)
    oy, ox = int(expected_offset[1]), int(expected_offset[0])
    assert (out[oy : oy + h, ox : ox + w] == 7).all()
    assert (out == 114).sum() == out.size - h * w * 3


def test_letterbox_boxes_back_to_image():
    image = np.zeros((480, 640, 3), np.uint8)
    _, t = letterbox(image, (320, 320), centre=True)
    box_in_input = np.array([[10, 50, 110, 250]], np.float32)
    back = t.boxes_to_image(box_in_input)
    np.testing.assert_allclose(back, [[20, 20, 220, 420]], atol=1e-4)


def test_letterbox_rejects_empty_image():
    with pytest.raises(ValueError, match=r"expected an \(H, W, C\) image"):
        letterbox(np.zeros((0, 5, 3), np.uint8), (320, 320))


@pytest.mark.parametrize("box, size, scale, side", [
    ((100, 100, 200, 300), (256, 256), 1.25, 250.0),   # tall box -> square window on its height
    ((100, 100, 300, 150), (256, 256), 1.0, 200.0),    # wide box
    ((0, 0, 0.5, 0.5), (256, 256), 1.25, 1.25),        # a sub-pixel box is grown to one pixel
    ((100, 100, 200, 300), (256, 192), 1.0, 200.0),    # 4:3 input: height stays 200, width grows to 150
    ((100, 100, 300, 150), (256, 192), 1.0, 266.6667), # wide box, 4:3 input: width 200 sets the height
])
def test_crop_regions_keep_the_input_aspect(box, size, scale, side):
    t = crop_regions(np.array([box], np.float32), size, scale)
    height_px = t.scales[0] * size[0]
    assert height_px == pytest.approx(side, rel=1e-5)  # window height in image pixels
    centre = t.origins[0] + t.scales[0] * np.array([size[1], size[0]]) / 2
    np.testing.assert_allclose(centre, [(box[0] + box[2]) / 2, (box[1] + box[3]) / 2], atol=1e-4)


@pytest.mark.parametrize("box", [
    (300, 100, 380, 260),     # inside the image
    (-60, -40, 100, 200),     # off the top-left edge
    (560, 380, 700, 520),     # off the bottom-right edge
])
def test_affine_crop_points_map_back_to_where_they_were(box):
    # A bright dot at a known image point must appear in the crop where the transform says,
    # and the crop's dot must map back to the image point.
    image = np.zeros((480, 640, 3), np.uint8)
    x0, y0, x1, y1 = box
    target = np.array([(max(x0, 0) + min(x1, 639)) / 2, (max(y0, 0) + min(y1, 479)) / 2])
    ix, iy = int(target[0]), int(target[1])
    image[iy, ix] = 255
    crops, t = affine_crop(image, np.array([box], np.float32), (256, 256), scale=1.25)
    assert crops.shape == (1, 256, 256, 3) and crops.dtype == np.uint8
    gray = crops[0, :, :, 0].astype(np.float32)
    ys, xs = np.nonzero(gray)
    peak = np.array([(xs * gray[ys, xs]).sum(), (ys * gray[ys, xs]).sum()]) / gray[ys, xs].sum()
    back = crop_to_image((peak + 0.5)[None, None], t)[0, 0]  # crop pixel centre -> continuous coords
    np.testing.assert_allclose(back, [ix + 0.5, iy + 0.5], atol=0.6)


def test_affine_crop_many_boxes_at_once_matches_one_by_one():
    image = cv2.imread(str(sorted(COCO_IMAGES.glob("*.jpg"))[0]))
    boxes = np.array([[10, 20, 200, 300], [250, 40, 400, 420], [-20, -20, 50, 60]], np.float32)
    crops, t = affine_crop(image, boxes, (256, 256))
    for i, box in enumerate(boxes):
        one, t1 = affine_crop(image, box[None], (256, 256))
        np.testing.assert_array_equal(one[0], crops[i])
        np.testing.assert_allclose(t1.origins[0], t.origins[i])
    assert crops[2, 0, 0].tolist() == [0, 0, 0]  # outside the image is the pad value


def test_affine_crop_no_boxes():
    crops, t = affine_crop(np.zeros((50, 50, 3), np.uint8), np.zeros((0, 4), np.float32), (256, 256))
    assert crops.shape == (0, 256, 256, 3) and len(t) == 0
    assert crop_to_image(np.zeros((0, 17, 2)), t).shape == (0, 17, 2)


def test_crop_to_image_rejects_mismatched_points():
    _, t = affine_crop(np.zeros((50, 50, 3), np.uint8), np.array([[0, 0, 10, 10]], np.float32), (64, 64))
    with pytest.raises(ValueError, match=r"expected \(1, K, 2\) points, got \(2, 17, 2\)"):
        crop_to_image(np.zeros((2, 17, 2)), t)


# --- crops shaped like the person ------------------------------------------------------------------

@pytest.mark.parametrize("box, expected", [
    ((0, 0, 200, 500), (256, 128)),   # standing, big: full height, half the width
    ((0, 0, 500, 200), (128, 256)),   # lying: the same, turned
    ((0, 0, 300, 300), (256, 256)),   # square: as before
    ((0, 0, 280, 400), (256, 192)),   # 0.7 aspect: 179 px of width, rounded up to 192
    ((0, 0, 40, 100), (192, 96)),     # small (a 125 px window): run at 192, never blown up to 256
    ((0, 0, 10, 100), (192, 96)),     # a sliver: at least half the long side
    ((0, 0, 150, 160), (224, 224)),   # a 200 px window: the next multiple of 32 up, 224
])
def test_fit_input_sizes(box, expected):
    assert tuple(fit_input_sizes(np.array([box], np.float32), (256, 256))[0]) == expected


def test_fit_windows_keep_the_square_crops_margin():
    """Every fitted input is a multiple of 32 inside the model's size, and the crop window it gives
    holds the box with at least the `scale` margin on both sides, as a square crop does."""
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 500, (500, 2))
    wh = np.exp(rng.uniform(np.log(4), np.log(900), (500, 2)))
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    sizes = fit_input_sizes(boxes, (256, 256), scale=1.25)
    assert (sizes % 32 == 0).all() and (sizes >= 96).all() and (sizes <= 256).all()
    for box, size in zip(boxes, sizes):
        t = crop_regions(box[None], tuple(size), 1.25)
        window = t.scales[0] * size[::-1]  # width, height in image pixels
        assert (window >= 1.25 * (box[2:] - box[:2]) - 1e-3).all()
        # the long side: the window's, rounded up to 32, between 192 and the model's 256
        expected = np.clip(np.ceil(1.25 * (box[2:] - box[:2]).max() / 32) * 32, 192, 256)
        assert size.max() == expected
