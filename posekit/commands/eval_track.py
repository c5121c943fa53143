"""Score tracked poses against ground truth: MOTA, IDF1, ID switches, fragmentation (through
motmetrics) and HOTA with DetA/AssA.

GT and PRED are PoseTrack JSON, the per-frame JSON Lines that `posekit track` writes, or
MOTChallenge text (a sequence's gt/gt.txt, or results such as `posekit track --format mot`
writes); the formats may differ. Frames are matched by number (MOT frame f is JSON Lines frame
f - 1; PoseTrack frames by their order in the file); detections by box IoU (default) or keypoint
OKS at --threshold. MOT files carry boxes only: score them with --match iou.
"""

from __future__ import annotations

import argparse

SHOWN = ("HOTA", "DetA", "AssA", "MOTA", "IDF1", "IDSW", "Frag", "MOTP", "precision", "recall", "FP", "FN",
         "GT_tracks", "pred_tracks", "frames")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gt", required=True,
                   help="ground truth: PoseTrack JSON, JSON Lines or MOTChallenge gt.txt (conf-0 rows ignored)")
    p.add_argument("--pred", required=True,
                   help="predictions with track ids: PoseTrack JSON, JSON Lines or MOTChallenge text")
    p.add_argument("--match", choices=["iou", "oks"], default="iou", help="how detections correspond (default iou)")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="least IoU/OKS of a MOTA/IDF1 match (default 0.5; HOTA sweeps 0.05..0.95)")
    p.add_argument("--json", metavar="PATH", help="also write every metric to this JSON file")


def run(args: argparse.Namespace) -> int:
    from posekit.tracking.metrics import evaluate_tracking
    from posekit.io import write_json
    from posekit.tracking.posetrack import read_tracks

    gt = read_tracks(args.gt)
    pred = read_tracks(args.pred)
    if not gt:
        raise ValueError(f"{args.gt}: no labelled frames to score")
    metrics = evaluate_tracking(gt, pred, match=args.match, threshold=args.threshold)
    metrics = {"gt": str(args.gt), "pred": str(args.pred), "match": args.match, "threshold": args.threshold,
               **metrics}
    width = max(len(k) for k in SHOWN)
    for key in SHOWN:
        value = metrics[key]
        text = f"{value:.4f}" if isinstance(value, float) else str(value)
        print(f"{key.ljust(width)}  {text}")
    if args.json:
        write_json(args.json, metrics, pretty=True)  # NaN (e.g. MOTP with no match at all) as null
    return 0
