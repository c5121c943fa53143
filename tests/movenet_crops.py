"""Person crops cut from the shared COCO images, and Google's own answer for them (tf2onnx reference)."""

from __future__ import annotations

import functools
import json

import cv2
import numpy as np

from paths import COCO_ANN, COCO_IMAGES, MODELS

SIZES = {"thunder": 256, "lightning": 192}
# Hand-picked edge rows: full body, tall, narrow, boxes on the image edge, a 10x12 px person,
# the crowd box (638x247), a wide box, and a seated group member.
EDGE_IDS = (442619, 447752, 233745, 206218, 543117, 1690541, 900100236426, 533949)


@functools.lru_cache(maxsize=None)
def _annotations() -> dict:
    doc = json.loads(COCO_ANN.read_text())
    images = {i["id"]: i for i in doc["images"]}
    return {a["id"]: (a, images[a["image_id"]]) for a in doc["annotations"]}


def all_ids() -> tuple[int, ...]:
    return tuple(_annotations())


@functools.lru_cache(maxsize=None)
def _image(file_name: str) -> np.ndarray:
    return cv2.imread(str(COCO_IMAGES / file_name))[:, :, ::-1]  # RGB


def person_crop(ann_id: int, size: int, mirror: bool = False) -> np.ndarray:
    """(size, size, 3) uint8 RGB: a square crop 1.25x the annotated box, black outside the image."""
    ann, image = _annotations()[ann_id]
    x, y, w, h = ann["bbox"]
    side = max(w, h) * 1.25
    s = size / side
    m = np.array([[s, 0, size / 2 - (x + w / 2) * s], [0, s, size / 2 - (y + h / 2) * s]], np.float32)
    crop = cv2.warpAffine(_image(image["file_name"]), m, (size, size), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
    return np.ascontiguousarray(crop[:, ::-1]) if mirror else crop


def crops(variant: str, keys) -> np.ndarray:
    """(N, S, S, 3) uint8 for keys (ann_id, mirror)."""
    return np.stack([person_crop(a, SIZES[variant], m) for a, m in keys])


@functools.lru_cache(maxsize=None)
def _reference_session(variant: str):
    import onnxruntime as ort

    return ort.InferenceSession(str(MODELS / "reference" / f"movenet-{variant}.tf2onnx.onnx"),
                                providers=["CPUExecutionProvider"])


@functools.lru_cache(maxsize=None)
def reference(variant: str, keys: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Google's keypoints (N, 17, 2) x, y in input pixels, and scores (N, 17), one crop at a time."""
    session = _reference_session(variant)
    size = SIZES[variant]
    out = [session.run(None, {"input:0": c[None].astype(np.int32)})[0][0, 0] for c in crops(variant, keys)]
    out = np.stack(out)  # (N, 17, 3) y, x, score normalised
    return out[..., [1, 0]] * size, out[..., 2]


def nchw(images: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32)
