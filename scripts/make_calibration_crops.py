"""Make `posekit/assets/calibration-crops.jpg`: the person crops INT8 pose models are calibrated on.

  POSEKIT_MODELS=../shared/models python scripts/make_calibration_crops.py ../shared/media/demo.mp4

Every frame of the video goes through the default detector (RTMDet-nano, boxes scoring >= 0.3);
each person becomes a square crop, 1.25x the box, 256x256, as the pose model sees it. The crops
are tiled in reading order into one JPEG (quality 95), `COLUMNS` to a row, which
`posekit.calibration.packaged_crops` cuts up again. The video (MMPose's demo, Apache-2.0) is
not one of the COCO images posekit's accuracy is measured on, so INT8 is never calibrated on
the images it is scored on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from posekit.calibration import CALIBRATION_CROPS, CROP_SIZE, square_crop  # noqa: E402
from posekit.detectors import Detector  # noqa: E402
from posekit.io import iter_video  # noqa: E402

COLUMNS = 6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video", help="the video to cut person crops from")
    parser.add_argument("--out", default=str(CALIBRATION_CROPS), help=f"the JPEG to write (default {CALIBRATION_CROPS})")
    parser.add_argument("--threshold", type=float, default=0.3, help="detector score threshold (default 0.3)")
    args = parser.parse_args()

    detector = Detector("rtmdet-nano-person", score_threshold=args.threshold)
    crops = [square_crop(frame.image, box, (CROP_SIZE, CROP_SIZE))
             for frame in iter_video(args.video) for box in detector(frame.image).boxes]
    if not crops:
        print(f"{args.video}: no person found", file=sys.stderr)
        return 1
    rows = -(-len(crops) // COLUMNS)
    mosaic = np.zeros((rows * CROP_SIZE, COLUMNS * CROP_SIZE, 3), np.uint8)
    for i, crop in enumerate(crops):
        r, c = divmod(i, COLUMNS)
        mosaic[r * CROP_SIZE : (r + 1) * CROP_SIZE, c * CROP_SIZE : (c + 1) * CROP_SIZE] = crop
    ok, data = cv2.imencode(".jpg", mosaic, [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise RuntimeError("OpenCV could not encode the mosaic")
    Path(args.out).write_bytes(data.tobytes())
    print(f"wrote {args.out}: {len(crops)} crops, {len(data) // 1024} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
