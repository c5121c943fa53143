"""MoveNet SinglePose decoding in numpy: the four raw heads -> 17 keypoints and their scores.

This is Google's decoding, read from the tail of the TF.js graph (the ops after ``Sigmoid``):

1. the person centre is the argmax of ``centre * 1 / (distance to the heatmap's middle + 1.8)``,
   which prefers the person nearest the middle of the crop;
2. at that centre the regression head gives each keypoint's coarse location (dy, dx in cells);
3. each keypoint is the argmax of ``heatmap / (distance to its regressed location + 1.8)``;
4. its sub-cell refinement is the offset head at that cell, and its score the heatmap value there.

The TF.js copy stores every constant as float16, and the graph uses those rounded values
(1.8 is 1.7998046875, the centre weights are float16): they are reproduced here as stored so
that ties and near-ties break exactly as in the reference graph.
"""

from __future__ import annotations

import functools
import re

import numpy as np

# MoveNet's raw heads, in decode_movenet's argument order: the names every export gives them
OUTPUT_NAMES = ("centre", "heatmaps", "regression", "offsets")
OUTPUT_LAYOUT = (
    "centre (B,1,S/4,S/4) sigmoid person-centre heatmap; "
    "heatmaps (B,17,S/4,S/4) sigmoid keypoint heatmaps, COCO-17 order; "
    "regression (B,34,S/4,S/4) channel 2k=dy, 2k+1=dx of keypoint k from the centre cell, in cells; "
    "offsets (B,34,S/4,S/4) channel 2k=dy, 2k+1=dx sub-cell refinement of keypoint k, in cells"
)

# float16-rounded 1.8, as stored in the TF.js graph (add_5/y)
DISTANCE_BIAS = float(np.float16(1.8))


@functools.lru_cache(maxsize=64)
def centre_weight(height: int, width: int) -> np.ndarray:
    """(H, W) float32: 1 / (distance of each cell from (H/2, W/2) + 1.8), rounded to float16 as stored.

    Equal to the graph's stored table except 8 of Thunder's 4096 cells, one float16 step (2**-16,
    relative 6e-4) lower: TF's float32 folding landed just above a rounding midpoint there. It
    can only matter when two centre candidates score within 0.06% of each other.
    """
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    distance = np.sqrt((y - height / 2) ** 2 + (x - width / 2) ** 2)
    table = (1.0 / (distance + np.float32(1.8))).astype(np.float16).astype(np.float32)
    table.flags.writeable = False  # cached: one table per heatmap size, shared by every call
    return table


def cell_scale(cells: int) -> np.float32:
    """1 / cells rounded to float16, the graph's factor from heatmap cells to the unit square."""
    return np.float32(np.float16(1.0 / cells))


def decode_movenet(
    centre: np.ndarray,
    heatmaps: np.ndarray,
    regression: np.ndarray,
    offsets: np.ndarray,
    input_size: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Decode MoveNet's raw heads, batched.

    centre:     (B, 1, H, W) float32, after sigmoid
    heatmaps:   (B, K, H, W) float32, after sigmoid
    regression: (B, 2K, H, W) float32, channel 2k = dy, 2k+1 = dx of keypoint k from the centre, in cells
    offsets:    (B, 2K, H, W) float32, channel 2k = dy, 2k+1 = dx sub-cell refinement, in cells
    input_size: (height, width) of the network input; default 4x the heatmap (MoveNet's stride)

    Returns keypoints (B, K, 2) float32, x then y in input pixels, and scores (B, K) float32.
    """
    centre, heatmaps, regression, offsets = (np.asarray(a, dtype=np.float32) for a in (centre, heatmaps, regression, offsets))
    if heatmaps.ndim != 4:
        raise ValueError(f"expected (B, K, H, W) heatmaps, got {heatmaps.shape}")
    b, k, h, w = heatmaps.shape
    for label, array, channels in (("centre", centre, 1), ("regression", regression, 2 * k), ("offsets", offsets, 2 * k)):
        if array.shape != (b, channels, h, w):
            raise ValueError(f"expected {label} of shape {(b, channels, h, w)}, got {array.shape}")
    in_h, in_w = input_size if input_size is not None else (4 * h, 4 * w)
    batch = np.arange(b)

    weighted = (centre[:, 0] * centre_weight(h, w)).reshape(b, h * w)
    centre_index = weighted.argmax(axis=1)
    cy, cx = centre_index // w, centre_index % w

    reg = regression[batch, :, cy, cx].reshape(b, k, 2)
    reg_y = cy[:, None].astype(np.float32) + reg[..., 0]
    reg_x = cx[:, None].astype(np.float32) + reg[..., 1]

    grid_y = np.arange(h, dtype=np.float32)[None, None, :, None]
    grid_x = np.arange(w, dtype=np.float32)[None, None, None, :]
    distance = np.sqrt((grid_y - reg_y[..., None, None]) ** 2 + (grid_x - reg_x[..., None, None]) ** 2)
    guided = heatmaps / (distance + np.float32(DISTANCE_BIAS))
    kp_index = guided.reshape(b, k, h * w).argmax(axis=2)
    ky, kx = kp_index // w, kp_index % w

    bi, ki = np.meshgrid(batch, np.arange(k), indexing="ij")
    off = offsets.reshape(b, k, 2, h, w)[bi, ki, :, ky, kx]  # (B, K, 2)
    scores = heatmaps[bi, ki, ky, kx]
    # The graph normalises by 1/H stored as float16 (1/48 is 0.020828): kept, then scaled to pixels.
    y = (ky.astype(np.float32) + off[..., 0]) * cell_scale(h) * np.float32(in_h)
    x = (kx.astype(np.float32) + off[..., 1]) * cell_scale(w) * np.float32(in_w)
    return np.stack([x, y], axis=-1).astype(np.float32), scores.astype(np.float32)


# --- Google's TF.js graph: which node is which of posekit's layers ---------------------------------
# Read by the torch loader (`posekit.models.movenet`: state-dict names) and by the converter
# (`posekit.convert.tfjs_onnx`: ONNX node names in the torch export's style), so both name the same
# layer the same way and name-based rules (`posekit.families.movenet.FLOAT_PREFIXES`) hold for either artefact.

TFJS_SCOPES = ("StatefulPartitionedCall/", "center_net_mobile_net_v2fpn_feature_extractor/model_1/")
TFJS_HEAD_SCOPES = {"center_0": "centre", "kpt_heatmap_0": "heatmaps", "kpt_regress_0": "regression",
                    "kpt_offset_0": "offsets"}
_SMOOTH_INDEX = {"separable_conv2d": 0, "separable_conv2d_1": 1, "separable_conv2d_2": 2, "re_lu": 0, "re_lu_1": 1,
                 "re_lu_2": 2}
_TFJS_LAYERS = (
    (r"model/Conv1_relu/Relu6", lambda m, h: "stem"),
    (r"model/expanded_conv_depthwise/depthwise", lambda m, h: "blocks.0.depthwise"),
    (r"model/expanded_conv_project_BN/FusedBatchNormV3", lambda m, h: "blocks.0.project"),
    (r"model/block_(\d+)_expand_relu/Relu6", lambda m, h: f"blocks.{m[1]}.expand"),
    (r"model/block_(\d+)_depthwise/depthwise", lambda m, h: f"blocks.{m[1]}.depthwise"),
    (r"model/block_(\d+)_project_BN/FusedBatchNormV3", lambda m, h: f"blocks.{m[1]}.project"),
    (r"model/out_relu/Relu6", lambda m, h: "last"),
    (r"conv2d(?:_(\d))?/BiasAdd", lambda m, h: f"lateral.{int(m[1] or 0)}"),
    (r"(separable_conv2d(?:_\d)?)/separable_conv2d/depthwise", lambda m, h: f"smooth.{_SMOOTH_INDEX[m[1]]}.depthwise"),
    (r"(re_lu(?:_\d)?)/Relu", lambda m, h: f"smooth.{_SMOOTH_INDEX[m[1]]}.pointwise"),
    (r"(\w+_0)/separable_conv2d_\d+/separable_conv2d/depthwise", lambda m, h: f"heads.{h[m[1]]}.features.depthwise"),
    (r"(\w+_0)/re_lu_\d+/Relu", lambda m, h: f"heads.{h[m[1]]}.features.pointwise"),
    (r"(\w+_0)/conv2d_\d+/BiasAdd", lambda m, h: f"heads.{h[m[1]]}.out"),
)


def tfjs_short_name(node_name: str) -> str:
    """A TF.js node name without the graph's wrapping scopes."""
    for scope in TFJS_SCOPES:
        node_name = node_name.replace(scope, "")
    return node_name


def tfjs_layer(node_name: str, head_scopes: dict[str, str] = TFJS_HEAD_SCOPES) -> str | None:
    """posekit's module path (``blocks.3.expand``, ``heads.centre.out``) for the TF.js node that ends
    a convolution layer, or None for a node that is not one (or a head this network lacks).

    head_scopes: the graph's head scope (``center_0``) -> posekit's head name (``centre``).
    """
    short = tfjs_short_name(node_name)
    for pattern, path in _TFJS_LAYERS:
        match = re.fullmatch(pattern, short)
        if match:
            try:
                return path(match, head_scopes)
            except KeyError:
                return None
    return None
