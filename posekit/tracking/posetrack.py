"""Tracked poses on disk: PoseTrack 2018/21 JSON (what the official poseval tools score) and
per-frame JSON Lines records (`posekit.schema.frame_record`, written with `posekit.io.JsonLinesWriter`). Both are
written under a temporary name and renamed when complete (`posekit.io.atomic_path`), so a crash
never leaves a file that looks finished.

PoseTrack JSON (one video per file):
  images:      [{id, frame_id, file_name, vid_id, nframes, is_labeled, width, height}]
  annotations: [{id, image_id, track_id, category_id: 1, bbox: [x, y, w, h], keypoints: [x, y, v] * K,
                 scores: [K keypoint scores], score}]
  categories:  [{id: 1, name: "person", keypoints: COCO names, skeleton: 1-based pairs}]
Image ids follow PoseTrack's scheme 10000000000 + vid_id * 10000 + frame.

JSON Lines: one line per frame, {"frame", "timestamp", "image_size", "file_name", "poses":
[{"track_id", "box": [x0, y0, x1, y1], "score", "box_score", "keypoints": [[x, y], ...],
"keypoint_scores": [...]}]}.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import orjson

from posekit.skeleton import COCO_KEYPOINTS, COCO_SKELETON
from posekit.structures import Poses

POSETRACK_CATEGORY = {
    "supercategory": "person",
    "id": 1,
    "name": "person",
    "keypoints": list(COCO_KEYPOINTS),
    "skeleton": [[a + 1, b + 1] for a, b in COCO_SKELETON],
}


def _r(values: np.ndarray, digits: int = 2) -> list:
    return np.round(np.asarray(values, np.float64), digits).tolist()


def image_id(vid_id: int, frame: int) -> int:
    return 10_000_000_000 + int(vid_id) * 10_000 + int(frame)


class PoseTrackWriter:
    """Collects tracked frames and writes one PoseTrack JSON file on close.

        with PoseTrackWriter("out/video.json", vid_id=3) as w:
            for frame, poses in enumerate(tracked):
                w.add(poses, file_name=f"video/{frame:06d}.jpg")

    Each frame's annotations are turned into JSON text as they are added (the writer thread's
    work in `posekit track`), so closing after a long video only joins them.
    """

    def __init__(self, path: str | os.PathLike, *, vid_id: int = 0, image_size: tuple[int, int] | None = None):
        self.path = Path(path)
        self.vid_id = int(vid_id)
        self.image_size = image_size
        self._images: list[dict] = []
        self._annotations: list[bytes] = []  # per frame with people: its annotations as JSON, ","-joined
        self._count = 0  # annotations so far

    def add(self, poses: Poses, *, file_name: str | None = None, image_size: tuple[int, int] | None = None) -> None:
        if poses.track_ids is None:
            raise ValueError("PoseTrack output needs tracked poses (track_ids is None)")
        frame = len(self._images)
        iid = image_id(self.vid_id, frame)
        image = {"id": iid, "frame_id": iid, "vid_id": f"{self.vid_id:06d}",
                 "file_name": file_name or f"{self.vid_id:06d}/{frame:06d}.jpg", "is_labeled": True}
        size = image_size or self.image_size
        if size is not None:
            image["width"], image["height"] = int(size[0]), int(size[1])
        self._images.append(image)
        n = len(poses)
        if not n:
            return
        # a frame at a time: the same float64 arithmetic and rounding as person by person
        boxes = poses.boxes.astype(np.float64)
        bbox = _r(np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1))
        visibility = np.ones((n, poses.num_keypoints, 1), np.float32)
        keypoints = _r(np.concatenate([poses.keypoints, visibility], 2).reshape(n, -1))
        scores = _r(poses.keypoint_scores, 4)
        ids, person_scores = poses.track_ids.tolist(), poses.scores.tolist()
        annotations = []
        for i in range(n):
            self._count += 1
            annotations.append({
                "id": self._count,
                "image_id": iid,
                "track_id": ids[i],
                "category_id": 1,
                "bbox": bbox[i],
                "keypoints": keypoints[i],
                "scores": scores[i],
                "score": round(person_scores[i], 4),
            })
        self._annotations.append(orjson.dumps(annotations)[1:-1])  # the list's items, ","-joined

    def _finish_images(self) -> None:
        for image in self._images:
            image["nframes"] = len(self._images)

    def document(self) -> dict:
        self._finish_images()
        annotations = orjson.loads(b"[" + b",".join(self._annotations) + b"]")
        return {"images": self._images, "annotations": annotations, "categories": [POSETRACK_CATEGORY]}

    def data(self) -> bytes:
        """The file's JSON: what ``orjson.dumps(self.document())`` gives, without parsing the
        annotations back."""
        self._finish_images()
        return (b'{"images":' + orjson.dumps(self._images) + b',"annotations":[' + b",".join(self._annotations)
                + b'],"categories":' + orjson.dumps([POSETRACK_CATEGORY]) + b"}")

    def close(self) -> None:
        from posekit.io import atomic_path

        with atomic_path(self.path) as tmp:
            tmp.write_bytes(self.data())

    def __enter__(self) -> "PoseTrackWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:  # a failed run leaves no file rather than a truncated video's worth
            self.close()


# -- reading -------------------------------------------------------------------------------------


def read_tracks(path: str | os.PathLike) -> dict[int, Poses]:
    """Read PoseTrack JSON, our JSON Lines or MOTChallenge text into {frame index: tracked Poses}.

    PoseTrack frames are numbered by their position among the file's images sorted by frame_id
    (or id); unlabelled images (is_labeled false) are left out, so they are not scored.
    MOTChallenge text (`posekit.tracking.mot`): frame f (1-based) is frame index f - 1, as in
    our JSON Lines; a file named gt*.txt is read as ground truth (conf-0 rows ignored).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (expected PoseTrack JSON or JSON Lines)")
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        if path.suffix == ".txt":  # MOTChallenge results of a video where nobody was tracked
            return {}
        raise ValueError(f"{path}: the file is empty (expected PoseTrack JSON, JSON Lines or MOT text)")
    from posekit.tracking.mot import looks_like_mot, read_mot

    if looks_like_mot(text):
        return read_mot(path)
    if path.suffix in (".jsonl", ".ndjson"):
        return _read_jsonl(path, text)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        try:
            return _read_jsonl(path, text)  # several JSON objects, one a line, under another suffix
        except ValueError:
            raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if isinstance(doc, dict) and "frame" in doc and "poses" in doc:
        return _read_jsonl(path, text)
    if not isinstance(doc, dict) or "images" not in doc or "annotations" not in doc:
        found = sorted(doc)[:6] if isinstance(doc, dict) else type(doc).__name__
        raise ValueError(f"{path}: expected PoseTrack JSON with 'images' and 'annotations', found {found}")
    return _read_posetrack(path, doc)


def _num_keypoints(doc: dict) -> int:
    for cat in doc.get("categories") or []:
        if cat.get("keypoints"):
            return len(cat["keypoints"])
    for ann in doc["annotations"]:
        if ann.get("keypoints"):
            return len(ann["keypoints"]) // 3
    return len(COCO_KEYPOINTS)


def _read_posetrack(path: Path, doc: dict) -> dict[int, Poses]:
    k = _num_keypoints(doc)
    images = sorted(doc["images"], key=lambda im: (im.get("frame_id", im["id"]), im["id"]))
    frame_of = {im["id"]: n for n, im in enumerate(images)}
    labeled = {im["id"] for im in images if im.get("is_labeled", True)}
    people: dict[int, list[tuple]] = {frame_of[i]: [] for i in labeled}
    for n, ann in enumerate(doc["annotations"]):
        where = f"{path}: annotation {n} (id {ann.get('id')})"
        if ann.get("image_id") not in frame_of:
            raise ValueError(f"{where} names image_id {ann.get('image_id')}, which is not among the images")
        if ann["image_id"] not in labeled:
            continue
        if "track_id" not in ann:
            raise ValueError(f"{where} has no track_id")
        kp = np.asarray(ann.get("keypoints") or np.zeros(3 * k), np.float32)
        if kp.size != 3 * k:
            raise ValueError(f"{where} has {kp.size} keypoint values, expected {3 * k} (x, y, v for {k} keypoints)")
        kp = kp.reshape(k, 3)
        scores = np.asarray(ann["scores"], np.float32) if ann.get("scores") is not None else (kp[:, 2] > 0).astype(np.float32)
        if scores.shape != (k,):
            raise ValueError(f"{where} has {scores.size} keypoint scores, expected {k}")
        box = ann.get("bbox")
        if box is not None and len(box) == 4 and box[2] > 0 and box[3] > 0:
            x, y, w, h = (float(v) for v in box)
            xyxy = [x, y, x + w, y + h]
        else:
            seen = kp[scores > 0, :2]
            if len(seen) == 0:
                continue  # neither a box nor a visible keypoint: nothing to match against
            lo, hi = seen.min(0), seen.max(0)
            pad = 0.1 * (hi - lo) + 1.0
            xyxy = [*(lo - pad), *(hi + pad)]
        score = float(ann.get("score", 1.0))
        people[frame_of[ann["image_id"]]].append((xyxy, score, kp[:, :2], scores, int(ann["track_id"])))
    return {frame: _poses(rows, k) for frame, rows in sorted(people.items())}


def _poses(rows: list[tuple], k: int) -> Poses:
    if not rows:
        return Poses.empty(k, tracked=True)
    boxes, scores, kpts, kscores, ids = zip(*rows)
    return Poses(boxes=np.array(boxes, np.float32).reshape(-1, 4), box_scores=np.array(scores, np.float32),
                 keypoints=np.stack(kpts), keypoint_scores=np.stack(kscores), track_ids=np.array(ids, np.int64))


def _read_jsonl(path: Path, text: str) -> dict[int, Poses]:
    frames: dict[int, Poses] = {}
    for line_no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{line_no}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: not a JSON object ({exc})") from None
        if isinstance(rec, dict) and "frame" in rec and "people" in rec:  # `posekit infer --track`
            rec = {"frame": rec["frame"], "poses": [_from_coco(p, where) for p in rec["people"]]}
        if not isinstance(rec, dict) or "frame" not in rec or "poses" not in rec:
            raise ValueError(f"{where}: expected a record with 'frame' and 'poses' (or 'people')")
        rows = []
        for p in rec["poses"]:
            if "track_id" not in p:
                raise ValueError(f"{where}: a pose has no track_id (was this file written with tracking on?)")
            kp = np.asarray(p["keypoints"], np.float32).reshape(-1, 2)
            rows.append((p["box"], p.get("score", 1.0), kp, np.asarray(p["keypoint_scores"], np.float32),
                         int(p["track_id"])))
        k = rows[0][2].shape[0] if rows else len(COCO_KEYPOINTS)
        frames[int(rec["frame"])] = _poses(rows, k)
    return frames


def _from_coco(person: dict, where: str) -> dict:
    """A COCO keypoint result (what `posekit infer` writes per person) as one of our pose records."""
    if "track_id" not in person:
        raise ValueError(f"{where}: a pose has no track_id (was this file written with --track?)")
    kp = np.asarray(person["keypoints"], np.float32).reshape(-1, 3)
    x, y, w, h = person["bbox"]
    return {"track_id": person["track_id"], "box": [x, y, x + w, y + h], "score": person.get("score", 1.0),
            "keypoints": kp[:, :2], "keypoint_scores": kp[:, 2]}
