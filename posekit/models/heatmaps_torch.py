"""Heatmap decoding on the device: the torch twin of `posekit.ops.heatmaps.decode_heatmaps`.

Same steps and conventions (argmax, PaddleDetection's DARK with a zero-padded 3x3 Gaussian blur
rescaled to the original maximum, keypoints at cell * stride + 0.5 in network-input pixels);
agrees with the numpy version within 1e-3 px. Works on any device, batched, no Python loops.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from posekit.ops.heatmaps import COCO_FLIP_PAIRS, gaussian_kernel


def decode_heatmaps_torch(heatmaps: torch.Tensor, input_size: tuple[int, int] | None = None, dark: bool = True,
                          kernel: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K, h, w) -> keypoints (N, K, 2) float32 input pixels (x, y), scores (N, K) float32."""
    if heatmaps.dim() != 4:
        raise ValueError(f"expected (N, K, h, w) heatmaps, got shape {tuple(heatmaps.shape)}")
    hm = heatmaps.float()
    n, c, h, w = hm.shape
    in_h, in_w = input_size if input_size is not None else (4 * h, 4 * w)
    flat = hm.reshape(n, c, h * w)
    scores, idx = flat.max(-1)  # torch's max returns the first maximum, like numpy's argmax
    cells = torch.stack([idx % w, torch.div(idx, w, rounding_mode="floor")], -1).float()
    cells = cells * (scores > 0).unsqueeze(-1).float()
    if dark and n > 0:
        cells = _dark(hm, cells, kernel)
    stride = torch.tensor([in_w / w, in_h / h], dtype=torch.float32, device=hm.device)
    return cells * stride + 0.5, scores


def _dark(hm: torch.Tensor, cells: torch.Tensor, kernel: int) -> torch.Tensor:
    n, c, h, w = hm.shape
    k1 = torch.as_tensor(gaussian_kernel(kernel), dtype=torch.float32, device=hm.device)
    k2 = (k1[:, None] * k1[None, :]).expand(c, 1, kernel, kernel)
    blurred = F.conv2d(hm, k2, padding=(kernel - 1) // 2, groups=c)
    ratio = hm.reshape(n, c, -1).amax(-1) / blurred.reshape(n, c, -1).amax(-1)
    logs = torch.log(torch.clamp(blurred * ratio[..., None, None], min=1e-10))
    # 5x5 neighbourhood of each cell, read from a copy padded by 2 (only used where it is inside)
    padded = F.pad(logs, (2, 2, 2, 2)).reshape(n, c, -1)
    px, py = cells[..., 0].long(), cells[..., 1].long()
    inside = (px > 1) & (px < w - 2) & (py > 1) & (py < h - 2)
    wp = w + 4

    def at(dy: int, dx: int) -> torch.Tensor:
        return torch.gather(padded, 2, ((py + 2 + dy) * wp + (px + 2 + dx)).unsqueeze(-1)).squeeze(-1)

    centre = at(0, 0)
    dx = 0.5 * (at(0, 1) - at(0, -1))
    dy = 0.5 * (at(1, 0) - at(-1, 0))
    dxx = 0.25 * (at(0, 2) - 2 * centre + at(0, -2))
    dxy = 0.25 * (at(1, 1) - at(-1, 1) - at(1, -1) + at(-1, -1))
    dyy = 0.25 * (at(2, 0) - 2 * centre + at(-2, 0))
    det = dxx * dyy - dxy * dxy
    ok = inside & (det != 0)
    safe = torch.where(ok, det, torch.ones_like(det))
    offset = torch.stack([-(dyy * dx - dxy * dy) / safe, -(dxx * dy - dxy * dx) / safe], -1)
    return cells + offset * ok.unsqueeze(-1).float()


def flip_heatmaps_back_torch(heatmaps: torch.Tensor, flip_pairs=COCO_FLIP_PAIRS, shift: bool = True) -> torch.Tensor:
    """Torch twin of `posekit.ops.heatmaps.flip_heatmaps_back`."""
    order = list(range(heatmaps.shape[1]))
    for a, b in flip_pairs:
        order[a], order[b] = b, a
    hm = heatmaps.flip(3)[:, order]
    if shift:
        hm = torch.cat([hm[..., :1], hm[..., :-1]], dim=3)
    return hm
