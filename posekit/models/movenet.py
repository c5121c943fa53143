"""MoveNet SinglePose (Lightning, Thunder) as PyTorch code, loaded from Google's TF.js weights.

The network, read from the TF.js graph: a MobileNetV2 backbone (width 1.0 for Lightning,
1.75 for Thunder: the widths come from the weights), an FPN-style top-down path (1x1 laterals
from strides 32/16/8/4, bilinear x2 upsampling with half-pixel centres, separable 3x3 convs),
and four heads (depthwise 3x3, 1x1 to 96 + ReLU, 1x1 out) at stride 4. Batch norms are folded
into the convolutions in the TF.js graph; padding is TensorFlow's 'SAME', which for a stride-2
3x3 convolution on an even input pads one pixel on the bottom/right only.

Input: (B, 3, S, S) float32 RGB 0..255 (S = 192 Lightning, 256 Thunder); the normalisation the
graph applies (x * 1/127.5 - 1, the constants as stored) happens inside the module.
Output: the raw heads, NCHW, at S/4 x S/4 (see `MoveNet.forward`); decode them with
`posekit.ops.movenet.decode_movenet` (numpy) or `decode_movenet_torch` (here).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from posekit import registry
from posekit.ops.movenet import DISTANCE_BIAS, OUTPUT_LAYOUT, OUTPUT_NAMES, TFJS_HEAD_SCOPES, cell_scale, tfjs_layer
from posekit.tfjs import load_graph_model, model_files

log = logging.getLogger(__name__)

# MobileNetV2 blocks with stride 2; the rest have stride 1 (a residual where widths match).
_STRIDE2_BLOCKS = {1, 3, 6, 13}
_NUM_BLOCKS = 17
# backbone block whose output feeds each FPN lateral, from coarse to fine (strides 16, 8, 4)
_LATERAL_SOURCES = (9, 5, 2)
HEADS = ("centre", "heatmaps", "regression", "offsets")


class ArchitectureMismatch(ValueError):
    """A weight file does not fit the network it was loaded into."""


class TFSameConv2d(nn.Conv2d):
    """nn.Conv2d with TensorFlow 'SAME' padding: when the total is odd the extra pixel goes after."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(x.shape[-2:], self.kernel_size, self.stride):
            total = max((math.ceil(int(size) / s) - 1) * s + k - int(size), 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        if (top, bottom, left, right) != (0, 0, 0, 0):
            x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _conv(cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1, bias: bool = True) -> TFSameConv2d:
    return TFSameConv2d(cin, cout, k, stride=stride, groups=groups, bias=bias)


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, expanded: int | None, cout: int, stride: int) -> None:
        super().__init__()
        mid = expanded or cin
        self.expand = _conv(cin, expanded) if expanded else None
        self.depthwise = _conv(mid, mid, 3, stride=stride, groups=mid)
        self.project = _conv(mid, cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self.expand(x)) if self.expand is not None else x
        y = self.project(F.relu6(self.depthwise(y)))
        return x + y if self.residual else y


class SeparableConv(nn.Module):
    """Depthwise 3x3 (no bias) then pointwise 1x1 with bias, then ReLU: Keras SeparableConv2D."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.depthwise = _conv(cin, cin, 3, groups=cin, bias=False)
        self.pointwise = _conv(cin, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.pointwise(self.depthwise(x)))


class Head(nn.Module):
    def __init__(self, cin: int, hidden: int, cout: int) -> None:
        super().__init__()
        self.features = SeparableConv(cin, hidden)
        self.out = _conv(hidden, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(x))


@dataclass(frozen=True)
class MoveNetConfig:
    """Channel widths; everything else about the architecture is fixed."""

    stem: int
    blocks: tuple[tuple[int | None, int], ...]  # (expanded width or None, output width) per block
    last: int
    fpn: tuple[int, int, int, int]  # lateral width at stride 32/16, then the widths after each smoothing
    head_hidden: int
    keypoints: int = 17


class MoveNet(nn.Module):
    output_names = OUTPUT_NAMES
    output_layout = OUTPUT_LAYOUT

    def __init__(self, config: MoveNetConfig) -> None:
        super().__init__()
        self.config = config
        # Google's normalisation, replaced by the stored constants when weights are loaded.
        self.register_buffer("mean", torch.zeros(1, 3, 1, 1))
        self.register_buffer("scale", torch.full((1, 3, 1, 1), 1 / 127.5))
        self.stem = _conv(3, config.stem, 3, stride=2)
        blocks, cin = [], config.stem
        for i, (expanded, cout) in enumerate(config.blocks):
            blocks.append(InvertedResidual(cin, expanded, cout, 2 if i in _STRIDE2_BLOCKS else 1))
            cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.last = _conv(cin, config.last)
        lat, s16, s8, s4 = config.fpn
        widths = [config.blocks[i][1] for i in _LATERAL_SOURCES]
        self.lateral = nn.ModuleList([
            _conv(config.last, lat), _conv(widths[0], lat), _conv(widths[1], s16), _conv(widths[2], s8),
        ])
        self.smooth = nn.ModuleList([SeparableConv(lat, s16), SeparableConv(s16, s8), SeparableConv(s8, s4)])
        k = config.keypoints
        self.heads = nn.ModuleDict({
            name: Head(s4, config.head_hidden, out) for name, out in zip(HEADS, (1, k, 2 * k, 2 * k))
        })

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """images (B, 3, S, S) float32 RGB 0..255 -> (centre, heatmaps, regression, offsets), see OUTPUT_LAYOUT."""
        x = self.features(images)
        return (
            torch.sigmoid(self.heads["centre"](x)),
            torch.sigmoid(self.heads["heatmaps"](x)),
            self.heads["regression"](x),
            self.heads["offsets"](x),
        )

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) float32 RGB 0..255 -> the FPN's stride-4 features that every head reads."""
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[2] % 32 or images.shape[3] % 32:
            raise ValueError(f"expected (B, 3, H, W) RGB images with H and W multiples of 32, got {tuple(images.shape)}")
        x = (images - self.mean) * self.scale - 1.0
        x = F.relu6(self.stem(x))
        taps = {}
        for i, block in enumerate(self.blocks):
            x = block(x)
            taps[i] = x
        x = self.lateral[0](F.relu6(self.last(x)))
        for lateral, smooth, source in zip(self.lateral[1:], self.smooth, _LATERAL_SOURCES):
            skip = lateral(taps[source])
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False) + skip
            x = smooth(x)
        return x


# --- loading Google's TF.js weights -------------------------------------------------------------

def tfjs_state_dict(
    model_json: str | os.PathLike, head_scopes: dict[str, str] = TFJS_HEAD_SCOPES
) -> tuple[dict[str, torch.Tensor], dict]:
    """Google's TF.js MoveNet -> (torch state dict, facts about the graph: input size, heatmap size).

    head_scopes: the heads to read (graph scope -> torch head name); single-pose MoveNet's by default.
    """
    graph = load_graph_model(model_json)
    state: dict[str, torch.Tensor] = {}
    for node in graph.nodes:
        if node.op not in ("_FusedConv2D", "FusedDepthwiseConv2dNative", "DepthwiseConv2dNative"):
            continue
        path = tfjs_layer(node.name, head_scopes)  # the one table, shared with the converter
        if path is None:
            raise ArchitectureMismatch(f"{graph.path}: convolution {node.name!r} is not part of MoveNet")
        kernel = graph.weights[node.inputs[1]]
        # TF kernels: conv (kh, kw, in, out) -> (out, in, kh, kw); depthwise (kh, kw, C, 1) -> (C, 1, kh, kw)
        order = (3, 2, 0, 1) if node.op == "_FusedConv2D" else (2, 3, 0, 1)
        state[f"{path}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(order)))
        if len(node.inputs) > 2:
            state[f"{path}.bias"] = torch.from_numpy(graph.weights[node.inputs[2]].copy())
    weights = {k.split("/", 1)[-1]: v for k, v in graph.weights.items()}
    if "Reshape" in weights and "truediv" in weights:
        state["mean"] = torch.from_numpy(weights["Reshape"].reshape(1, 3, 1, 1).copy())
        state["scale"] = torch.from_numpy(weights["truediv"].reshape(1, 3, 1, 1).copy())
    placeholders = graph.by_op("Placeholder")
    if len(placeholders) != 1:
        raise ArchitectureMismatch(f"{graph.path}: MoveNet has one input, the graph has {len(placeholders)}")
    shape = placeholders[0].attrs.get("shape")
    facts = {"path": graph.path, "input_shape": shape}
    return state, facts


def config_from_state_dict(state: dict[str, torch.Tensor], source: str | os.PathLike) -> MoveNetConfig:
    def width(key: str) -> int:
        try:
            return int(state[key].shape[0])
        except KeyError:
            raise ArchitectureMismatch(f"{source}: no tensor for {key} (a MoveNet layer); is this a MoveNet checkpoint?") from None

    blocks = tuple(
        (width(f"blocks.{i}.expand.weight") if i else None, width(f"blocks.{i}.project.weight"))
        for i in range(_NUM_BLOCKS)
    )
    fpn = (width("lateral.0.weight"), width("smooth.0.pointwise.weight"), width("smooth.1.pointwise.weight"),
           width("smooth.2.pointwise.weight"))
    return MoveNetConfig(stem=width("stem.weight"), blocks=blocks, last=width("last.weight"), fpn=fpn,
                         head_hidden=width("heads.centre.features.pointwise.weight"))


def load_checked(model: nn.Module, state: dict[str, torch.Tensor], source: str | os.PathLike) -> None:
    """load_state_dict, with an error naming the file and every missing, extra or misshaped tensor."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    misshaped = [f"{k}: expected {tuple(expected[k].shape)}, found {tuple(state[k].shape)}"
                 for k in expected if k in state and state[k].shape != expected[k].shape]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} tensor(s): {', '.join(missing[:5])}")
    if extra:
        problems.append(f"unexpected {len(extra)} tensor(s): {', '.join(extra[:5])}")
    if misshaped:
        problems.append(f"{len(misshaped)} misshaped: {'; '.join(misshaped[:5])}")
    if problems:
        raise ArchitectureMismatch(f"{source} does not fit {type(model).__name__}: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)


def build_movenet(spec: registry.ModelSpec, weights: str | os.PathLike | None = None, download: bool = True) -> MoveNet:
    """MoveNet for registry entry `spec`, in eval mode, with Google's weights.

    weights: a TF.js model.json (its .bin shards beside it) or a folder holding one; otherwise
    the registry's search order (POSEKIT_MODELS, cache, download) applies.
    """
    # An explicit TF.js model (model.json, or its folder) names its own shards; otherwise the registry.
    local = model_files(weights) if weights is not None else None
    paths = local or registry.find_weights(spec.name, path=weights, download=download)
    model_json = next((p for p in paths if Path(p).suffix == ".json"), paths[0])
    state, facts = tfjs_state_dict(model_json)
    shape = facts["input_shape"]
    want = (spec.input_size[0], spec.input_size[1])
    if shape is not None and len(shape) == 4 and tuple(shape[1:3]) != want:
        raise ArchitectureMismatch(
            f"{model_json} declares a {shape[1]}x{shape[2]} input, {spec.name} expects {want[0]}x{want[1]}: "
            "these are another model's files"
        )
    config = config_from_state_dict(state, model_json)
    model = MoveNet(config)
    load_checked(model, state, model_json)
    model.input_size = want
    model.source_files = [Path(p) for p in paths]
    model.eval()
    log.debug("built %s from %s (stem width %d)", spec.name, model_json, config.stem)
    return model


# --- decoding on the device ----------------------------------------------------------------------

def _centre_weight_torch(h: int, w: int, device, dtype) -> torch.Tensor:
    y = torch.arange(h, device=device, dtype=torch.float32)[:, None]
    x = torch.arange(w, device=device, dtype=torch.float32)[None, :]
    distance = torch.sqrt((y - h / 2) ** 2 + (x - w / 2) ** 2)
    return (1.0 / (distance + 1.8)).to(torch.float16).to(dtype)


def decode_movenet_torch(
    centre: torch.Tensor,
    heatmaps: torch.Tensor,
    regression: torch.Tensor,
    offsets: torch.Tensor,
    input_size: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The torch twin of `posekit.ops.movenet.decode_movenet`, batched, on the heads' device.

    Returns keypoints (B, K, 2) float32 x, y in input pixels, and scores (B, K) float32.
    """
    centre, heatmaps, regression, offsets = (t.float() for t in (centre, heatmaps, regression, offsets))
    b, k, h, w = heatmaps.shape
    in_h, in_w = input_size if input_size is not None else (4 * h, 4 * w)
    weight = _centre_weight_torch(h, w, heatmaps.device, torch.float32)
    centre_index = (centre[:, 0] * weight).reshape(b, h * w).argmax(dim=1)  # (B,)
    cy = torch.div(centre_index, w, rounding_mode="floor")
    cx = centre_index - cy * w

    reg = regression.reshape(b, 2 * k, h * w).gather(2, centre_index.view(b, 1, 1).expand(b, 2 * k, 1))
    reg = reg.view(b, k, 2)
    reg_y = cy.view(b, 1).float() + reg[..., 0]
    reg_x = cx.view(b, 1).float() + reg[..., 1]

    grid_y = torch.arange(h, device=heatmaps.device, dtype=torch.float32).view(1, 1, h, 1)
    grid_x = torch.arange(w, device=heatmaps.device, dtype=torch.float32).view(1, 1, 1, w)
    distance = torch.sqrt((grid_y - reg_y[..., None, None]) ** 2 + (grid_x - reg_x[..., None, None]) ** 2)
    guided = heatmaps / (distance + DISTANCE_BIAS)
    kp_index = guided.reshape(b, k, h * w).argmax(dim=2)  # (B, K)
    ky = torch.div(kp_index, w, rounding_mode="floor")
    kx = kp_index - ky * w

    off = offsets.reshape(b, k, 2, h * w).gather(3, kp_index.view(b, k, 1, 1).expand(b, k, 2, 1)).squeeze(3)
    scores = heatmaps.reshape(b, k, h * w).gather(2, kp_index.unsqueeze(2)).squeeze(2)
    y = (ky.float() + off[..., 0]) * float(cell_scale(h)) * in_h
    x = (kx.float() + off[..., 1]) * float(cell_scale(w)) * in_w
    return torch.stack([x, y], dim=-1), scores
