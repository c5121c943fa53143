"""Multi-person pose tracking: `PoseTracker`, One-Euro smoothing, PoseTrack output and metrics.

Only numpy (and lap, for the matching) are imported here; scipy and motmetrics load inside
`posekit.tracking.metrics` (the `track` extra).
"""

from posekit.tracking.smoothing import OneEuroFilter
from posekit.tracking.tracker import PoseTracker

__all__ = ["OneEuroFilter", "PoseTracker"]
