"""Serve poses over HTTP: POST an image, get every person's box and 17 keypoints as JSON.

  posekit serve --port 8000                       CPU default (PicoDet-S + PP-TinyPose, ONNX Runtime)
  posekit serve --device cuda --backend tensorrt --max-batch 64

  curl --data-binary @photo.jpg -H 'Content-Type: image/jpeg' http://127.0.0.1:8000/v1/poses
  curl -F a=@one.jpg -F b=@two.jpg http://127.0.0.1:8000/v1/poses     several images at once

Endpoints: POST /v1/poses (answers schema posekit.poses/1, see posekit/serve/schema.py),
GET /healthz, GET /metrics (Prometheus), GET /docs (OpenAPI). Images from concurrent requests
are batched together (--max-batch, --max-wait-ms); a full queue answers 503 with Retry-After.
SIGTERM or Ctrl-C: stop accepting, finish the requests in flight, exit.
Needs the serve extra: pip install 'posekit[serve]'.
"""

from __future__ import annotations

import argparse

from posekit.commands import DET_HELP, DET_THRESHOLD_HELP, POSE_HELP, add_backend_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    from posekit.serve.app import ServeLimits

    d = ServeLimits()
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s; 0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=8000, help="port (default %(default)s)")
    p.add_argument("--det", default=None, help=DET_HELP)
    p.add_argument("--pose", default=None, help=POSE_HELP)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default %(default)s)")
    add_backend_arguments(p)
    p.add_argument("--det-threshold", type=float, default=None, help=DET_THRESHOLD_HELP)
    p.add_argument("--oks-threshold", type=float, default=0.8,
                   help="pose NMS: drop a person whose OKS with a better one exceeds this; 0 turns it off (default %(default)s)")
    p.add_argument("--min-score", type=float, default=0.0, help="drop people scoring below this (default %(default)s)")
    b = p.add_argument_group("batching and limits")
    b.add_argument("--max-batch", type=int, default=d.max_batch, help="most images per estimator call (default %(default)s)")
    b.add_argument("--max-wait-ms", type=float, default=d.max_wait_ms,
                   help="how long a partial batch waits for more images (default %(default)s)")
    b.add_argument("--max-queue", type=int, default=d.max_queue,
                   help="most images waiting; beyond it requests get 503 with Retry-After (default %(default)s)")
    b.add_argument("--max-requests", type=int, default=d.max_requests,
                   help="most requests in progress at once; beyond it 503 (default %(default)s)")
    b.add_argument("--max-body-mb", type=float, default=d.max_body_mb, help="largest request body, MiB (default %(default)s)")
    b.add_argument("--max-pixels", type=int, default=d.max_pixels, help="largest image, width x height (default %(default)s)")
    b.add_argument("--max-images", type=int, default=d.max_images, help="most images in one multipart request (default %(default)s)")
    b.add_argument("--workers", type=int, default=None,
                   help="threads running batches at once (default: 3 on the CPU, where single-threaded ONNX "
                        "Runtime calls side by side keep 2 cores busy; 1 on a GPU)")
    p.add_argument("--graceful-timeout", type=int, default=30,
                   help="on SIGTERM, seconds to let in-flight requests finish (default %(default)s)")
    p.add_argument("--access-log", action="store_true", help="log every request")


def run(args: argparse.Namespace) -> int:
    import logging

    import numpy as np

    from posekit.commands import make_estimator
    from posekit.extras import require
    from posekit.serve.app import ServeLimits

    for module in ("fastapi", "uvicorn", "multipart", "prometheus_client"):  # fail before loading models
        require(module, "posekit serve")
    from posekit.serve.app import serve

    on_cpu = args.device == "cpu"
    workers = args.workers or (3 if on_cpu else 1)
    limits = ServeLimits(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_queue=args.max_queue,
                         max_requests=args.max_requests, max_body_mb=args.max_body_mb, max_pixels=args.max_pixels,
                         max_images=args.max_images, workers=workers)
    estimator = make_estimator(args, det_score_threshold=args.det_threshold, oks_threshold=args.oks_threshold or None,
                               min_score=args.min_score, workers=workers)
    estimator.estimate_batch([np.zeros((480, 640, 3), np.uint8)])  # load and warm the engines before the port opens
    from posekit import families, registry
    from posekit.estimators import PIPELINE_BACKENDS

    _, default_det, default_pose, _, _ = PIPELINE_BACKENDS[args.backend]
    pose = registry.resolve(args.pose or default_pose)
    models = pose.name if families.of(pose).kind == "bottom-up" else f"{args.det or default_det} + {pose.name}"
    description = f"{models} on {args.backend} {args.device}"
    logging.getLogger(__name__).warning("posekit serve: %s on http://%s:%d", description, args.host, args.port)
    serve(estimator, host=args.host, port=args.port, limits=limits, description=description,
          graceful_timeout_s=args.graceful_timeout, access_log=args.access_log)
    return 0
