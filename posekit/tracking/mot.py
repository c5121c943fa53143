"""The MOTChallenge text format: one box a line, `frame,id,x,y,w,h,conf,x3d,y3d,z3d`.

frame:     1-based frame number
id:        the track (or ground-truth person) ID
x,y,w,h:   the box's top-left corner and size, image pixels
conf:      a result's confidence; in ground truth, 0 marks a box to ignore (MOT16 and later)
x3d..:     world coordinates, -1 when unknown (MOT16+ ground truth puts class and visibility there)

`read_mot` gives {frame index: tracked Poses} with 0-based frame indices, the numbering of the
JSON Lines `posekit track` writes (MOT frame f is frame index f - 1), so either kind of file scores
against the other in `posekit eval-track`. The poses have boxes only (keypoints zero, scored 0).
MOT16/17 ground truth's class and visibility columns are not read: its distractor classes
(static people, reflections) count as people here, where the official evaluation (TrackEval)
removes predictions matched to them; MOT15's ground truth has no classes, so it scores as there.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from posekit.structures import NUM_KEYPOINTS, Poses


def looks_like_mot(text: str) -> bool:
    """Whether the first non-empty line of `text` reads as a MOTChallenge row (>= 6 numbers)."""
    for line in text.splitlines():
        if line.strip():
            parts = line.replace(" ", "").split(",")
            if len(parts) < 6:
                return False
            try:
                [float(p) for p in parts]
            except ValueError:
                return False
            return True
    return False


def parse_mot(text: str, *, where: str = "MOT text", ground_truth: bool = False,
              num_keypoints: int = NUM_KEYPOINTS) -> dict[int, Poses]:
    """Rows of MOTChallenge text as {0-based frame index: Poses with track_ids}.

    ground_truth: rows with conf 0 (MOT16+ "ignore" boxes) are left out; every frame from 1 to
                  the last one named gets an entry, so frames where nobody is labelled still count
    """
    rows: dict[int, list] = {}
    for line_no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.replace(" ", "").split(",")
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise ValueError(f"{where}:{line_no}: expected comma-separated numbers "
                             f"frame,id,x,y,w,h,conf,..., got {line.strip()[:60]!r}") from None
        if len(values) < 6:
            raise ValueError(f"{where}:{line_no}: expected at least 6 values frame,id,x,y,w,h, got {len(values)}")
        if not all(np.isfinite(values[:6])):
            raise ValueError(f"{where}:{line_no}: expected finite frame, id and box, got {line.strip()[:60]!r}")
        frame, track_id, x, y, w, h = values[:6]
        conf = values[6] if len(values) > 6 else 1.0
        if frame < 1 or frame != int(frame):
            raise ValueError(f"{where}:{line_no}: expected a 1-based frame number, got {parts[0]}")
        if ground_truth and conf == 0:
            continue
        rows.setdefault(int(frame) - 1, []).append((x, y, x + w, y + h, conf, int(track_id)))
    frames = range(max(rows) + 1) if ground_truth and rows else sorted(rows)
    out = {}
    for f in frames:
        r = np.array(rows.get(f, []), np.float64).reshape(-1, 6)
        n = len(r)
        score = np.where(r[:, 4] < 0, 1.0, r[:, 4])  # results write conf -1 for "not given"
        out[f] = Poses(boxes=r[:, :4].astype(np.float32), box_scores=score.astype(np.float32),
                       keypoints=np.zeros((n, num_keypoints, 2), np.float32),
                       keypoint_scores=np.zeros((n, num_keypoints), np.float32),
                       track_ids=r[:, 5].astype(np.int64))
    return out


def read_mot(path: str | os.PathLike, *, ground_truth: bool | None = None) -> dict[int, Poses]:
    """Read a MOTChallenge gt.txt or results file (see `parse_mot`).

    ground_truth: None guesses from the name (gt.txt, or a name starting with gt)
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (expected MOTChallenge text)")
    if ground_truth is None:
        ground_truth = path.name.lower().startswith("gt")
    return parse_mot(path.read_text(encoding="utf-8"), where=str(path), ground_truth=ground_truth)


def mot_lines(frame: int, poses: Poses) -> list[str]:
    """The MOTChallenge rows of one tracked frame (`frame` 0-based; written 1-based)."""
    if poses.track_ids is None:
        raise ValueError("MOT output needs tracked poses (track_ids is None)")
    lines = []
    for i in range(len(poses)):
        x0, y0, x1, y1 = (float(v) for v in poses.boxes[i])
        lines.append(f"{frame + 1},{int(poses.track_ids[i])},{x0:.2f},{y0:.2f},{x1 - x0:.2f},{y1 - y0:.2f},"
                     f"{float(poses.scores[i]):.4f},-1,-1,-1")
    return lines


class MotWriter:
    """Writes tracked frames as MOTChallenge results; renamed into place when closed cleanly.

        with MotWriter("out/TUD-Campus.txt") as w:
            for frame, poses in enumerate(tracked):
                w.add(frame, poses)
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._ctx = None
        self._file = None
        self.rows = 0

    def __enter__(self) -> "MotWriter":
        from posekit.io import atomic_path

        self._ctx = atomic_path(self.path)
        tmp = self._ctx.__enter__()
        self._file = open(tmp, "w", encoding="utf-8")
        return self

    def add(self, frame: int, poses: Poses) -> None:
        for line in mot_lines(frame, poses):
            self._file.write(line + "\n")
            self.rows += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        self._file.close()
        self._ctx.__exit__(exc_type, exc, tb)


def write_mot(path: str | os.PathLike, frames: dict[int, Poses]) -> Path:
    """Write {0-based frame index: tracked Poses} as MOTChallenge results."""
    with MotWriter(path) as w:
        for frame in sorted(frames):
            w.add(frame, frames[frame])
    return Path(path)
