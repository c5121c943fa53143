"""Find every person's 17 keypoints in images and videos.

Inputs are image files, folders (searched recursively), glob patterns ("photos/**/*.jpg") and
video files; a bare number is a camera index. Results go to --out:

  DIR/results.json        every image's people, COCO keypoint results format
  DIR/<video>.jsonl       one line per video frame
  DIR/vis/...             rendered images and videos (skip with --no-vis)

Outputs take the input's file name; inputs that share one (day1/img.jpg, day2/img.jpg) keep the
path below the folder they share.

An input that cannot be read is named in a warning and counted as a failure; the others are
still processed, and the exit code is 1 when any input failed.
"""

from __future__ import annotations

import argparse

from posekit.commands import DET_HELP, DET_THRESHOLD_HELP, DEVICE_HELP, POSE_HELP, add_backend_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image, folder, glob pattern, video, or camera index")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for results.json, <video>.jsonl and renders")
    p.add_argument("--ann", metavar="JSON", help="COCO annotation file: take each image's image_id from it")
    p.add_argument("--no-vis", action="store_true", help="do not write rendered images and videos")
    p.add_argument("--det", default=None, help=DET_HELP)
    p.add_argument("--pose", default=None, help=POSE_HELP)
    p.add_argument("--device", default="cpu", help=DEVICE_HELP)
    add_backend_arguments(p)
    p.add_argument("--batch", type=int, default=None,
                   help="most person crops per pose-model call (default: 2 on the CPU, where bigger batches are slower, 32 on a GPU)")
    p.add_argument("--det-threshold", type=float, default=None, help=DET_THRESHOLD_HELP)
    p.add_argument("--oks-threshold", type=float, default=0.8,
                   help="pose NMS: drop a person whose OKS with a better one exceeds this; 0 turns it off (default %(default)s)")
    p.add_argument("--min-score", type=float, default=0.0,
                   help="drop people whose person score (box x mean keypoint score) is below this (default %(default)s)")
    p.add_argument("--workers", type=int, default=3, help="threads running frames at once (default %(default)s)")
    p.add_argument("--track", action="store_true",
                   help="track people through each video: a track_id per person, one colour per ID")
    from posekit.commands.track import add_tracker_arguments

    add_tracker_arguments(p)


def run(args: argparse.Namespace) -> int:
    from functools import partial

    from posekit.commands import make_estimator
    from posekit.commands.track import make_tracker
    from posekit.infer import infer

    # made before anything is written, so a refused backend leaves no output folder behind
    estimator = make_estimator(args, batch=args.batch, det_score_threshold=args.det_threshold,
                               oks_threshold=args.oks_threshold or None, min_score=args.min_score,
                               workers=args.workers)
    summary = infer(args.inputs, args.out, ann=args.ann, vis=not args.no_vis, estimator=estimator,
                    progress=True, tracker=partial(make_tracker, args) if args.track else None)
    print(summary.text())
    return 1 if summary.failures else 0
