"""The one result schema of posekit's per-frame JSON Lines (`infer` on videos, `track`), version 1.

Every line of a ``<video>.jsonl`` file is one frame:

    {"schema": "posekit.frame/1",      this schema and its version
     "source": "clips/street.mkv",     the input (a path, or "camera:<index>")
     "frame": 0,                       0-based frame number in decoding order
     "timestamp": 0.0,                 seconds, from the container's clock (variable frame rates too)
     "image_size": [960, 540],         width, height in pixels
     "file_name": "street/000000.jpg", (track) the frame's name in the PoseTrack JSON
     "poses": [                        every person, best first
        {"track_id": 3,                (tracked runs only) a stable integer per person
         "box": [x0, y0, x1, y1],      pixels, corners
         "score": 0.61,                person score (box score x mean visible keypoint score)
         "box_score": 0.74,            the detector's score
         "keypoints": [[x, y], ...],   17 COCO keypoints, pixels, x then y
         "keypoint_scores": [...]}]}   17 scores in [0, 1]

A reader checks `schema` and refuses a version it does not know (`validate_frame_record`). A
new field may be added within a version; removing or changing one makes version 2.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from posekit.structures import Poses

SCHEMA = "posekit.frame/1"
KNOWN_SCHEMAS = frozenset({SCHEMA})


def _r(values: Any, digits: int = 2) -> list:
    return np.round(np.asarray(values, np.float64), digits).tolist()


def pose_records(poses: Poses) -> list[dict]:
    """The schema's per-person records for `poses` (track_id only when the poses are tracked)."""
    if not len(poses):
        return []
    # rounded a frame at a time (np.round is elementwise: the same numbers as person by person)
    boxes = _r(poses.boxes)
    keypoints = _r(poses.keypoints)
    keypoint_scores = _r(poses.keypoint_scores, 4)
    scores, box_scores = poses.scores.tolist(), poses.box_scores.tolist()
    ids = None if poses.track_ids is None else poses.track_ids.tolist()
    people = []
    for i in range(len(poses)):
        person: dict[str, Any] = {} if ids is None else {"track_id": ids[i]}
        person.update({"box": boxes[i], "score": round(scores[i], 4), "box_score": round(box_scores[i], 4),
                       "keypoints": keypoints[i], "keypoint_scores": keypoint_scores[i]})
        people.append(person)
    return people


def frame_record(frame: int, poses: Poses, *, source: str, timestamp: float | None,
                 image_size: tuple[int, int], file_name: str | None = None) -> dict:
    """One JSON Lines record of schema `SCHEMA` (see the module docstring)."""
    record: dict[str, Any] = {"schema": SCHEMA, "source": str(source), "frame": int(frame),
                              "timestamp": None if timestamp is None else round(float(timestamp), 6),
                              "image_size": [int(image_size[0]), int(image_size[1])]}
    if file_name is not None:
        record["file_name"] = file_name
    record["poses"] = pose_records(poses)
    return record


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def validate_frame_record(record: Any, where: str = "record") -> None:
    """Raise ValueError naming `where`, the field, what was expected and what was found, unless
    `record` is a valid frame record of a known schema version."""
    def bad(field: str, expected: str, found: Any) -> ValueError:
        return ValueError(f"{where}: {field}: expected {expected}, found {found!r:.80}")

    if not isinstance(record, dict):
        raise bad("record", "a JSON object", record)
    if record.get("schema") not in KNOWN_SCHEMAS:
        raise bad("schema", " or ".join(sorted(KNOWN_SCHEMAS)), record.get("schema"))
    required = {"source": str, "frame": int, "image_size": list, "poses": list}
    for field, kind in required.items():
        if not isinstance(record.get(field), kind) or isinstance(record.get(field), bool):
            raise bad(field, kind.__name__, record.get(field))
    if record["frame"] < 0:
        raise bad("frame", "an integer >= 0", record["frame"])
    ts = record.get("timestamp", "missing")
    if ts is not None and not (_number(ts) and ts >= 0):
        raise bad("timestamp", "seconds >= 0 or null", ts)
    size = record["image_size"]
    if len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size):
        raise bad("image_size", "[width, height] positive integers", size)
    if "file_name" in record and not isinstance(record["file_name"], str):
        raise bad("file_name", "a string", record["file_name"])
    for n, p in enumerate(record["poses"]):
        at = f"poses[{n}]"
        if not isinstance(p, dict):
            raise bad(at, "an object", p)
        box = p.get("box")
        if not (isinstance(box, list) and len(box) == 4 and all(map(_number, box)) and box[2] >= box[0]
                and box[3] >= box[1]):
            raise bad(f"{at}.box", "[x0, y0, x1, y1] finite numbers with x1 >= x0, y1 >= y0", box)
        for field in ("score", "box_score"):
            if not (_number(p.get(field)) and 0 <= p[field] <= 1):
                raise bad(f"{at}.{field}", "a number in [0, 1]", p.get(field))
        kps, ks = p.get("keypoints"), p.get("keypoint_scores")
        if not (isinstance(kps, list) and kps and all(isinstance(k, list) and len(k) == 2 and all(map(_number, k))
                                                       for k in kps)):
            raise bad(f"{at}.keypoints", "a list of [x, y] finite numbers", kps)
        if not (isinstance(ks, list) and len(ks) == len(kps) and all(_number(v) and 0 <= v <= 1 for v in ks)):
            raise bad(f"{at}.keypoint_scores", f"{len(kps)} numbers in [0, 1]", ks)
        if "track_id" in p and not (isinstance(p["track_id"], int) and not isinstance(p["track_id"], bool)):
            raise bad(f"{at}.track_id", "an integer", p["track_id"])


def read_frame_records(path: str | os.PathLike) -> list[dict]:
    """Every record of a JSON Lines file, each validated; ValueError names the file and line."""
    path = Path(path)
    records = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{line_no}: not JSON ({exc})") from None
        validate_frame_record(record, f"{path}:{line_no}")
        records.append(record)
    return records
