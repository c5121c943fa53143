"""Real inputs for calibration, parity checks and benchmarks: person crops and letterboxed frames
cut from annotated images (the shared COCO val2017 subset), preprocessed as a network expects.

The layout and dtype come from the engine's input spec (NCHW float or NHWC int/float), the colour
order and normalisation from the registry entry, so nothing is typed twice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from posekit.engines import TensorSpec
from posekit.registry import ModelSpec

# Person crops shipped with posekit for calibrating INT8 pose models (scripts/make_calibration_crops.py
# cuts them from MMPose's demo video, which none of the COCO images AP is measured on comes from).
CALIBRATION_CROPS = Path(__file__).resolve().parent / "assets" / "calibration-crops.jpg"
CROP_SIZE = 256  # each tile of the mosaic is a CROP_SIZE x CROP_SIZE square crop


def _imread(path: Path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path}: not a readable image (expected a JPEG/PNG file)")
    return image  # BGR uint8


def square_crop(image: np.ndarray, box: Sequence[float], size: tuple[int, int], scale: float = 1.25,
                pad: int = 0) -> np.ndarray:
    """A square crop `scale` times the box's longer side, centred on it, resized to `size` (h, w).

    box: x0 y0 x1 y1 in image pixels. Parts outside the image are filled with `pad`.
    """
    import cv2

    x0, y0, x1, y1 = map(float, box)
    side = max(x1 - x0, y1 - y0, 1.0) * scale
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    h, w = size
    sx, sy = w / side, h / side
    matrix = np.array([[sx, 0, w / 2 - sx * cx], [0, sy, h / 2 - sy * cy]], np.float32)
    return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderValue=(pad, pad, pad))


def letterbox_image(image: np.ndarray, size: tuple[int, int], pad: int = 114) -> np.ndarray:
    """Resize keeping aspect ratio into (h, w), top-left aligned, padded with `pad`."""
    import cv2

    h, w = size
    ratio = min(h / image.shape[0], w / image.shape[1])
    nh, nw = int(round(image.shape[0] * ratio)), int(round(image.shape[1] * ratio))
    out = np.full((h, w, 3), pad, np.uint8)
    out[:nh, :nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return out


def to_network_input(images_bgr: np.ndarray, spec: ModelSpec, tensor: TensorSpec) -> np.ndarray:
    """(N, H, W, 3) BGR uint8 -> the network's input: colour order and normalisation from `spec`,
    layout (NHWC when the last axis is 3, else NCHW) and dtype from `tensor`."""
    x = images_bgr if spec.colour == "BGR" else images_bgr[..., ::-1]
    integer = tensor.dtype.startswith("int") or tensor.dtype.startswith("uint")
    if integer:
        x = x.astype(tensor.dtype)
    else:
        x = (x.astype(np.float32) - np.float32(spec.mean)) / np.float32(spec.std)
        x = x.astype(tensor.dtype)
    if not (len(tensor.shape) == 4 and tensor.shape[-1] == 3):
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x)


def load_person_boxes(annotations: str | os.PathLike, min_side: float = 16.0) -> list[tuple[Path, list[np.ndarray]]]:
    """(image path, [xyxy boxes]) for every non-crowd person box with a side >= min_side."""
    annotations = Path(annotations)
    data = json.loads(annotations.read_text())
    images_dir = annotations.parent / "images"
    by_image: dict[int, list[np.ndarray]] = {}
    for ann in data["annotations"]:
        x, y, w, h = ann["bbox"]
        if ann.get("iscrowd") or min(w, h) < min_side:
            continue
        by_image.setdefault(ann["image_id"], []).append(np.array([x, y, x + w, y + h], np.float32))
    files = {img["id"]: images_dir / img["file_name"] for img in data["images"]}
    return [(files[i], boxes) for i, boxes in sorted(by_image.items())]


def person_crops(annotations: str | os.PathLike, size: tuple[int, int], limit: int | None = None) -> np.ndarray:
    """(N, h, w, 3) BGR uint8 person crops from the annotated boxes, in a fixed order."""
    crops = []
    for path, boxes in load_person_boxes(annotations):
        image = _imread(path)
        crops += [square_crop(image, box, size) for box in boxes]
        if limit is not None and len(crops) >= limit:
            break
    if not crops:
        raise ValueError(f"{annotations}: no person box to crop")
    return np.stack(crops[:limit])


def packaged_crops(size: tuple[int, int], path: Path = CALIBRATION_CROPS) -> np.ndarray:
    """(N, h, w, 3) BGR uint8: the shipped calibration crops (square), their middle cut to the
    aspect of `size` and resized to it (all-black tiles, the mosaic's unused cells, are left out)."""
    import cv2

    mosaic = _imread(path)
    rows, columns = mosaic.shape[0] // CROP_SIZE, mosaic.shape[1] // CROP_SIZE
    tiles = [mosaic[r * CROP_SIZE : (r + 1) * CROP_SIZE, c * CROP_SIZE : (c + 1) * CROP_SIZE]
             for r in range(rows) for c in range(columns)]
    tiles = [t for t in tiles if t.max() > 16]  # JPEG leaves a little noise in the empty cells
    if not tiles:
        raise ValueError(f"{path}: no crop in the calibration mosaic")
    h, w = size
    if h != w:  # keep people's proportions: cut the tile's middle to the input's aspect first
        keep_h, keep_w = (CROP_SIZE, round(CROP_SIZE * w / h)) if h > w else (round(CROP_SIZE * h / w), CROP_SIZE)
        top, left = (CROP_SIZE - keep_h) // 2, (CROP_SIZE - keep_w) // 2
        tiles = [t[top : top + keep_h, left : left + keep_w] for t in tiles]
    if (h, w) != tiles[0].shape[:2]:
        tiles = [cv2.resize(t, (w, h), interpolation=cv2.INTER_AREA) for t in tiles]
    return np.stack(tiles)


def letterboxed_frames(images: Sequence[str | os.PathLike], size: tuple[int, int], pad: int = 114) -> np.ndarray:
    """(N, h, w, 3) BGR uint8 frames, letterboxed to `size`."""
    return np.stack([letterbox_image(_imread(Path(p)), size, pad) for p in images])


def calibration_inputs(spec: ModelSpec, tensor: TensorSpec, annotations: str | os.PathLike,
                       limit: int = 64) -> np.ndarray:
    """Real inputs for model `spec`: person crops for a pose model, letterboxed frames for a detector.

    Returns (N, ...) in the network's layout; `tensor` is the engine's (first) input spec.
    """
    size = spec.input_size
    spatial = tensor.shape[1:3] if (len(tensor.shape) == 4 and tensor.shape[-1] == 3) else tensor.shape[2:4]
    if all(isinstance(d, int) for d in spatial):
        size = tuple(spatial)
    if spec.task == "pose":
        raw = person_crops(annotations, size, limit)
    else:
        files = [p for p, _ in load_person_boxes(annotations)][:limit]
        raw = letterboxed_frames(files, size)
    return to_network_input(raw, spec, tensor)


def batches(x: np.ndarray, batch_size: int, drop_last: bool = False) -> Iterator[np.ndarray]:
    for i in range(0, len(x), batch_size):
        part = x[i : i + batch_size]
        if drop_last and len(part) < batch_size:
            return
        yield part
