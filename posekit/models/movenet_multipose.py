"""MoveNet MultiPose Lightning (bottom-up, up to 6 people) as PyTorch code, from Google's TF.js weights.

The network is single-pose MoveNet's (`posekit.models.movenet`: MobileNetV2 backbone, FPN to
stride 4, Lightning widths) with two more heads, a CenterNet-style person box: its size
(``box_scale``) and its centre's sub-cell offset (``box_offset``). Unlike the single-pose graphs,
the input height and width are free: any multiples of 32 (Google suggests 256 on the long side).

Input: (B, 3, H, W) float32 RGB 0..255; the graph's normalisation happens inside the module.
Output: the six raw heads, NCHW, at H/4 x W/4 (see OUTPUT_LAYOUT); decode them with
`posekit.ops.multipose.decode_multipose`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from posekit import registry
from posekit.models.movenet import (
    ArchitectureMismatch,
    Head,
    MoveNet,
    config_from_state_dict,
    load_checked,
    tfjs_state_dict,
)
from posekit.tfjs import model_files

log = logging.getLogger(__name__)

OUTPUT_NAMES = ("centre", "heatmaps", "regression", "offsets", "box_scale", "box_offset")
OUTPUT_LAYOUT = (
    "centre (B,1,H/4,W/4) sigmoid person-centre heatmap; "
    "heatmaps (B,17,H/4,W/4) sigmoid keypoint heatmaps, COCO-17 order; "
    "regression (B,34,H/4,W/4) channel 2k=dy, 2k+1=dx of keypoint k from the centre cell, in cells; "
    "offsets (B,34,H/4,W/4) channel 2k=dy, 2k+1=dx sub-cell refinement of keypoint k, in cells; "
    "box_scale (B,2,H/4,W/4) person box height, width in cells (raw: negatives clamp to 0); "
    "box_offset (B,2,H/4,W/4) dy, dx of the box centre from the centre cell, in cells"
)
STRIDE = 4

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
