"""Synthetic tracking sequences built from real people: the keypoint sets of annotated persons
in the shared COCO val2017 subset, scaled onto a 1280x720 canvas and moved along trajectories.

A scene yields ground truth (every visible person, with its true identity) and detections (what
a detector plus pose model would report: jittered, sometimes dropped, low-scored when hidden).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from posekit.structures import Poses

CANVAS = (1280, 720)


@dataclass
class Person:
    keypoints: np.ndarray  # (17, 2) relative to the box's top-left corner, pixels
    visible: np.ndarray  # (17,) bool, labelled in COCO
    size: np.ndarray  # (2,) box width, height


def load_people(annotation_file, height: float = 220.0) -> list[Person]:
    """Every annotated person with at least 10 labelled keypoints, scaled to `height` pixels."""
    doc = json.loads(open(annotation_file).read())
    people = []
    for ann in sorted(doc["annotations"], key=lambda a: a["id"]):
        if ann["iscrowd"] or ann["num_keypoints"] < 10:
            continue
        x, y, w, h = ann["bbox"]
        kp = np.asarray(ann["keypoints"], np.float32).reshape(17, 3)
        s = height / h
        people.append(Person(keypoints=(kp[:, :2] - [x, y]) * s, visible=kp[:, 2] > 0,
                             size=np.array([w * s, h * s], np.float32)))
    return people


@dataclass
class Walker:
    person: Person
    identity: int
    start: tuple[float, float]  # top-left corner at frame `first`
    velocity: tuple[float, float]  # pixels per frame
    first: int = 0
    last: int = 10**9
    hidden: tuple[int, ...] = ()  # frames with no detection at all (fully occluded)
    low: tuple[int, ...] = ()  # frames where it is detected with a low score (partly occluded)


def render(walkers: list[Walker], num_frames: int, *, seed: int, jitter: float = 0.02, drop: float = 0.0,
           empty_frames: tuple[int, ...] = ()) -> tuple[dict[int, Poses], list[Poses]]:
    """Returns (ground truth {frame: Poses with identities}, detections per frame).

    jitter: noise standard deviation as a fraction of the box height (boxes and keypoints)
    drop:   probability that a visible person is missed in a frame
    Ground truth holds people whose box centre is on the canvas; hidden frames stay in the
    ground truth (a tracker that coasts through is right to report them).
    """
    rng = np.random.default_rng(seed)
    gt: dict[int, Poses] = {}
    dets: list[Poses] = []
    for t in range(num_frames):
        g_rows, d_rows = [], []
        for w in walkers:
            if not (w.first <= t <= w.last) or t in empty_frames:
                continue
            p = w.person
            corner = np.asarray(w.start, np.float32) + (t - w.first) * np.asarray(w.velocity, np.float32)
            box = np.concatenate([corner, corner + p.size])
            centre = corner + p.size / 2
            if not (0 <= centre[0] < CANVAS[0] and 0 <= centre[1] < CANVAS[1]):
                continue
            kp = p.keypoints + corner
            g_rows.append((box, 1.0, kp, p.visible.astype(np.float32), w.identity))
            if t in w.hidden or rng.random() < drop:
                continue
            sigma = jitter * p.size[1]
            d_kp = np.where(p.visible[:, None], kp + rng.normal(0, sigma, kp.shape), centre)
            k_scores = np.where(p.visible, rng.uniform(0.5, 0.95, 17), rng.uniform(0.0, 0.2, 17))
            score = rng.uniform(0.2, 0.45) if t in w.low else rng.uniform(0.6, 0.95)
            d_rows.append((box + rng.normal(0, sigma, 4), score, d_kp, k_scores, -1))
        gt[t] = _poses(g_rows, tracked=True)
        order = rng.permutation(len(d_rows))  # a detector reports people in no particular order
        dets.append(_poses([d_rows[i] for i in order], tracked=False))
    return gt, dets


def _poses(rows, tracked: bool) -> Poses:
    if not rows:
        return Poses.empty(17, tracked=tracked)
    boxes, scores, kpts, kscores, ids = zip(*rows)
    return Poses(boxes=np.array(boxes, np.float32), box_scores=np.array(scores, np.float32),
                 keypoints=np.array(kpts, np.float32), keypoint_scores=np.array(kscores, np.float32),
                 track_ids=np.array(ids, np.int64) if tracked else None)


def scenes(people: list[Person]) -> dict[str, tuple[dict[int, Poses], list[Poses]]]:
    """The named scenes the tracker tests run on."""
    P = people
    out = {}
    # Three people walking across at different depths, in both directions.
    out["walk_across"] = render([
        Walker(P[0], 1, (-60, 80), (14, 0)),
        Walker(P[1], 2, (1200, 300), (-11, 1)),
        Walker(P[2], 3, (100, 470), (9, -0.5)),
    ], 60, seed=1)
    # Two people on the same line walk into each other and cross; the one behind is low-scored
    # while they overlap most and missed altogether at the moment they coincide.
    out["crossing"] = render([
        Walker(P[3], 1, (150, 250), (12, 0)),
        Walker(P[4], 2, (1000, 262), (-12, 0), low=tuple(range(27, 34)), hidden=(30, 31)),
    ], 60, seed=2)
    # Two people crossing diagonally while a third stands still.
    out["diagonal_crossing"] = render([
        Walker(P[5], 1, (100, 50), (14, 7)),
        Walker(P[6], 2, (100, 450), (14, -7)),
        Walker(P[7], 3, (1000, 250), (0, 0)),
    ], 60, seed=3)
    # One person fully hidden for 12 frames (behind a pillar) while still walking.
    out["occlusion"] = render([
        Walker(P[8], 1, (0, 200), (10, 0), hidden=tuple(range(20, 32))),
        Walker(P[9], 2, (700, 400), (-3, -2)),
    ], 60, seed=4)
    # Someone walks out on the right and comes back 25 frames later; a stretch with nobody.
    out["leave_reenter"] = render([
        Walker(P[10], 1, (1000, 200), (15, 0), last=24),
        Walker(P[10], 1, (1270, 210), (-15, 0), first=50),
        Walker(P[11], 2, (300, 380), (5, 0), last=29),
    ], 80, seed=5, empty_frames=tuple(range(34, 40)))
    # Six people, detections jittered harder and dropped one time in six.
    out["noisy_crowd"] = render([
        Walker(P[12 + i], i + 1, (60 + 200 * i, 60 + 90 * (i % 4)), (3 * (-1) ** i, 1.5))
        for i in range(6)
    ], 60, seed=6, jitter=0.04, drop=1 / 6)
    return out
