"""posekit: fast multi-person 2D human pose estimation and tracking.

``import posekit`` stays light (numpy only); runtimes such as ONNX Runtime, torch and TensorRT
are imported when a model is built.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from posekit.skeleton import COCO_KEYPOINTS, COCO_SKELETON
from posekit.structures import Poses

__version__ = "0.1.0"

# Heavier public names, resolved on first use so that `import posekit` imports no runtime.
_LAZY = {
    "PoseEstimator": "posekit.pipeline",
    "PoseTracker": "posekit.tracking",
    "draw_poses": "posekit.draw",
}

__all__ = ["COCO_KEYPOINTS", "COCO_SKELETON", "Poses", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'posekit' has no attribute {name!r}")
