"""Benchmark a stage of posekit and print a table.

--stage pipeline times posekit's whole pipeline against the plain per-person loop (RTMDet-nano,
then each crop alone through Google's MoveNet graph) on the same images, in one run, and
reports images/s and COCO keypoint AP for both.
"""

from __future__ import annotations

import argparse
import json


def _bench_pipeline(args: argparse.Namespace) -> dict:
    from posekit.baseline import bench_pipeline
    from posekit.pipeline import PoseEstimator

    estimator = PoseEstimator(det=args.det, pose=args.pose, workers=args.workers)
    return bench_pipeline(args.images, args.ann, estimator, repeat=args.repeat)


def _print_pipeline(report: dict) -> None:
    rows = [("", "images/s", "AP", "AP50", "people")]
    for name in ("plain", "posekit"):
        r = report[name]
        rows.append((name, f"{r['images_per_s']:.2f}", f"{r.get('AP', float('nan')):.3f}",
                     f"{r.get('AP50', float('nan')):.3f}", str(r["people"])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))
    print(f"speed-up {report['speedup']:.2f}x on {report['images']} images x {report['repeat']}; {report['machine']}")


# stage -> (run(args) -> report, print(report)); other stages register here.
STAGES = {
    "pipeline": (_bench_pipeline, _print_pipeline),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stage", choices=sorted(STAGES), default="pipeline", help="what to time (default %(default)s)")
    p.add_argument("--images", required=True, metavar="DIR", help="folder of images to time on")
    p.add_argument("--ann", metavar="JSON",
                   help="COCO keypoint annotations for AP (default: the one .json beside the images folder)")
    p.add_argument("--json", metavar="PATH", help="also write the results here")
    p.add_argument("--repeat", type=int, default=3, help="timed passes; the fastest counts (default %(default)s)")
    p.add_argument("--det", default="rtmdet-nano-person", help="posekit's detector (default %(default)s)")
    p.add_argument("--pose", default="movenet-thunder", help="posekit's pose model (default %(default)s)")
    p.add_argument("--workers", type=int, default=2, help="posekit's worker threads (default %(default)s)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from posekit.io import write_json

    if args.ann is None:
        found = sorted(Path(args.images).resolve().parent.glob("*.json"))
        args.ann = str(found[0]) if len(found) == 1 else None
    run_stage, print_stage = STAGES[args.stage]
    report = run_stage(args)
    print_stage(report)
    if args.json:
        write_json(args.json, report)
    return 0
