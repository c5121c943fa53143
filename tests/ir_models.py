"""The OpenVINO IR networks (PP-TinyPose, PicoDet) for the tests: torch modules built straight from
the IR files, their reference ONNX conversions, a dynamic-batch ONNX export cached per session,
and real inputs cut from the COCO mini images. Shared by test_tinypose.py and test_picodet.py.

Everything runs on one thread: on a loaded 2-core machine torch's and ONNX Runtime's thread
pools fight each other and run ten times slower.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import cv2
import numpy as np

from paths import COCO_ANN, COCO_IMAGES, MODELS

IR_XML = {
    "tinypose-256x192": MODELS / "tinypose-256x192" / "model.xml",
    "tinypose-128x96": MODELS / "tinypose-128x96" / "model.xml",
    "picodet-s-320-pedestrian": MODELS / "picodet-s-320-pedestrian" / "picodet_s_320_lcnet_pedestrian.xml",
    "picodet-s-192-pedestrian": MODELS / "picodet-s-192-pedestrian" / "picodet_s_192_lcnet_pedestrian.xml",
}


def reference_path(name: str) -> Path:
    return MODELS / "reference" / f"{name}.ir2onnx.onnx"


@functools.lru_cache(maxsize=None)
def torch_net(name: str):
    import torch

    from posekit.models.openvino_ir import IRNetwork

    torch.set_num_threads(1)
    return IRNetwork.from_files(IR_XML[name])


def run_torch(name: str, images: np.ndarray) -> tuple[np.ndarray, ...]:
    import torch

    torch.set_num_threads(1)
    with torch.no_grad():
        out = torch_net(name)(torch.from_numpy(np.ascontiguousarray(images, np.float32)))
    return tuple(o.numpy() for o in (out if isinstance(out, tuple) else (out,)))


@functools.lru_cache(maxsize=None)
def session(path: str):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def run_reference(name: str, images: np.ndarray) -> tuple[np.ndarray, ...]:
    """The reference ONNX (fixed batch 1) one image at a time, outputs stacked."""
    s = session(str(reference_path(name)))
    outs = [s.run(None, {"image": images[i : i + 1]}) for i in range(len(images))]
    return tuple(np.concatenate(parts) for parts in zip(*outs))


def run_onnx(path: Path, images: np.ndarray) -> tuple[np.ndarray, ...]:
    return tuple(session(str(path)).run(None, {"images": np.ascontiguousarray(images, np.float32)}))


def export_dynamic(name: str, folder: Path) -> Path:
    """The torch network exported once per session with a dynamic batch axis, as posekit.export
    does (TorchScript exporter, opset 17, input 'images', the module's output names)."""
    import torch

    out = folder / f"{name}.dynamic.onnx"
    if out.is_file():
        return out
    net = torch_net(name)
    example = torch.zeros((2, *net.input_shape[1:]), dtype=torch.float32)
    names = list(net.output_names)
    tmp = out.with_suffix(".part")
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (example,), str(tmp), dynamo=False, opset_version=17, input_names=["images"],
                          output_names=names, dynamic_axes={n: {0: "batch"} for n in ["images", *names]})
    tmp.replace(out)
    return out


def max_rel_error(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| relative to the largest magnitude of `want`."""
    assert got.shape == want.shape, (got.shape, want.shape)
    return float(np.abs(got - want).max() / np.abs(want).max())


@functools.lru_cache(maxsize=None)
def coco():
    from posekit.evaluate import load_annotations

    return load_annotations(COCO_ANN)


def coco_images() -> list[tuple[int, np.ndarray]]:
    """(image id, BGR image) of every image in the COCO mini set, in id order."""
    c = coco()
    return [(i, cv2.imread(str(COCO_IMAGES / c.imgs[i]["file_name"]))) for i in sorted(c.getImgIds())]


@functools.lru_cache(maxsize=None)
def person_crops(size: tuple[int, int]) -> np.ndarray:
    """Every annotated (non-crowd) person of the mini set as a TinyPose input: PaddleDetection's crop
    of the cleaned ground-truth box, RGB, ImageNet-normalised. (N, 3, H, W) float32."""
    from posekit.evaluate import gt_boxes
    from posekit.ops.topdown import clean_boxes, heatmap_model_inputs

    parts = []
    for image_id, image in coco_images():
        boxes = gt_boxes(coco(), image_id).boxes
        if len(boxes):
            parts.append(heatmap_model_inputs(image, clean_boxes(boxes, image.shape), size)[0])
    return np.concatenate(parts)


@functools.lru_cache(maxsize=None)
def resized_frames(size: int) -> np.ndarray:
    """Every mini-set image as a PicoDet input: plain cubic resize to size x size, RGB, ImageNet. (19, 3, S, S)."""
    from posekit.ops.normalise import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB, to_network_input
    from posekit.ops.crop import stretch as resize_image

    frames = [resize_image(image, (size, size))[0] for _, image in coco_images()]
    return to_network_input(np.stack(frames), IMAGENET_MEAN_RGB, IMAGENET_STD_RGB, bgr_to_rgb=True)
