#!/usr/bin/env python
"""Prepare what scripts/gpu_bench.py needs on a GPU machine that may lack OpenCV and pycocotools.

Run here (where cv2 is installed), then copy the folder to the GPU machine's .gpu/:

  POSEKIT_MODELS=../shared/models python scripts/gpu_prepare.py --shared ../shared --out .gpu

Writes .gpu/models (a copy of the shared models), .gpu/coco-val2017-mini (the annotations and
images), .gpu/demo.mp4, and .gpu/inputs.npz with the decoded real inputs, so gpu_bench.py can
run without cv2: `crops` (N, 256, 256, 3) uint8 BGR person crops, `det_frames` (N, 416, 416, 3)
uint8 BGR letterboxed frames, `video_frames` (5, 540, 960, 3) uint8 BGR demo frames.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    import cv2

    from posekit.calibration import letterboxed_frames, load_person_boxes, person_crops

    p = argparse.ArgumentParser()
    p.add_argument("--shared", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    shared, out = Path(args.shared), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("models", "data/coco-val2017-mini"):
        dest = out / Path(name).name
        if not dest.exists():
            shutil.copytree(shared / name, dest)
    shutil.copy2(shared / "media" / "demo.mp4", out / "demo.mp4")
    ann = shared / "data" / "coco-val2017-mini" / "person_keypoints_val2017_mini.json"
    cap = cv2.VideoCapture(str(shared / "media" / "demo.mp4"))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    files = [path for path, _ in load_person_boxes(ann)]
    tmp = out / ".inputs.part.npz"
    np.savez_compressed(tmp, crops=person_crops(ann, (256, 256), 64), det_frames=letterboxed_frames(files, (416, 416)),
                        video_frames=np.stack(frames))
    tmp.replace(out / "inputs.npz")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
