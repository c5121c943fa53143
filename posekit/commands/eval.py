"""COCO keypoint AP of the pose pipeline on an annotated image folder (pycocotools).

--boxes detector (the default) runs the whole pipeline once: keypoint AP on the detected people and
the detector's person box AP from the same pass; --boxes gt gives the pose model the annotated
person boxes, isolating its own accuracy (a second pose pass); --boxes both does the two.
"""

from __future__ import annotations

import argparse

from posekit.commands import DET_HELP, DET_THRESHOLD_HELP, DEVICE_HELP, POSE_HELP, add_backend_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ann", required=True, metavar="JSON", help="COCO person keypoint annotations")
    p.add_argument("--images", required=True, metavar="DIR", help="folder holding the annotated images")
    p.add_argument("--boxes", choices=["detector", "gt", "both"], default="detector",
                   help="person boxes to evaluate on: detector (the whole pipeline, and the person box AP, "
                        "one pass), gt (the annotated boxes: the pose model alone) or both (default %(default)s)")
    p.add_argument("--json", metavar="PATH", help="also write AP, AP50, AP75, APm, APl, AR, images, people, seconds here")
    p.add_argument("--det", default=None, help=DET_HELP)
    p.add_argument("--pose", default=None, help=POSE_HELP)
    p.add_argument("--device", default="cpu", help=DEVICE_HELP)
    add_backend_arguments(p)
    p.add_argument("--det-threshold", type=float, default=None, help=DET_THRESHOLD_HELP)
    p.add_argument("--oks-threshold", type=float, default=0.8, help="pose NMS OKS threshold; 0 turns it off (default %(default)s)")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from posekit.evaluate import evaluate, load_annotations, report_json
    from posekit.io import write_json
    from posekit.commands import make_estimator

    coco = load_annotations(args.ann)  # a missing eval extra or a bad annotation file fails before any model loads
    estimator = make_estimator(args, det_score_threshold=args.det_threshold, oks_threshold=args.oks_threshold or None)
    boxes = ("detector", "gt") if args.boxes == "both" else (args.boxes,)
    passes = len(boxes) if getattr(estimator, "takes_boxes", True) else len(set(boxes) - {"gt"})
    with tqdm(total=len(coco.getImgIds()) * passes, unit="image", desc="posekit eval", dynamic_ncols=True) as bar:
        report = evaluate(coco, args.images, estimator, boxes=boxes, progress=lambda: bar.update(1))
    for name, table in report["tables"].items():
        title = {"detector": "keypoints, detected boxes", "gt": "keypoints, ground-truth boxes", "box": "person boxes"}[name]
        print(f"== {title}\n{table}")
    print(f"{report['images']} images, {report['people']} people detected, {report['seconds']:.1f} s")
    if args.json:
        write_json(args.json, report_json(report))
    return 0
