"""Multi-person pose tracking: `PoseTracker`, One-Euro smoothing, PoseTrack output and metrics.

Only numpy and scipy are imported here; motmetrics loads inside `posekit.tracking.metrics`.
"""

from posekit.tracking.smoothing import OneEuroFilter
from posekit.tracking.tracker import PoseTracker

__all__ = ["OneEuroFilter", "PoseTracker"]
