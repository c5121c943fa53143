"""`PoseTracker`: ByteTrack-style multi-person pose tracking on box IoU and keypoint OKS."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from posekit.ops.assignment import linear_assignment
from posekit.ops.boxes import box_iou
from posekit.ops.oks import oks
from posekit.structures import Poses
from posekit.tracking.kalman import BoxKalman, cxcywh_to_xyxy, predict_all, update_all, xyxy_to_cxcywh
from posekit.tracking.smoothing import OneEuroFilter

logger = logging.getLogger(__name__)

TENTATIVE, TRACKED, LOST = "tentative", "tracked", "lost"

# COCO's stand-in for a person's segmented area when only the box is known.
AREA_PER_BOX_AREA = 0.53


def _buffered_iou(a: np.ndarray, b: np.ndarray, grow: np.ndarray) -> np.ndarray:
    """(N, M) IoU of boxes a (N, 4) and b (M, 4), both widened by grow[n] times their size (the
    buffered IoU of C-BIoU, Yang et al., WACV 2023): a lost track's box, uncertain in place, still
    meets the person it predicts, while a pose far off still scores 0."""
    def widen(boxes, g):
        pad = (boxes[..., 2:] - boxes[..., :2]) * g / 2
        return np.concatenate([boxes[..., :2] - pad, boxes[..., 2:] + pad], -1)

    g = grow[:, None, None]
    wa = widen(a[:, None, :], g)  # (N, 1, 4)
    wb = widen(b[None, :, :], g)  # (N, M, 4)
    lt = np.maximum(wa[..., :2], wb[..., :2])
    rb = np.minimum(wa[..., 2:], wb[..., 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(wa[..., 2:] - wa[..., :2], 0, None).prod(-1)
    area_b = np.clip(wb[..., 2:] - wb[..., :2], 0, None).prod(-1)
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0).astype(np.float32)


@dataclass(eq=False)
class _Track:
    kalman: BoxKalman
    keypoints: np.ndarray  # (K, 2) last observed, image pixels
    keypoint_scores: np.ndarray  # (K,)
    last_box: np.ndarray  # (4,) xyxy, last observed
    score: float  # running mean of the matched detections' scores
    track_id: int = 0  # 0 until confirmed: IDs are handed out at confirmation, so they stay dense
    state: str = TENTATIVE
    hits: int = 1
    lost_for: float = 0.0  # frames (at the nominal rate) since the last match
    still_since: int | None = None  # frame since which an unconvincing track has not moved
    still_anchor: np.ndarray | None = None  # its box centre and size then
    smoother: OneEuroFilter | None = None
    smoothed: np.ndarray | None = field(default=None, repr=False)


class PoseTracker:
    """Gives each person a track ID that stays the same from frame to frame.

    Association in four stages, after ByteTrack (Zhang et al., ECCV 2022):
      1. confident poses (score >= high_score) against every confirmed track seen in the last
         `motion_frames` frames, on a similarity mixing box IoU with keypoint OKS at the box the
         Kalman filter predicts; a lost track's box is widened as it is lost longer (the buffered
         IoU of C-BIoU, Yang et al., WACV 2023), since its predicted place grows uncertain;
      2. tracks still being seen against the low-scored poses (low_score..high_score, often
         people partly hidden) on box IoU alone: they extend a track but never start one;
      3. tentative tracks against the confident poses left;
      4. re-identification: tracks lost longer than the motion model bridges (up to
         `track_buffer`) against the confident poses left, gated by place (the centre within a
         radius that grows with the time lost) and box height, scored on keypoint geometry.
    A pose left over starts a tentative track only when scored >= `new_track_score` (the birth
    threshold, above the matching one; >= `high_score` in a stream's first frame) and is reported
    after `min_hits` matches. A track whose running mean score is below `still_score` and that
    has not moved (half its width) for `still_frames` frames ends: low-scored boxes on a pole or a
    sign the detector half believes never keep it alive for long.

    The constant-velocity Kalman filter stops the box's size from changing once a track is lost
    and slows its motion after `motion_frames`, so the box a lost track predicts keeps the size
    of the person (not shrinking to a few pixels through a long occlusion).

    Defaults were chosen on two MOT15 sequences (TUD-Campus, TUD-Stadtmitte) with posekit's
    default detector and pose model (RTMDet-nano + MoveNet-Thunder INT8, boxes >= 0.2), scored
    by box IoU 0.5 against the MOTChallenge ground truth (`posekit bench --stage track`), and
    checked on ../shared/media/demo.mp4 (5-6 people tracked a frame, as before). MOTA / IDF1 /
    HOTA, Campus then Stadtmitte, the same detections replayed into each tracker:

      these defaults                          0.677 / 0.743 / 0.524   0.772 / 0.833 / 0.607
      supervision ByteTrack 0.30.9 defaults   0.563 / 0.659 / 0.470   0.710 / 0.730 / 0.555
      greedy IoU                              0.409 / 0.542 / 0.437   0.661 / 0.635 / 0.509
      the previous defaults (birth 0.3, no    0.312 / 0.597 / 0.452   0.660 / 0.773 / 0.571
        re-identification, lost boxes shrink)

    What each choice does there (MOTA / IDF1, Campus | Stadtmitte; one change from the defaults):
      birth 0.4 instead of 0.5            0.604 / 0.717 | 0.782 / 0.835  (Campus FP 54 -> 80)
      birth 0.6                           0.663 / 0.733 | 0.740 / 0.813
      no re-identification (buffer 12)    0.655 / 0.726 | 0.760 / 0.822
      lost boxes not widened (growth 0)   0.643 / 0.677 | 0.772 / 0.833
      no still-track rule                 0.585 / 0.710 | 0.772 / 0.831  (Campus FP 54 -> 87)
      all four off, birth 0.3             0.348 / 0.570 | 0.670 / 0.813
    The detector scores poles, signs and cones there 0.25-0.45 and most people above 0.5; in the
    demo video it scores people 0.3-0.65, hence births from 0.3 in the first frame. Stage
    thresholds 0.3 / 0.2, `min_hits` 3, 45-90 frames of buffer and 0.02-0.03 growth move the
    scores by less than 0.01. The defaults are in frames at `frame_rate` (tuned at 25 fps).

    Arguments (all keyword):
      high_score:       poses scored at least this take part in the first stage
      low_score:        poses scored below this are ignored; between the two, second stage only
      score_field:      which score the thresholds apply to: "box_scores" (the detector's; the
                        default) or "scores" (the person score, box x keypoints, which sits lower)
      new_track_score:  the least score of an unmatched pose that starts a new track (birth)
      min_similarity:   the least similarity of a first-stage match (and of a tentative track's)
      low_min_iou:      the least box IoU of a second-stage match
      iou_weight:       similarity = iou_weight * IoU + (1 - iou_weight) * OKS
      keypoint_threshold: keypoints scored below this do not count in OKS
      min_hits:         consecutive matches before a track is confirmed and reported; during the
                        first `min_hits` frames of a stream new tracks are confirmed at once (as in
                        SORT) so the opening frames are not empty
      track_buffer:     how long an unmatched track is kept for re-identification, in frames at
                        `frame_rate` (i.e. track_buffer / frame_rate seconds)
      motion_frames:    how long a lost track is matched at its Kalman-predicted box (stage 1);
                        after that, only by re-identification (stage 4)
      lost_box_growth:  a lost track's box is widened by this fraction of its size per frame
                        lost (capped at 1.0) for the first stage's IoU
      still_score, still_frames: a track scored below `still_score` (running mean of its matches)
                        that stays within half its width for `still_frames` frames ends
      reid_similarity:  the least re-identification score (0..1) of a stage-4 match
      frame_rate:       the nominal frame rate; `update(dt=...)` or `update(timestamp=...)` in
                        seconds make the motion model follow irregular or changing frame rates
      on_resize:        what a change of `image_size` does: "rescale" the live tracks to the new
                        resolution, or "reset" them (IDs keep counting up either way)
      smoothing:        smooth the reported keypoints with a One-Euro filter per track (display
                        only; association always uses the raw keypoints)
      smoothing_min_cutoff, smoothing_beta: the One-Euro parameters (see `OneEuroFilter`)

    Poses with a non-finite box or score are dropped (with a warning) and non-finite keypoints
    are treated as unseen, so one bad detection never spoils the tracks of later frames.
    """

    def __init__(
        self,
        *,
        high_score: float = 0.3,
        low_score: float = 0.2,
        score_field: str = "box_scores",
        new_track_score: float = 0.5,
        min_similarity: float = 0.2,
        low_min_iou: float = 0.5,
        iou_weight: float = 0.5,
        keypoint_threshold: float = 0.3,
        min_hits: int = 3,
        track_buffer: int = 60,
        motion_frames: int = 12,
        lost_box_growth: float = 0.02,
        still_score: float = 0.45,
        still_frames: int = 10,
        reid_similarity: float = 0.4,
        frame_rate: float = 30.0,
        on_resize: str = "rescale",
        smoothing: bool = False,
        smoothing_min_cutoff: float = 1.0,
        smoothing_beta: float = 0.01,
    ) -> None:
        if not 0.0 <= low_score <= high_score:
            raise ValueError(f"expected 0 <= low_score <= high_score, got {low_score} and {high_score}")
        if not 0.0 <= iou_weight <= 1.0:
            raise ValueError(f"expected iou_weight in [0, 1], got {iou_weight}")
        if min_hits < 1 or track_buffer < 0 or frame_rate <= 0 or motion_frames < 0 or still_frames < 1:
            raise ValueError(f"expected min_hits >= 1, track_buffer >= 0, motion_frames >= 0, still_frames >= 1, "
                             f"frame_rate > 0, got {min_hits}, {track_buffer}, {motion_frames}, {still_frames}, "
                             f"{frame_rate}")
        if score_field not in ("scores", "box_scores"):
            raise ValueError(f"expected score_field 'scores' or 'box_scores', got {score_field!r}")
        if on_resize not in ("rescale", "reset"):
            raise ValueError(f"expected on_resize 'rescale' or 'reset', got {on_resize!r}")
        self.high_score = high_score
        self.low_score = low_score
        self.score_field = score_field
        self.new_track_score = new_track_score
        self.min_similarity = min_similarity
        self.low_min_iou = low_min_iou
        self.iou_weight = iou_weight
        self.keypoint_threshold = keypoint_threshold
        self.min_hits = min_hits
        self.track_buffer = track_buffer
        self.motion_frames = motion_frames
        self.lost_box_growth = lost_box_growth
        self.still_score = still_score
        self.still_frames = still_frames
        self.reid_similarity = reid_similarity
        self.frame_rate = frame_rate
        self.on_resize = on_resize
        self.smoothing = smoothing
        self.smoothing_min_cutoff = smoothing_min_cutoff
        self.smoothing_beta = smoothing_beta
        self.reset()

    def __repr__(self) -> str:
        return (f"PoseTracker(high_score={self.high_score}, low_score={self.low_score}, "
                f"new_track_score={self.new_track_score}, min_hits={self.min_hits}, "
                f"track_buffer={self.track_buffer}, frame_rate={self.frame_rate}, tracks={len(self._tracks)})")

    def reset(self) -> None:
        """Forget every track and restart IDs at 1, e.g. before a new video."""
        self._tracks: list[_Track] = []
        self._next_id = 1
        self._frame_index = 0
        self._time = 0.0  # seconds since the first update
        self._last_timestamp: float | None = None
        self._image_size: tuple[int, int] | None = None
        self._num_keypoints: int | None = None

    @property
    def tracks(self) -> int:
        """How many tracks are alive (tentative, tracked or lost)."""
        return len(self._tracks)

    def update(self, poses: Poses, *, dt: float | None = None, timestamp: float | None = None,
               image_size: tuple[int, int] | None = None) -> Poses:
        """Associate one frame's poses with the tracks; returns the confirmed ones with track IDs.

        poses:      this frame's detections (``Poses.empty()`` when nobody was found)
        dt:         seconds since the previous update (default: 1 / frame_rate)
        timestamp:  the frame's time in seconds, instead of dt (must not go backwards)
        image_size: (width, height) of the frame; a change rescales or resets the tracks
        returns     the poses matched to confirmed tracks this frame, in input order, with
                    `track_ids` set (smoothed keypoints when smoothing is on); poses with a
                    non-finite box or score are left out, non-finite keypoints come back as
                    (0, 0) scored 0
        """
        if not isinstance(poses, Poses):
            raise TypeError(f"expected a Poses, got {type(poses).__name__}")
        if self._num_keypoints is not None and len(poses) and poses.num_keypoints != self._num_keypoints:
            raise ValueError(f"expected poses with {self._num_keypoints} keypoints (as in earlier frames), "
                             f"got {poses.num_keypoints}")
        step = self._step(dt, timestamp)
        if image_size is not None:
            self._follow_image_size(image_size)
        poses = self._finite(poses)
        if len(poses):
            self._num_keypoints = poses.num_keypoints
        self._frame_index += 1
        self._time += step / self.frame_rate
        for track in self._tracks:
            if track.state == LOST:
                self._coast(track, step)
        predict_all([t.kalman for t in self._tracks], step)

        scores = getattr(poses, self.score_field)
        high = np.flatnonzero(scores >= self.high_score)
        low = np.flatnonzero((scores >= self.low_score) & (scores < self.high_score))
        recent = [t for t in self._tracks if t.state == TRACKED or
                  (t.state == LOST and t.lost_for + step <= self.motion_frames)]
        tentative = [t for t in self._tracks if t.state == TENTATIVE]

        # Stage 1: confident poses against the confirmed tracks seen lately.
        matches, rest_tracks, rest_high = self._associate(recent, poses, high, use_keypoints=True,
                                                          threshold=self.min_similarity)
        # Stage 2: tracks still being seen against the low-scored poses, on box IoU only.
        tracked = [t for t in rest_tracks if t.state == TRACKED]
        m2, _, _ = self._associate(tracked, poses, low, use_keypoints=False, threshold=self.low_min_iou)
        # Stage 3: tentative tracks against the confident poses left over.
        m3, _, rest_high = self._associate(tentative, poses, rest_high, use_keypoints=True,
                                           threshold=self.min_similarity)
        # Stage 4: re-identify tracks lost for longer than the motion model bridges.
        seen = {id(t) for t in recent}
        long_lost = [t for t in self._tracks if t.state == LOST and id(t) not in seen]
        m4, rest_high = self._reidentify(long_lost, poses, rest_high)

        observed = matches + m2 + m3 + m4  # each track at most once
        if observed:
            update_all([t.kalman for t, _ in observed], poses.boxes[[i for _, i in observed]])
        for track, i in observed:
            self._observe(track, poses, i, float(scores[i]))
        stuck = {id(t) for t in self._tracks if t.state != TENTATIVE and self._stuck(t)}
        matched = {id(t): i for t, i in matches + m2 + m3 + m4 if id(t) not in stuck}
        for track in self._tracks:
            if id(track) not in matched:
                track.lost_for += step
                if track.state == TRACKED:
                    track.state = LOST
        # A tentative track missed once is dropped; a lost one once its buffer runs out; a stuck
        # one at once.
        self._tracks = [t for t in self._tracks if id(t) in matched or
                        (t.state == LOST and t.lost_for <= self.track_buffer and id(t) not in stuck)]
        # In the first frame every confident pose starts a track (confirmed at once, as in SORT), so
        # a stream does not open empty while its people score below the birth threshold; the ones
        # that are not people, and do not move, end after `still_frames`.
        birth = self.high_score if self._frame_index == 1 else self.new_track_score
        for i in rest_high:
            if scores[i] >= birth:
                track = self._start(poses, int(i), float(scores[i]))
                self._tracks.append(track)
                matched[id(track)] = int(i)

        reported = sorted(((matched[id(t)], t) for t in self._tracks
                           if t.state == TRACKED and id(t) in matched), key=lambda it: it[0])
        if not reported:
            return Poses.empty(self._num_keypoints or poses.num_keypoints, tracked=True)
        result = poses[[i for i, _ in reported]].replace(
            track_ids=np.array([t.track_id for _, t in reported], np.int64))
        if self.smoothing:
            result = result.replace(keypoints=np.array([t.smoothed for _, t in reported]))
        return result

    # -- steps of an update ---------------------------------------------------------------------

    def _finite(self, poses: Poses) -> Poses:
        """Drop poses with a non-finite box or score; non-finite keypoints become unseen."""
        if not len(poses):
            return poses
        ok = np.isfinite(poses.boxes).all(1) & np.isfinite(poses.box_scores) & np.isfinite(poses.scores)
        if not ok.all():
            bad = np.flatnonzero(~ok)
            logger.warning("frame %d: dropping %d of %d poses whose box or score is not finite: %s",
                           self._frame_index, len(bad), len(poses), poses.boxes[bad][:3].tolist())
            poses = poses[ok]
        kp_ok = np.isfinite(poses.keypoints).all(-1) & np.isfinite(poses.keypoint_scores)
        if not kp_ok.all():
            logger.warning("frame %d: %d keypoints are not finite; treating them as unseen",
                           self._frame_index, int((~kp_ok).sum()))
            poses = poses.replace(keypoints=np.where(kp_ok[..., None], poses.keypoints, 0.0).astype(np.float32),
                                  keypoint_scores=np.where(kp_ok, poses.keypoint_scores, 0.0).astype(np.float32))
        return poses

    def _coast(self, track: _Track, step: float) -> None:
        """A lost track keeps its size, and its motion fades once lost for longer than the
        motion model is trusted."""
        mean = track.kalman.mean
        mean[6:8] = 0.0
        last = xyxy_to_cxcywh(track.last_box)[2:]
        mean[2:4] = np.clip(mean[2:4], 0.8 * last, 1.25 * last)
        if track.lost_for > self.motion_frames / 2:
            mean[4:6] *= 0.9 ** step

    def _stuck(self, track: _Track) -> bool:
        """Whether a track has scored below `still_score` on average (a running mean) and stayed
        where it is (within half its width) for `still_frames` frames: a pole or a sign that the
        detector half believes, kept alive by low-scored boxes. Such a track ends."""
        if track.score >= self.still_score:
            track.still_since = track.still_anchor = None
            return False
        here = xyxy_to_cxcywh(track.last_box)
        if track.still_since is None or np.abs(here[:2] - track.still_anchor[:2]).max() > 0.5 * here[2]:
            track.still_since, track.still_anchor = self._frame_index, here
            return False
        return self._frame_index - track.still_since >= self.still_frames

    def _step(self, dt: float | None, timestamp: float | None) -> float:
        """The time since the previous update, in frames at the nominal rate."""
        if dt is not None and timestamp is not None:
            raise ValueError("give dt or timestamp, not both")
        if timestamp is not None:
            timestamp = float(timestamp)
            previous, self._last_timestamp = self._last_timestamp, timestamp
            if previous is None:
                return 1.0
            if timestamp < previous:
                raise ValueError(f"timestamps must not go backwards: got {timestamp} s after {previous} s")
            return (timestamp - previous) * self.frame_rate
        if dt is not None:
            if not np.isfinite(dt) or dt < 0:
                raise ValueError(f"expected dt >= 0 seconds, got {dt}")
            return float(dt) * self.frame_rate
        return 1.0

    def _follow_image_size(self, image_size: tuple[int, int]) -> None:
        w, h = (int(v) for v in image_size)
        if w <= 0 or h <= 0:
            raise ValueError(f"expected image_size (width, height) > 0, got {tuple(image_size)}")
        old, self._image_size = self._image_size, (w, h)
        if old is None or old == (w, h) or not self._tracks:
            return
        if self.on_resize == "reset":
            logger.info("image size changed from %dx%d to %dx%d: ending %d tracks",
                        *old, w, h, len(self._tracks))
            self._tracks = []
            return
        sx, sy = w / old[0], h / old[1]
        logger.info("image size changed from %dx%d to %dx%d: rescaling %d tracks",
                    *old, w, h, len(self._tracks))
        scale = np.array([sx, sy], np.float32)
        for t in self._tracks:
            t.kalman.rescale(sx, sy)
            t.keypoints = t.keypoints * scale
            t.last_box = t.last_box * np.tile(scale, 2)
            if t.smoother is not None:
                t.smoother.rescale(scale)

    def _similarity(self, tracks: list[_Track], poses: Poses, index: np.ndarray,
                    use_keypoints: bool) -> np.ndarray:
        """(T, D) similarity in [0, 1] between tracks (at their predicted place) and poses[index]."""
        now = np.array([t.kalman.mean[:4] for t in tracks])  # (T, 4) predicted cx, cy, w, h
        pred_boxes = cxcywh_to_xyxy(now).astype(np.float32)
        grow = np.minimum(1.0, self.lost_box_growth * np.array([t.lost_for for t in tracks], np.float32))
        if grow.any():
            sim = _buffered_iou(pred_boxes, poses.boxes[index], grow)
        else:
            sim = box_iou(pred_boxes, poses.boxes[index])
        if not use_keypoints or self.iou_weight >= 1.0:
            return sim
        # the last keypoints carried along with the box's predicted motion and size change
        last = xyxy_to_cxcywh(np.array([t.last_box for t in tracks]))
        scale = now[:, 2:] / np.maximum(last[:, 2:], 1.0)
        kpts = np.array([t.keypoints for t in tracks])
        pred_kpts = ((kpts - last[:, None, :2]) * scale[:, None] + now[:, None, :2]).astype(np.float32)
        visible = np.array([t.keypoint_scores for t in tracks]) >= self.keypoint_threshold
        areas = np.clip(now[:, 2:], 1.0, None).prod(-1) * AREA_PER_BOX_AREA
        # oks() weighs by the second argument's visibility and area: here the tracks'.
        sim_kpts = oks(poses.keypoints[index], pred_kpts, areas, visible).T
        return self.iou_weight * sim + (1.0 - self.iou_weight) * sim_kpts

    def _associate(self, tracks: list[_Track], poses: Poses, index: np.ndarray, *, use_keypoints: bool,
                   threshold: float) -> tuple[list[tuple[_Track, int]], list[_Track], np.ndarray]:
        """Optimal one-to-one matching; returns (matches as (track, pose index), unmatched tracks,
        unmatched pose indices)."""
        index = np.asarray(index, np.int64)
        if not tracks or index.size == 0:
            return [], list(tracks), index
        sim = self._similarity(tracks, poses, index, use_keypoints)
        return self._assign(tracks, index, sim, threshold)

    @staticmethod
    def _assign(tracks: list[_Track], index: np.ndarray, sim: np.ndarray, threshold: float):
        rows, cols = linear_assignment(-sim)
        keep = sim[rows, cols] >= threshold
        rows, cols = rows[keep], cols[keep]
        matches = [(tracks[r], int(index[c])) for r, c in zip(rows, cols)]
        used_rows, used_cols = set(rows.tolist()), set(cols.tolist())
        rest_tracks = [t for r, t in enumerate(tracks) if r not in used_rows]
        rest_index = np.array([d for c, d in enumerate(index) if c not in used_cols], np.int64)
        return matches, rest_tracks, rest_index

    def _reidentify(self, tracks: list[_Track], poses: Poses,
                    index: np.ndarray) -> tuple[list[tuple[_Track, int]], np.ndarray]:
        """Stage 4: long-lost tracks against confident poses, gated by place and height, scored
        on keypoint geometry (OKS of the track's last pose moved onto the new box)."""
        index = np.asarray(index, np.int64)
        if not tracks or index.size == 0:
            return [], index
        last = np.array([xyxy_to_cxcywh(t.last_box) for t in tracks])  # (T, 4)
        det = xyxy_to_cxcywh(poses.boxes[index])  # (D, 4)
        lost = np.array([t.lost_for for t in tracks])
        # the centre may have walked up to ~0.04 heights a frame (a brisk walk) since last seen
        radius = last[:, 3:4] * (0.5 + 0.04 * lost[:, None])
        dist = np.hypot(*(det[None, :, :2] - last[:, None, :2]).transpose(2, 0, 1))
        height = det[None, :, 3] / np.maximum(last[:, None, 3], 1.0)
        gate = (dist <= radius) & (height > 0.8) & (height < 1.25)
        if not gate.any():
            return [], index
        # closeness to where it was last seen, and the OKS of its last keypoints moved and scaled
        # onto each candidate box (0.5, no evidence either way, when none was seen well)
        sim = np.zeros(gate.shape)
        for r, t in enumerate(tracks):
            cols = np.flatnonzero(gate[r])
            if not cols.size:
                continue
            closeness = 1.0 - dist[r, cols] / radius[r, 0]
            visible = t.keypoint_scores >= self.keypoint_threshold
            if not visible.any():
                sim[r, cols] = 0.5 * 0.5 + 0.5 * closeness
                continue
            scale = det[cols, 3] / max(last[r, 3], 1.0)  # (C,)
            moved = (t.keypoints[None] - last[r, :2]) * scale[:, None, None] + det[cols, None, :2]
            area = det[cols, 2] * det[cols, 3] * AREA_PER_BOX_AREA
            shape = oks(poses.keypoints[index[cols]], moved, area, visible[None].repeat(len(cols), 0))
            sim[r, cols] = 0.5 * np.diag(shape) + 0.5 * closeness
        sim[~gate] = 0.0
        matches, _, rest = self._assign(tracks, index, sim, self.reid_similarity)
        return matches, rest

    def _observe(self, track: _Track, poses: Poses, i: int, score: float) -> None:
        """A match: the track takes pose i (its Kalman filter is updated beforehand, all at once)."""
        track.last_box = poses.boxes[i].copy()
        track.keypoints = poses.keypoints[i].copy()
        track.keypoint_scores = poses.keypoint_scores[i].copy()
        track.score = 0.9 * track.score + 0.1 * score
        if track.state == LOST:
            track.state = TRACKED  # re-identified: it keeps its ID
        else:
            track.hits += 1
        track.lost_for = 0.0
        if track.state == TENTATIVE and track.hits >= self.min_hits:
            self._confirm(track)
        if track.smoother is not None:
            track.smoothed = track.smoother(track.keypoints, self._time)

    def _start(self, poses: Poses, i: int, score: float) -> _Track:
        track = _Track(kalman=BoxKalman(poses.boxes[i]), keypoints=poses.keypoints[i].copy(),
                       keypoint_scores=poses.keypoint_scores[i].copy(), last_box=poses.boxes[i].copy(),
                       score=score)
        if self.smoothing:
            track.smoother = OneEuroFilter(min_cutoff=self.smoothing_min_cutoff, beta=self.smoothing_beta)
            track.smoothed = track.smoother(track.keypoints, self._time)
        if self._frame_index <= self.min_hits or self.min_hits <= 1:
            self._confirm(track)
        return track

    def _confirm(self, track: _Track) -> None:
        track.state = TRACKED
        track.track_id = self._next_id
        self._next_id += 1
