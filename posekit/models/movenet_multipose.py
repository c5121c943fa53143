"""MoveNet MultiPose Lightning (bottom-up, up to 6 people) as PyTorch code, from Google's TF.js weights.

The network is single-pose MoveNet's (`posekit.models.movenet`: MobileNetV2 backbone, FPN to
stride 4, Lightning widths) with two more heads, a CenterNet-style person box: its size
(``box_scale``) and its centre's sub-cell offset (``box_offset``). Unlike the single-pose graphs,
the input height and width are free: any multiples of 32 (Google suggests 256 on the long side).

Input: (B, 3, H, W) float32 RGB 0..255; the graph's normalisation happens inside the module.
Output: the six raw heads, NCHW, at H/4 x W/4 (see OUTPUT_LAYOUT); decode them with
`posekit.ops.multipose.decode_multipose` (numpy) or `decode_multipose_torch` (here).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
import torch.nn.functional as F

from posekit import registry
from posekit.models.movenet import (
    ArchitectureMismatch,
    Head,
    MoveNet,
    config_from_state_dict,
    load_checked,
    tfjs_state_dict,
)
from posekit.ops.multipose import (  # the head names and layout are torch-free, shared with the converter
    MAX_PEOPLE, OUTPUT_LAYOUT, OUTPUT_NAMES, PEAK_POOL, PEAK_TOLERANCE, SPREAD, STRIDE, VISIBLE)
from posekit.tfjs import model_files

log = logging.getLogger(__name__)

# graph head scope -> torch head name
HEAD_SCOPES = {
    "center_0": "centre",
    "kpt_heatmap_0": "heatmaps",
    "kpt_regress_0": "regression",
    "kpt_offset_0": "offsets",
    "box_scale_0": "box_scale",
    "box_offset_0": "box_offset",
}


class MoveNetMultiPose(MoveNet):
    """Single-pose MoveNet's network plus the two box heads; six raw heads out."""

    output_names = OUTPUT_NAMES
    output_layout = OUTPUT_LAYOUT

    def __init__(self, config) -> None:
        super().__init__(config)
        width = config.fpn[-1]
        self.heads.update({name: Head(width, config.head_hidden, 2) for name in ("box_scale", "box_offset")})

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """images (B, 3, H, W) float32 RGB 0..255, H and W multiples of 32 -> the six heads of OUTPUT_LAYOUT."""
        x = self.features(images)
        heads = self.heads
        return (
            torch.sigmoid(heads["centre"](x)),
            torch.sigmoid(heads["heatmaps"](x)),
            heads["regression"](x),
            heads["offsets"](x),
            heads["box_scale"](x),
            heads["box_offset"](x),
        )


def build_movenet_multipose(
    spec: registry.ModelSpec, weights: str | os.PathLike | None = None, download: bool = True
) -> MoveNetMultiPose:
    """MoveNet MultiPose for registry entry `spec`, in eval mode, with Google's weights.

    weights: a TF.js model.json (its .bin shards beside it) or a folder holding one; otherwise
    the registry's search order (POSEKIT_MODELS, cache, download) applies. `spec.input_size` is
    the default input only: the module takes any height and width that are multiples of 32.

    Raises ArchitectureMismatch naming the file when it holds another network (a single-pose
    MoveNet has no box heads; its graph also fixes the input size).
    """
    local = model_files(weights) if weights is not None else None
    paths = local or registry.find_weights(spec.name, path=weights, download=download)
    model_json = next((p for p in paths if Path(p).suffix == ".json"), paths[0])
    state, facts = tfjs_state_dict(model_json, HEAD_SCOPES)
    shape = facts["input_shape"]
    if shape is not None and len(shape) == 4 and tuple(shape[1:3]) != (-1, -1):
        raise ArchitectureMismatch(
            f"{model_json} declares a fixed {shape[1]}x{shape[2]} input, {spec.name} expects any height and "
            "width (-1x-1): these are another model's files (a single-pose MoveNet?)"
        )
    config = config_from_state_dict(state, model_json)
    model = MoveNetMultiPose(config)
    load_checked(model, state, model_json)
    model.input_size = tuple(spec.input_size)
    model.source_files = [Path(p) for p in paths]
    model.eval()
    log.debug("built %s from %s (stem width %d)", spec.name, model_json, config.stem)
    return model


# --- decoding on the device ----------------------------------------------------------------------

def decode_multipose_torch(
    centre: torch.Tensor,
    heatmaps: torch.Tensor,
    regression: torch.Tensor,
    offsets: torch.Tensor,
    box_scale: torch.Tensor,
    box_offset: torch.Tensor,
    max_people: int = MAX_PEOPLE,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The torch twin of `posekit.ops.multipose.decode_multipose`, batched, on the heads' device.

    Returns keypoints (B, P, K, 2) x, y input pixels; keypoint scores (B, P, K); boxes (B, P, 4)
    x0 y0 x1 y1 input pixels; person scores (B, P): float32, the fields of `MultiPoses` in order.
    """
    centre, heatmaps, regression, offsets, box_scale, box_offset = (
        t.float() for t in (centre, heatmaps, regression, offsets, box_scale, box_offset))
    b, k, h, w = heatmaps.shape
    p = max_people
    device = heatmaps.device
    in_h, in_w = STRIDE * h, STRIDE * w

    c = centre[:, 0]
    pool = F.max_pool2d(c[:, None], PEAK_POOL, stride=1, padding=PEAK_POOL // 2)[:, 0]
    peaks = (c * ((c - pool).abs() < float(PEAK_TOLERANCE))).reshape(b, h * w)
    # a stable sort keeps the lower index first on ties, as the graph's TopK does
    centre_scores, top = torch.sort(peaks, dim=1, descending=True, stable=True)
    centre_scores, top = centre_scores[:, :p], top[:, :p]
    cy = torch.div(top, w, rounding_mode="floor")
    cx = top - cy * w
    cyf, cxf = cy.float(), cx.float()

    def at_centres(head: torch.Tensor) -> torch.Tensor:  # (B, C, h, w) -> (B, P, C)
        flat = head.reshape(b, head.shape[1], h * w)
        return flat.gather(2, top[:, None, :].expand(b, head.shape[1], p)).transpose(1, 2)

    size = at_centres(box_scale).clamp(min=0)
    shift = at_centres(box_offset)
    box_cy, box_cx = cyf + shift[..., 0], cxf + shift[..., 1]
    half_h, half_w = size[..., 0] * 0.5, size[..., 1] * 0.5
    y0, y1 = (box_cy - half_h).clamp(0, h), (box_cy + half_h).clamp(0, h)
    x0, x1 = (box_cx - half_w).clamp(0, w), (box_cx + half_w).clamp(0, w)

    reg = at_centres(regression).reshape(b, p, k, 2)
    reg_y = cyf[..., None] + reg[..., 0]  # (B, P, K)
    reg_x = cxf[..., None] + reg[..., 1]
    grid_y = torch.arange(h, device=device, dtype=torch.float32).view(1, h, 1, 1, 1)
    grid_x = torch.arange(w, device=device, dtype=torch.float32).view(1, 1, w, 1, 1)
    d2 = (grid_y - reg_y[:, None, None]) ** 2 + (grid_x - reg_x[:, None, None]) ** 2  # (B, h, w, P, K)
    weight = torch.exp(-d2 / (float(min(h, w)) * float(SPREAD)))
    gy, gx = grid_y[..., 0], grid_x[..., 0]  # (1, h, 1, 1), (1, 1, w, 1)
    in_box = ((gy >= y0[:, None, None]) & (gy < y1[:, None, None])
              & (gx >= x0[:, None, None]) & (gx < x1[:, None, None]))  # (B, h, w, P)
    weighted = heatmaps.permute(0, 2, 3, 1)[:, :, :, None, :] * weight * in_box[..., None]
    cell = weighted.reshape(b, h * w, p, k).argmax(dim=1)  # (B, P, K); first maximum on ties
    ky = torch.div(cell, w, rounding_mode="floor")
    kx = cell - ky * w
    flat_offsets = offsets.reshape(b, k, 2, h * w)
    index = cell.permute(0, 2, 1)[:, :, None, :].expand(b, k, 2, p)  # (B, K, 2, P)
    off = flat_offsets.gather(3, index).permute(0, 3, 1, 2)  # (B, P, K, 2)
    kp_y = (ky.float() + off[..., 0]) * (STRIDE / in_h) * in_h
    kp_x = (kx.float() + off[..., 1]) * (STRIDE / in_w) * in_w

    best = weighted.amax(dim=3).reshape(b, h * w, k).transpose(1, 2)  # (B, K, h*w)
    kp_scores = best.gather(2, cell.transpose(1, 2)).transpose(1, 2)  # (B, P, K)

    visible = kp_scores > float(VISIBLE)
    count = visible.sum(dim=2).float().clamp(min=1)
    scores = (centre_scores[..., None] * torch.where(visible, kp_scores, torch.zeros_like(kp_scores))).sum(dim=2) / count

    scale = torch.tensor([in_w, in_h, in_w, in_h], device=device, dtype=torch.float32)
    boxes = ((torch.stack([x0, y0, x1, y1], dim=-1) * STRIDE) / scale).clamp(0, 1) * scale
    return torch.stack([kp_x, kp_y], dim=-1), kp_scores, boxes, scores
