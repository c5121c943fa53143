"""The JSON that `POST /v1/poses` answers, version 1 (``"schema": "posekit.poses/1"``).

    {"schema": "posekit.poses/1",
     "images": [                          one entry per uploaded image, in upload order
        {"name": "a.jpg",                 the multipart file name (the raw body: "body")
         "image_size": [640, 480],        width, height in pixels
         "poses": [                       every person, best first
            {"box": [x0, y0, x1, y1],     pixels, corners
             "score": 0.61,               person score (box score x mean visible keypoint score)
             "box_score": 0.74,           the detector's score
             "keypoints": [[x, y], ...],  17 COCO keypoints, pixels, x then y
             "keypoint_scores": [...]}]}]}  17 scores in [0, 1]

Each person has the fields (and names) of a person in posekit's per-frame JSON Lines
(`posekit.frame/1`), at full float32 precision rather than rounded, so a client gets the same
numbers as calling the library. Errors are ``{"error": "<one line>"}`` with a 4xx/5xx status.
A new field may be added within a version; removing or changing one makes version 2.
"""

from __future__ import annotations

from typing import Any

from posekit.structures import Poses

SCHEMA = "posekit.poses/1"


def person_records(poses: Poses) -> list[dict[str, Any]]:
    """One record per person (track_id only when the poses are tracked)."""
    boxes, scores, box_scores = poses.boxes.tolist(), poses.scores.tolist(), poses.box_scores.tolist()
    keypoints, keypoint_scores = poses.keypoints.tolist(), poses.keypoint_scores.tolist()
    people = []
    for i in range(len(poses)):
        person: dict[str, Any] = {}
        if poses.track_ids is not None:
            person["track_id"] = int(poses.track_ids[i])
        person.update(box=boxes[i], score=scores[i], box_score=box_scores[i], keypoints=keypoints[i],
                      keypoint_scores=keypoint_scores[i])
        people.append(person)
    return people


def image_record(name: str, image_size: tuple[int, int], poses: Poses) -> dict[str, Any]:
    return {"name": name, "image_size": [int(image_size[0]), int(image_size[1])], "poses": person_records(poses)}


def response(images: list[dict[str, Any]]) -> dict[str, Any]:
    return {"schema": SCHEMA, "images": images}


def poses_from_record(record: dict[str, Any]) -> Poses:
    """An image entry of the response back into `Poses` (what a Python client does)."""
    import numpy as np

    people = record["poses"]
    if not people:
        return Poses.empty()
    return Poses(boxes=np.array([p["box"] for p in people], np.float32),
                 box_scores=np.array([p["box_score"] for p in people], np.float32),
                 keypoints=np.array([p["keypoints"] for p in people], np.float32),
                 keypoint_scores=np.array([p["keypoint_scores"] for p in people], np.float32),
                 scores=np.array([p["score"] for p in people], np.float32))
