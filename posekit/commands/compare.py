"""Compare engines and precisions on real inputs: per-output error against the first engine
(max abs, mean abs, relative to the reference output's scale), decoded keypoint error, and,
with --ap, keypoint AP on the annotated images for each engine.

  posekit compare movenet-thunder --backends torch,onnxruntime,onnxruntime:int8
  posekit compare movenet-thunder --backends torch:fp32,inductor:fp16 --device cuda --ap
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="registry name, e.g. movenet-thunder")
    p.add_argument("--backends", default="torch,onnxruntime",
                   help="comma-separated BACKEND[:PRECISION]; the first is the reference (default torch,onnxruntime)")
    p.add_argument("--precisions", default="fp32",
                   help="precisions for backends given without one, comma-separated (default fp32)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--annotations", help="COCO person-keypoints JSON with images/ beside it "
                                         "(default: POSEKIT_CALIBRATION or the shared mini set)")
    p.add_argument("--limit", type=int, default=32, help="real inputs to compare on (default 32)")
    p.add_argument("--ap", action="store_true", help="also measure keypoint AP per engine (pose models)")
    p.add_argument("--json", action="store_true", help="print JSON rows instead of a table")


def parse_engines(backends: str, precisions: str) -> list[tuple[str, str]]:
    out = []
    for item in filter(None, (b.strip() for b in backends.split(","))):
        if ":" in item:
            backend, precision = item.split(":", 1)
            out.append((backend, precision))
        else:
            out += [(item, p) for p in filter(None, (q.strip() for q in precisions.split(",")))]
    if not out:
        raise ValueError(f"expected --backends BACKEND[:PRECISION],..., got {backends!r}")
    return out


def run(args: argparse.Namespace) -> int:
    import json

    from posekit.build import annotations_path
    from posekit.compare import compare_engines, engine_ap, format_table

    engines = parse_engines(args.backends, args.precisions)
    annotations = args.annotations or annotations_path()
    rows = compare_engines(args.model, engines, annotations, args.device, args.limit)
    ap_rows = []
    if args.ap:
        ap_rows = [{"backend": b, "precision": p, **engine_ap(args.model, b, p, annotations, args.device)}
                   for b, p in engines]
    if args.json:
        print(json.dumps({"errors": rows, "ap": ap_rows}, indent=2))
        return 0
    print(format_table(rows, ["backend", "precision", "output", "max_abs", "mean_abs", "max_rel",
                              "kp_px_median", "kp_px_p95", "kp_within_2px"]))
    if ap_rows:
        print()
        print(format_table(ap_rows, ["backend", "precision", "AP", "AP50", "AP_gt_boxes", "images"]))
    return 0
