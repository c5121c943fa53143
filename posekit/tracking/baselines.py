"""Baseline trackers with `PoseTracker`'s contract (`update(poses) -> tracked poses`, `reset()`), to
compare against on the same detections (`posekit bench --stage track`).

GreedyIouTracker: each frame, the best-overlapping pairs of (last box of a track, box) first,
  the IOU tracker of Bochinski et al. (AVSS 2017) with a few frames of patience.
ByteTrackBaseline: supervision's port of ByteTrack (Zhang et al., ECCV 2022), a dev/bench extra
  (`pip install 'posekit[bench]'`); it keeps its own Kalman filter and thresholds.
"""

from __future__ import annotations

import numpy as np

from posekit.ops.boxes import box_iou
from posekit.structures import Poses


def _tracked(poses: Poses, index: list[int], ids: list[int]) -> Poses:
    if not index:
        return Poses.empty(poses.num_keypoints, tracked=True)
    order = np.argsort(index)
    return poses[[index[o] for o in order]].replace(track_ids=np.array([ids[o] for o in order], np.int64))


class GreedyIouTracker:
    """Greedy IoU association of each box with the last box of a live track.

    min_score:  boxes scored below this are ignored
    min_iou:    the least IoU of a match
    max_age:    frames a track may go unmatched before it ends
    """

    def __init__(self, *, min_score: float = 0.3, min_iou: float = 0.3, max_age: int = 5) -> None:
        self.min_score, self.min_iou, self.max_age = min_score, min_iou, max_age
        self.reset()

    def reset(self) -> None:
        self._boxes = np.zeros((0, 4), np.float32)
        self._ids: list[int] = []
        self._age: list[int] = []
        self._next_id = 1

    def update(self, poses: Poses, **_: object) -> Poses:
        keep = np.flatnonzero(np.isfinite(poses.boxes).all(1) & (poses.box_scores >= self.min_score))
        iou = box_iou(self._boxes, poses.boxes[keep])
        pairs = np.argwhere(iou >= self.min_iou)
        pairs = pairs[np.argsort(-iou[pairs[:, 0], pairs[:, 1]], kind="stable")]
        used_t, used_d, index, ids = set(), set(), [], []
        for t, d in pairs.tolist():
            if t in used_t or d in used_d:
                continue
            used_t.add(t)
            used_d.add(d)
            index.append(int(keep[d]))
            ids.append(self._ids[t])
        boxes, track_ids, ages = [], [], []
        for t in range(len(self._ids)):
            if t in used_t:
                d = next(i for i, tid in zip(index, ids) if tid == self._ids[t])
                boxes.append(poses.boxes[d])
                track_ids.append(self._ids[t])
                ages.append(0)
            elif self._age[t] + 1 <= self.max_age:
                boxes.append(self._boxes[t])
                track_ids.append(self._ids[t])
                ages.append(self._age[t] + 1)
        for d in range(len(keep)):
            if d not in used_d:
                boxes.append(poses.boxes[keep[d]])
                track_ids.append(self._next_id)
                ages.append(0)
                index.append(int(keep[d]))
                ids.append(self._next_id)
                self._next_id += 1
        self._boxes = np.array(boxes, np.float32).reshape(-1, 4)
        self._ids, self._age = track_ids, ages
        return _tracked(poses, index, ids)


class ByteTrackBaseline:
    """supervision's `ByteTrack` on the detector's boxes and scores (keypoints are not used).

    Arguments go to `supervision.ByteTrack` (track_activation_threshold, lost_track_buffer,
    minimum_matching_threshold, minimum_consecutive_frames); frame_rate scales the buffer.
    """

    def __init__(self, *, frame_rate: float = 30.0, **options: float) -> None:
        try:
            import supervision
        except ImportError as exc:
            raise ImportError(f"the ByteTrack baseline needs supervision ({exc}): pip install 'posekit[bench]'") \
                from exc
        self._sv = supervision
        self._options = dict(frame_rate=frame_rate, **options)
        self.version = supervision.__version__
        self.reset()

    def reset(self) -> None:
        import warnings

        with warnings.catch_warnings():  # deprecated in supervision 0.28 for the `trackers` package
            warnings.simplefilter("ignore")
            self._tracker = self._sv.ByteTrack(**self._options)

    def update(self, poses: Poses, **_: object) -> Poses:
        keep = np.flatnonzero(np.isfinite(poses.boxes).all(1))
        detections = self._sv.Detections(xyxy=poses.boxes[keep].astype(np.float32),
                                         confidence=poses.box_scores[keep].astype(np.float32),
                                         class_id=np.zeros(len(keep), int), data={"index": keep})
        out = self._tracker.update_with_detections(detections)
        if len(out) == 0:
            return Poses.empty(poses.num_keypoints, tracked=True)
        return _tracked(poses, [int(i) for i in out.data["index"]], [int(i) for i in out.tracker_id])
